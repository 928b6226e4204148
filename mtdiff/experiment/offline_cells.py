"""The offline-RL cells of the grid (paper §5.3): Tables 2 and 4, Figs. 6 and 7 as jobs.

For each task of `offline.tasks` (original data: its rows of the Meta-World dataset
MTDiff-S was trained on, view `data.view`; a task MTDiff-S never saw gets a small noisy
scripted dataset of its own, `collect/metaworld-heldout`):

    synthesize/<task>/s<k>                 MTDiff-S (training seed k) data of the task
    offline/<task>/<method>/s<seed>        TD3-BC on original / s4rl / rad / mtdiff-s
    quality/<task>                         Table 4 (first seed)

TD3-BC seed s uses the MTDiff-S of training seed s when the grid trains it, else the
first training seed's. S4RL's run depends on the same seed's original run (its Q).
Fig. 6 (`offline.single_tasks`): `subset/<task>`, `train/metaworld-single/<task>/...`,
`synthesize/<task>/single/s<k>`, `offline/<task>/mtdiff-s-single/s<seed>`.
Fig. 7 (`experiment.task_counts`): per task set, `subset/metaworld-<set>` of the
Meta-World collection (`collect/metaworld-<set>` when the set has tasks it lacks),
`train/metaworld-<set>/mtdiff-s/s<k>`, `synthesize/<task>/<set>/s<k>`,
`offline/<task>/mtdiff-s-<set>/s<seed>`.

On a GPU cluster synthesis and TD3-BC take a share of a GPU (`experiment.gpu_share_*`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mtdiff.config import Config, to_dict
from mtdiff.experiment.cells import ClusterInfo, collect_job, method_config, train_job
from mtdiff.experiment.jobs import Job
from mtdiff.layout import Layout, subset_hash
from mtdiff.methods import get_method

SINGLE = "mtdiff-s-single"  # Fig. 6's column
TABLE2_METHODS = ("original", "s4rl", "rad", "mtdiff-s")


def single_config(cfg: Config, trained_tasks: int) -> Config:
    """MTDiff-S-single: MTDiff-S on one task with the multi-task model's whole batch
    (`trained_tasks` x M windows per step, same steps), so both see as many windows for
    the same compute and the comparison is about data sharing (the paper does not say
    how its single-task runs were sized)."""
    return replace(cfg, model=replace(cfg.model, kind="mtdiff-s"),
                   data=replace(cfg.data, batch_per_task=cfg.data.batch_per_task * trained_tasks))


def _gpu(cluster: ClusterInfo, share: float) -> float:
    return share if cluster.gpus > 0 else 0.0


def task_set_data(cfg: Config, lay: Layout, spec: str) -> tuple[Job, str]:
    """(the job making Fig. 7's dataset of task set `spec`, that dataset's hash).

    A task's collected rows and prompts depend on its own seed only (`task_seed`: the base
    seed and the task's name), never on which other tasks are collected, so a set within
    the Meta-World collection's tasks is a `subset` of it (its rows, its prompts and those
    of the held-out tasks a separate collection would prompt) instead of a collection of
    its own: the same dataset without collecting again. A set with other tasks is
    collected (`collect/metaworld-<set>`)."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.collect.metaworld import plan_metaworld
    from mtdiff.envs.metaworld import resolve_tasks

    ccfg = replace(cfg, metaworld=replace(cfg.metaworld, tasks=spec))
    tasks = resolve_tasks(spec)
    if not set(tasks) <= set(resolve_tasks(cfg.metaworld.tasks)):
        return (collect_job(ccfg, lay, "metaworld", name=f"collect/metaworld-{spec}",
                            config={"suite": "metaworld", "tasks": spec}),
                ccfg.collection_hash("metaworld"))
    prompt_only = list(plan_metaworld(ccfg).details["heldout_prompt_tasks"])
    source = cfg.collection_hash("metaworld")
    return (Job(f"subset/metaworld-{spec}", "subset", cfg, {"tasks": spec},
                deps=["collect/metaworld"], resources={"CPU": 1.0}, sections=("collect",),
                params={"tasks": tasks, "prompt_tasks": prompt_only,
                        "data_job": "collect/metaworld",
                        "out": str(lay.task_set(source, spec, tasks, prompt_only))}),
            subset_hash(source, tasks, prompt_only))


