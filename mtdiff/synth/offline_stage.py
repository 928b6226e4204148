"""The full reproduction's `synthesize-offline` stage: Tables 2 and 4 (paper §5.3, App. B, E).

For each task of `offline.tasks`:

1. original data: the task's rows (view `data.view`) of the Meta-World dataset MTDiff-S
   was trained on; a task MTDiff-S never saw gets a separate small scripted dataset
   (`offline.heldout_transitions` rows, action noise `offline.heldout_noise`), collected
   under `<out>/data/` like any dataset (resumable, never part of MTDiff-S's data);
2. MTDiff-S data: `synth_transitions` transitions (default `augment_copies` x the
   original's rows) synthesized from a prompt cut from `prompt_episodes` fresh expert
   demonstration(s), written as a dataset (provenance in its manifest) and combined with
   the original into an augmented dataset on disk (`synthetic/`, `augmented/`);
3. RAD and S4RL data in memory (deterministic from the seed and, for S4RL, from the
   TD3-BC agent trained on the original data with the same seed);
4. TD3-BC on original / +S4RL / +RAD / +MTDiff-S for every seed in `offline.seeds`, one
   Ray task (1 CPU) each; a task's S4RL run starts when its original run has finished;
5. Table 4: dynamics error and L2 distance of the MTDiff-S / RAD / S4RL transitions, and a
   2-D embedding of them with the original data (`plots/`);
6. Fig. 6, for each task of `offline.single_tasks`: MTDiff-S-single (`single_task.py`)
   trained on that task's data alone, its synthetic data (`single/`), and TD3-BC on it
   beside the original and multi-task MTDiff-S columns (a Fig. 6 task outside
   `offline.tasks` gets only those two).

Everything lives under `<out>/offline/synth-<hash>/`; the hash covers what shapes the
results except the task lists and seeds, so adding a task or seed reuses finished ones.
Each TD3-BC result (`runs/<task>/<method>-s<seed>.json`) and each task's quality records
(`quality/<task>.json`) is written atomically when it is done, so a killed run resumes
without redoing finished work. At the end the report contracts (`<out>/offline/table2.json`,
`quality.json` and `single_task.json`, `mtdiff.report.contracts`) are written from them,
and `done.json` marks the stage finished for those task lists and seeds.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.config import Config, OfflineConfig, config_hash, to_dict
from mtdiff.data.io import atomic_write_json
from mtdiff.offline.transitions import Transitions, concat, from_task
from mtdiff.report import contracts
from mtdiff.synth.single_task import METHOD as SINGLE

DONE = "done.json"
AUGMENTED = ("s4rl", "rad", "mtdiff-s")  # methods whose data is original + augmentation
UNHASHED = ("tasks", "seeds", "single_tasks")  # settings that only select which runs happen


@dataclass
class OfflineStageResult:
    """Where the stage wrote, whether it was already done, its summary metrics."""

    root: Path
    skipped: bool
    metrics: dict[str, float]


@dataclass
class TaskSource:
    """A task's original and MTDiff-S-augmented data."""

    task: str
    seen: bool  # MTDiff-S was trained on it
    original: Transitions
    dataset: Path  # the original's dataset folder
    augmented: Transitions  # original + MTDiff-S (read back from the combined dataset)


def stage_dir(cfg: Config, checkpoint: str | Path, out: str | Path) -> Path:
    """`<out>/offline/synth-<hash>`: hash of the checkpoint and every setting that shapes the
    results, except those that only select which runs happen (`UNHASHED`)."""
    offline = {k: v for k, v in to_dict(cfg.offline).items() if k not in UNHASHED}
    ckpt = os.path.relpath(Path(checkpoint).resolve(), Path(out).resolve())
    h = config_hash({"offline": offline, "checkpoint": ckpt, "view": cfg.data.view,
                     "collect": cfg.collect, "episode_steps": cfg.metaworld.episode_steps,
                     "sampling": [cfg.diffusion.sampler, cfg.diffusion.sample_steps,
                                  cfg.diffusion.clip_denoised]})
    return Path(out) / "offline" / f"synth-{h}"


def heldout_dataset(cfg: Config, tasks: list[str], out: str | Path) -> Path:
    """The original dataset of tasks MTDiff-S never saw: scripted, noisy, small."""
    from mtdiff.collect import run as collect

    o = cfg.offline
    mw = replace(cfg.metaworld, tasks=",".join(tasks), source="scripted",
                 transitions_per_task=o.heldout_transitions, scripted_noise=o.heldout_noise,
                 scripted_random=0.0)
    c = replace(cfg, metaworld=mw)
    root = Path(out) / "data" / f"metaworld-{c.collection_hash('metaworld')}"
    print(f"[offline] original data of task(s) MTDiff-S never saw ({', '.join(tasks)}): {root}")
    return collect(c, suite="metaworld", out=root, progress=False)


def _load_task(root: Path, task: str, view: str) -> Transitions:
    from mtdiff.data.reader import load_dataset

    return from_task(load_dataset(root, view=view, tasks=[task]).tasks[task])


def build_source(cfg: Config, checkpoint: str | Path, task: str, seen: bool, dataset: Path,
                 root: Path) -> TaskSource:
    """Load the original data; synthesize and combine (once: reused when on disk)."""
    from mtdiff.data.writer import MANIFEST
    from mtdiff.synth.stage import combine
    from mtdiff.synth.stage import run as synthesize

    o = cfg.offline
    view = cfg.data.view if seen else "near-optimal"
    original = _load_task(dataset, task, view)
    syn, aug = root / "synthetic" / task, root / "augmented" / task
    if not (aug / MANIFEST).exists():
        if not (syn / MANIFEST).exists():
            shutil.rmtree(syn, ignore_errors=True)  # a killed synthesis: start it over
            num = o.synth_transitions or o.augment_copies * len(original)
            print(f"[offline] {task}: synthesizing {num} transitions with MTDiff-S")
            synthesize(checkpoint, tasks=[task], num=num, out=syn,
                       prompt_episodes=o.prompt_episodes, seed=o.seed, diffusion=cfg.diffusion)
        shutil.rmtree(aug, ignore_errors=True)
        combine(dataset, syn, aug, tasks=[task], view=view)
    return TaskSource(task, seen, original, dataset, _load_task(aug, task, "near-optimal"))


def td3bc_job(data: Transitions, task: str, cfg: OfflineConfig, seed: int, episode_steps: int,
              result: str, checkpoint: str | None) -> dict[str, Any]:
    """One Table 2 cell for one seed (runs as a Ray task); writes `result` atomically."""
    from mtdiff.offline.run import run_td3bc
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)
    data = concat([data])  # a writable copy of the object store's read-only arrays
    res = run_td3bc(data, task, cfg, max_episode_steps=episode_steps, checkpoint=checkpoint,
                    seed=seed, log_every=max(1, min(1000, cfg.steps)))
    rec = {"success": res.success_rate, "mean_return": res.mean_return, "curve": res.curve,
           "seconds": res.seconds, "transitions": len(data)}
    atomic_write_json(result, rec)
    return rec


def _result_path(root: Path, task: str, method: str, seed: int) -> Path:
    return root / "runs" / task / f"{method}-s{seed}.json"


def _agent_path(root: Path, task: str, seed: int) -> Path:
    return root / "runs" / task / f"original-s{seed}.pt"


def _column_data(src: TaskSource, method: str, seed: int, cfg: OfflineConfig,
                 root: Path) -> Transitions:
    """TD3-BC's training data for a Table 2 column."""
    from mtdiff.synth.augment import rad_augment

    if method == "original":
        return src.original
    if method in ("mtdiff-s", SINGLE):  # the source holds that model's synthetic data
        return src.augmented
    if method == "rad":
        return concat([src.original, rad_augment(src.original, low=cfg.rad_low,
                                                  high=cfg.rad_high, copies=cfg.augment_copies,
                                                  seed=seed)])
    return concat([src.original, _s4rl(src, seed, cfg, root)])


def _s4rl(src: TaskSource, seed: int, cfg: OfflineConfig, root: Path) -> Transitions:
    from mtdiff.offline.td3bc import TD3BC
    from mtdiff.synth.augment import s4rl_augment

    agent = TD3BC.load(_agent_path(root, src.task, seed))
    return s4rl_augment(src.original, agent, eps=cfg.s4rl_eps, copies=cfg.augment_copies)