def heldout_config(cfg: Config, tasks: list[str]) -> Config:
    """The collection config of the tasks MTDiff-S never saw: scripted, noisy, small
    (`offline.heldout_transitions` rows, action noise `offline.heldout_noise`)."""
    o = cfg.offline
    # No random-action episodes: the held-out original data is the noisy experts alone.
    mw = replace(cfg.metaworld, tasks=",".join(tasks), source="scripted",
                 transitions_per_task=o.heldout_transitions, scripted_noise=o.heldout_noise,
                 scripted_random=0.0)
    return replace(cfg, metaworld=mw)


def offline_jobs(cfg: Config, lay: Layout, cluster: ClusterInfo) -> list[Job]:
    """The offline-RL jobs (module docstring), in dependency order."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.metaworld import resolve_tasks

    o, exp = cfg.offline, cfg.experiment
    view = cfg.data.view
    trained = resolve_tasks(cfg.metaworld.tasks)
    tasks = resolve_tasks(o.tasks)
    single = resolve_tasks(o.single_tasks) if o.single_tasks else []
    bad = [t for t in single if t not in trained]
    if bad:
        raise ValueError(f"offline.single_tasks {bad}: MTDiff-S-single is compared with "
                         f"MTDiff-S on tasks both were trained on ({trained}); pick from those "
                         "or set offline.single_tasks=\"\"")
    jobs: list[Job] = []
    data_of = {t: "collect/metaworld" for t in trained}
    unseen = [t for t in dict.fromkeys(tasks + single) if t not in trained]
    if unseen:
        hcfg = heldout_config(cfg, unseen)
        jobs.append(collect_job(hcfg, lay, "metaworld", name="collect/metaworld-heldout",
                                config={"suite": "metaworld", "tasks": ",".join(unseen)}))
        data_of.update({t: "collect/metaworld-heldout" for t in unseen})
    pair = {s: (s if s in exp.seeds else exp.seeds[0]) for s in o.seeds}
    model = {k: f"train/metaworld/mtdiff-s/{view}/s{k}" for k in set(pair.values())}
    # The intermediate evaluations are TD3-BC's alone: in its runs' keys, and there only
    # when they change a run (fewer episodes than the last evaluation's).
    offline_key = {k: v for k, v in to_dict(o).items()
                   if k not in ("tasks", "seeds", "single_tasks", "eval_episodes_intermediate")}
    td3_key = dict(offline_key)
    if o.eval_episodes_intermediate < o.eval_episodes:
        td3_key["eval_episodes_intermediate"] = o.eval_episodes_intermediate

    def synth(task: str, model_job: str, data_job: str, tag: str, seen: bool) -> Job:
        key = {"model": model_job, "task": task, "offline": offline_key,
               "sampling": [cfg.diffusion.sampler, cfg.diffusion.sample_steps,
                            cfg.diffusion.clip_denoised],
               "view": view if seen else "near-optimal"}
        return Job(f"synthesize/{task}/{tag}", "synthesize", cfg, {"task": task, "model": tag},
                   deps=[model_job, data_job],
                   resources={"CPU": 1.0, "GPU": _gpu(cluster, exp.gpu_share_synthesize)},
                   sections=("offline", "diffusion", "collect"),
                   params={"task": task, "model_job": model_job, "data_job": data_job,
                           "view": key["view"], "out": str(lay.synthesis(task, key))})

    def td3(task: str, method: str, seed: int, data: str, extra_deps: dict[str, str],
            seen: bool, data_job: str | None = None, **more: Any) -> Job:
        deps = {"data_job": data_job or data_of[task], **extra_deps}
        key = {"method": method, "data": data, "task": task, "offline": td3_key,
               "seed": seed, "deps": sorted(deps.values())}
        return Job(f"offline/{task}/{method}/s{seed}", "offline", cfg,
                   {"task": task, "method": method, "seed": seed, **more},
                   deps=list(dict.fromkeys(deps.values())),
                   resources={"CPU": 1.0, "GPU": _gpu(cluster, exp.gpu_share_offline)},
                   sections=("offline",),
                   params={"task": task, "method": method, "seed": seed, "data": data,
                           "seen": seen, "view": view if seen else "near-optimal",
                           "save_agent": method == "original",
                           "out": str(lay.td3bc(task, method, seed, key)), **deps, **more})

    synth_jobs: dict[tuple[str, int], str] = {}
    for task in dict.fromkeys(tasks + single):
        seen = task in trained
        for k in sorted(set(pair.values())):
            j = synth(task, model[k], data_of[task], f"s{k}", seen)
            jobs.append(j)
            synth_jobs[(task, k)] = j.name
        methods = TABLE2_METHODS if task in tasks else ("original", "mtdiff-s")
        for seed in o.seeds:
            orig = f"offline/{task}/original/s{seed}"
            for m in methods:
                extra = {"agent_job": orig} if m == "s4rl" else (
                    {"synth_job": synth_jobs[(task, pair[seed])]} if m == "mtdiff-s" else {})
                jobs.append(td3(task, m, seed, m, extra, seen))
        if task in tasks:
            first = o.seeds[0]
            key = {"task": task, "offline": offline_key, "seed": first, "view": view}
            jobs.append(Job(f"quality/{task}", "quality", cfg, {"task": task},
                            deps=[data_of[task], synth_jobs[(task, pair[first])],
                                  f"offline/{task}/original/s{first}"],
                            resources={"CPU": 1.0}, sections=("offline",),
                            params={"task": task, "seed": first, "data_job": data_of[task],
                                    "synth_job": synth_jobs[(task, pair[first])],
                                    "agent_job": f"offline/{task}/original/s{first}",
                                    "view": view if seen else "near-optimal",
                                    "out": str(lay.quality(task, key))}))

    # Fig. 6: MTDiff-S-single, trained on the task's subset with the whole batch
    mts = get_method("mtdiff-s")
    for task in single:
        sub_out = lay.subset(cfg.collection_hash("metaworld"), task)
        sub_hash = subset_hash(cfg.collection_hash("metaworld"), [task])
        jobs.append(Job(f"subset/{task}", "subset", cfg, {"task": task},
                        deps=["collect/metaworld"], resources={"CPU": 1.0},
                        sections=("collect",),
                        params={"task": task, "data_job": "collect/metaworld",
                                "out": str(sub_out)}))
        for k in sorted(set(pair.values())):
            scfg = single_config(method_config(cfg, mts, view, k), len(trained))
            t = train_job(scfg, lay, "metaworld", f"subset/{task}", sub_hash,
                          f"metaworld-single/{task}/mtdiff-s/s{k}",
                          {"suite": "metaworld", "method": SINGLE, "task": task, "seed": k},
                          cluster, tasks=1)
            jobs.append(t)
            s = synth(task, t.name, data_of[task], f"single/s{k}", True)
            jobs.append(s)
            synth_jobs[(task, -1 - k)] = s.name
        for seed in o.seeds:
            jobs.append(td3(task, SINGLE, seed, SINGLE,
                            {"synth_job": synth_jobs[(task, -1 - pair[seed])]}, True))

    # Fig. 7: MTDiff-S trained on N tasks -> synthesize for one task -> TD3-BC
    target = o.task_count_task
    for spec in exp.task_counts:
        set_tasks = resolve_tasks(spec)
        if target not in set_tasks:
            raise ValueError(f"experiment.task_counts: {spec!r} does not contain "
                             f"offline.task_count_task={target!r} (Fig. 7 varies only how many "
                             "other tasks MTDiff-S saw)")
        ccfg = replace(cfg, metaworld=replace(cfg.metaworld, tasks=spec))
        data_job, data_hash = task_set_data(cfg, lay, spec)
        jobs.append(data_job)
        cname = data_job.name
        n = len(set_tasks)
        for k in sorted(set(pair.values())):
            t = train_job(method_config(ccfg, mts, view, k), lay, "metaworld", cname,
                          data_hash, f"metaworld-{spec}/mtdiff-s/s{k}",
                          {"suite": "metaworld", "method": "mtdiff-s", "tasks": spec,
                           "seed": k}, cluster)
            jobs.append(t)
            s = synth(target, t.name, cname, f"{spec}/s{k}", True)
            jobs.append(s)
            synth_jobs[(spec, k)] = s.name
        for seed in o.seeds:
            jobs.append(td3(target, f"mtdiff-s-{spec}", seed, f"mtdiff-s-{spec}",
                            {"synth_job": synth_jobs[(spec, pair[seed])]}, True,
                            data_job=cname, num_tasks=n))
    return jobs