def run_td3bc_table(cfg: Config, cells: list[tuple[TaskSource, str]], root: Path
                    ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """TD3-BC for every (source, method) cell and seed, finished ones read back; fan-out
    over Ray. An S4RL cell needs the same task's "original" cell (its Q-function)."""
    import ray

    from mtdiff.runtime import init_ray

    o, results = cfg.offline, {}
    todo = []
    for src, m in cells:
        for seed in o.seeds:
            f = _result_path(root, src.task, m, seed)
            if f.exists():
                results[(src.task, m, seed)] = json.loads(f.read_text())
            else:
                todo.append((src, m, seed))
    print(f"[offline] TD3-BC: {len(todo)} run(s) to do, {len(results)} finished earlier")
    if not todo:
        return results
    init_ray()
    remote = ray.remote(num_cpus=1)(td3bc_job)
    pending: dict[Any, tuple[str, str, int]] = {}

    def submit(src: TaskSource, m: str, seed: int) -> None:
        agent = _agent_path(root, src.task, seed) if m == "original" else None
        ref = remote.options(name=f"td3bc:{src.task}:{m}:s{seed}").remote(
            _column_data(src, m, seed, o, root), src.task, o, seed, cfg.metaworld.episode_steps,
            str(_result_path(root, src.task, m, seed)), str(agent) if agent else None)
        pending[ref] = (src.task, m, seed)

    waiting = []  # S4RL runs whose original agent is still training
    for src, m, seed in todo:
        if m == "s4rl" and (src.task, "original", seed) not in results:
            waiting.append((src, m, seed))
        else:
            submit(src, m, seed)
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(ref)
        results[key] = ray.get(ref)
        print(f"[offline] TD3-BC {key[0]} {key[1]} seed {key[2]}: success "
              f"{results[key]['success']:.3f} ({results[key]['seconds']:.0f}s)")
        for w in [w for w in waiting if (w[0].task, "original", w[2]) == key]:
            waiting.remove(w)
            submit(*w)
    return results


def task_quality(cfg: Config, src: TaskSource, root: Path) -> list[dict[str, Any]]:
    """Table 4 records of a task (MTDiff-S, RAD, S4RL with the first seed's agent) and its
    embedding plot; read back when on disk."""
    from mtdiff.data.reader import load_dataset
    from mtdiff.synth.augment import rad_augment
    from mtdiff.synth.embedding import embedding_plot
    from mtdiff.synth.quality import (
        dynamics_error,
        episode_mocap_offsets,
        l2_distance_from_dataset,
    )

    path = root / "quality" / f"{src.task}.json"
    if path.exists():
        return json.loads(path.read_text())
    o, seed = cfg.offline, cfg.offline.seeds[0]
    n = len(src.original)
    sets = {"mtdiff-s": src.augmented.subset(slice(n, None)),  # the synthetic rows
            "rad": rad_augment(src.original, low=o.rad_low, high=o.rad_high, seed=seed),
            "s4rl": _s4rl(src, seed, replace(o, augment_copies=1), root)}
    view = cfg.data.view if src.seen else "near-optimal"
    offsets = episode_mocap_offsets(src.task, load_dataset(src.dataset, view=view,
                                                           tasks=[src.task]).tasks[src.task])
    recs = []
    for m, data in sets.items():
        off = None if m == "mtdiff-s" else offsets[data.rows]  # synthetic rows: unknown
        dyn = dynamics_error(src.task, data, mocap_offsets=off, max_samples=o.quality_samples,
                             seed=seed)
        l2 = l2_distance_from_dataset(data, src.original, seed=seed)
        recs.append({"task": src.task, "method": m, "dynamics_error": dyn.mse,
                     "l2_distance": float(l2.mean()), "samples": int(len(dyn.index)),
                     "unstable": dyn.unstable, "preset": cfg.preset})
    names = {"mtdiff-s": "MTDiff-S", "rad": "RAD", "s4rl": "S4RL"}
    embedding_plot({"original": src.original.transition_matrix(),
                    **{names[m]: d.transition_matrix() for m, d in sets.items()}},
                   root / "plots" / f"embedding-{src.task}.png", method=o.embedding,
                   max_points=max(o.quality_samples, 50), seed=seed,
                   title=f"{src.task}: original vs augmented transitions")
    atomic_write_json(path, recs)
    return recs


def _summary(table2: list[dict[str, Any]], quality: list[dict[str, Any]],
             fig6: list[dict[str, Any]]) -> dict[str, float]:
    m: dict[str, float] = {}
    for method in contracts.METHODS:
        vals = [r["success"] for r in table2 if r["method"] == method]
        m[f"success_{method}"] = float(np.mean(vals))
    single = [r["success"] for r in fig6 if r["method"] == SINGLE]
    if single:
        m[f"success_{SINGLE}"] = float(np.mean(single))
    for method in AUGMENTED:
        rows = [r for r in quality if r["method"] == method]
        m[f"dynamics_error_{method}"] = float(np.mean([r["dynamics_error"] for r in rows]))
        m[f"l2_distance_{method}"] = float(np.mean([r["l2_distance"] for r in rows]))
    return m


def _log_mlflow(results: dict[tuple[str, str, int], dict[str, Any]],
                quality: list[dict[str, Any]], out: Path, kinds: tuple[str, ...]) -> None:
    """Curves, per-task numbers and the contract files into the active MLflow run."""
    from mtdiff.offline.run import active_mlflow

    mlflow = active_mlflow()
    if mlflow is None:
        return
    for (task, method, seed), rec in results.items():
        for p in rec["curve"]:
            mlflow.log_metrics({f"td3bc/{task}/{method}/s{seed}/success_rate": p["success_rate"],
                                f"td3bc/{task}/{method}/s{seed}/mean_return": p["mean_return"]},
                               step=int(p["step"]))
    for r in quality:
        mlflow.log_metrics({f"quality/{r['task']}/{r['method']}/dynamics_error":
                            r["dynamics_error"],
                            f"quality/{r['task']}/{r['method']}/l2_distance": r["l2_distance"]})
    for kind in kinds:
        mlflow.log_artifact(str(contracts.contract_path(kind, out)), artifact_path="offline")


def run(cfg: Config, *, checkpoint: str | Path, data: str | Path, out: str | Path
        ) -> OfflineStageResult:
    """Synthesize + TD3-BC for `cfg.offline.tasks` with the MTDiff-S `checkpoint` trained
    on the dataset `data`; skipped when done for the same config, else resumed."""
    from mtdiff.envs.metaworld import resolve_tasks
    from mtdiff.synth.single_task import train_single
    from mtdiff.train.core import load_checkpoint
    from mtdiff.train.stage import find_checkpoint

    out, o = Path(out), cfg.offline
    tasks = resolve_tasks(o.tasks)
    single = resolve_tasks(o.single_tasks) if o.single_tasks else []
    kinds = ("table2", "quality", "single_task") if single else ("table2", "quality")
    root = stage_dir(cfg, checkpoint, out)
    done = root / DONE
    want = {"tasks": tasks, "seeds": list(o.seeds), "single_tasks": single}
    if done.exists() and all(contracts.contract_path(k, out).exists() for k in kinds):
        marker = json.loads(done.read_text())
        if {k: marker.get(k, []) for k in want} == want:
            return OfflineStageResult(root, True, marker["metrics"])
    meta = load_checkpoint(find_checkpoint(checkpoint))["meta"]
    if meta.get("kind") != "mtdiff-s" or meta.get("suite") != "metaworld":
        raise ValueError(f"{checkpoint} is a {meta.get('kind')} checkpoint of "
                         f"{meta.get('suite')}; synthesize-offline needs Meta-World MTDiff-S")
    trained = set(meta["tasks"])
    untrained = [t for t in single if t not in trained]
    if untrained:
        raise ValueError(f"offline.single_tasks {untrained}: MTDiff-S-single is compared with "
                         f"MTDiff-S on tasks both were trained on ({sorted(trained)}); pick "
                         "from those or set offline.single_tasks=\"\"")
    unseen = [t for t in tasks if t not in trained]
    heldout = heldout_dataset(cfg, unseen, out) if unseen else None
    sources = [build_source(cfg, checkpoint, t, t in trained,
                            Path(data) if t in trained else heldout, root)
               for t in tasks + [t for t in single if t not in tasks]]
    singles = [build_source(cfg, train_single(cfg, t, data, out, len(trained)), t, True,
                            Path(data), root / "single") for t in single]
    cells = [(s, m) for s in sources
             for m in (contracts.METHODS if s.task in tasks
                       else [m for m in contracts.SINGLE_METHODS if m != SINGLE])]
    results = run_td3bc_table(cfg, cells + [(s, SINGLE) for s in singles], root)
    seen = {s.task: s.seen for s in sources}
    rows = [{"task": t, "seen": seen[t], "method": m, "seed": s, "success": r["success"],
             "mean_return": r["mean_return"], "transitions": r["transitions"],
             "preset": cfg.preset} for (t, m, s), r in results.items()]
    table2 = [r for r in rows if r["task"] in tasks and r["method"] in contracts.METHODS]
    fig6 = [r for r in rows if r["task"] in single and r["method"] in contracts.SINGLE_METHODS]
    quality = [r for src in sources if src.task in tasks
               for r in task_quality(cfg, src, root)]
    contracts.write_table2(out, table2)
    contracts.write_quality(out, quality)
    if single:
        contracts.write_single_task(out, fig6)
    metrics = _summary(table2, quality, fig6)
    _log_mlflow(results, quality, out, kinds)
    atomic_write_json(done, {**want, "metrics": metrics, "checkpoint": str(checkpoint)})
    return OfflineStageResult(root, False, metrics)
