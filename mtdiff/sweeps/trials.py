"""The trial functions Tune runs, and what every trial does around its work.

Every trial's `config` holds: ``trial`` ({"key", "params", "sample"}: one point of the
grid), ``base`` (the Config as a dict), ``mlflow`` (where the parent run is), ``records``
(the folder of finished trials' records) and its own inputs (checkpoint, data, ...), all
paths absolute (a trial runs in its own working directory, on any node).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mtdiff import tracking
from mtdiff.artifacts import Checkpoint, Dataset, Inputs
from mtdiff.cli import tracked
from mtdiff.config import Config, apply_overrides, config_hash, from_dict, to_dict
from mtdiff.experiment.jobs import done_at
from mtdiff.layout import Layout
from mtdiff.runtime import pause_for_tests
from mtdiff.sweeps.records import read_records, write_record
from mtdiff.tracking import sweeps as sweep_runs


def expand_params(params: dict[str, Any]) -> dict[str, Any]:
    """Swept values that are dicts set several fields at once (e.g. sampler and its step
    count together: ``{"diffusion.sampler": "ddim", "diffusion.sample_steps": 20}``)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        out.update(v if isinstance(v, dict) else {k: v})
    return out


def _trial_name(params: dict[str, Any]) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())


@contextmanager
def _trial(config: dict[str, Any], extra_params: Callable[[Config], dict[str, Any]] | None = None
           ) -> Iterator[tuple[Config, dict[str, Any]]]:
    """The trial's Config (base + swept values) and swept values, inside its MLflow child
    run (resumed when the trial was cut short earlier), which ends FINISHED, or FAILED when
    the body raises."""
    params = expand_params(config["trial"]["params"])
    cfg = apply_overrides(from_dict(config["base"]), [f"{k}={v}" for k, v in params.items()])
    logged = {**params, **(extra_params(cfg) if extra_params else {})}
    with sweep_runs.trial_run(config["mlflow"], key=config["trial"]["key"],
                              name=_trial_name(params), params=logged):
        pause_for_tests("trials", len(read_records(config["records"])))  # kill tests
        yield cfg, params


def _finish(config: dict[str, Any], metrics: dict[str, float], **tags: str) -> dict[str, float]:
    """Log the trial's final metrics and write its record (the trial is then done: a resumed
    sweep does not run it again while the checkpoint it names exists)."""
    tracking.log_metrics(metrics)
    tracking.set_tags(tags)
    t = config["trial"]
    write_record(config["records"], t["key"], t["params"], t["sample"], metrics,
                 outputs=[tags["checkpoint"]] if "checkpoint" in tags else None)
    return metrics


def _eval_metrics(results: list[dict[str, Any]], summarize: Callable) -> dict[str, float]:
    """Success and planning cost of evaluation results so far: seconds (measured, load-
    dependent) and the network calls per plan (the diffusion planners' count, exact)."""
    steps = sum(r["env_steps"] for r in results)
    out = {"success": summarize(results)["success_mean"],
           "plan_s_per_env_step": sum(r["plan_seconds"] for r in results) / max(steps, 1),
           "env_steps_per_s": steps / max(sum(r["seconds"] for r in results), 1e-9)}
    calls = [r.get("planner", {}).get("network_calls_per_plan") for r in results]
    if calls and None not in calls:
        out["network_calls_per_plan"] = float(max(calls))
    return out


def _train(cfg: Config, config: dict[str, Any], data: str | Path) -> Checkpoint:
    """The training stage inside a trial: not logged (the trial's run holds its settings),
    its workers taking `trainer_cpus_per_worker` CPUs each (default 1: the trial holds
    one itself). Recorded under the training root like a graph's job, by its run name
    (which hashes the training settings and the data)."""
    # (pulls in torch: imported on use)
    from mtdiff.experiment.execute import run_once
    from mtdiff.train.stage import run_name

    cpus = config.get("trainer_cpus_per_worker", 1)
    cfg = tracked(replace(cfg, train=replace(cfg.train, cpus_per_worker=cpus)), False)
    root = Path(config["train_out"])
    name = run_name(cfg, data)
    return run_once("train", cfg, Inputs(data=Dataset.at(data)), root,
                    record=Layout.at(root).job_record(f"train-{name}"), key=name)


def evaluate_trial(config: dict[str, Any]) -> None:
    """Trial: evaluate a planner checkpoint with swept sampling values (α, β, steps, ...).

    config (besides the common keys): "checkpoint", "suite", "tasks", "maps". Evaluation
    runs in the trial's own process (nested Ray fan-out inside trials would compete with
    the trials for CPUs).
    """
    import ray.tune

    from mtdiff.eval.stage import plan_jobs
    from mtdiff.eval.suites import run_job, summarize

    with _trial(config) as (cfg, _):
        found = Checkpoint.find(config["checkpoint"])
        ckpt, meta = found.path, found.meta
        jobs = plan_jobs(config["suite"], meta, cfg, cfg.eval, tasks=config.get("tasks"),
                         maps=config.get("maps"), wrong_prompt=False)
        results = []
        for i, job in enumerate(jobs):
            results.append(run_job(job, str(ckpt), cfg.diffusion, cfg.eval.target_return,
                                   cfg=cfg))
            if i + 1 < len(jobs):  # progress for the scheduler (ASHA) between jobs
                ray.tune.report({**_eval_metrics(results, summarize), "jobs_done": i + 1})
        metrics = _finish(config, _eval_metrics(results, summarize))
    ray.tune.report({**metrics, "jobs_done": len(jobs)})


def train_eval_trial(config: dict[str, Any]) -> None:
    """Trial: train MTDiff-P with swept values (horizon, prompt length, ...) on Ray Train,
    then evaluate it; the driver function builds the TorchTrainer (Train V2 pattern).

    config (besides the common keys): "data", "train_out", "suite", "tasks", "maps",
    "trainer_cpus_per_worker".
    """
    import ray.tune

    from mtdiff.eval.stage import plan_jobs
    from mtdiff.eval.suites import run_job, summarize

    with _trial(config) as (cfg, _):
        ckpt = _train(cfg, config, config["data"]).path
        meta = Checkpoint.at(ckpt).meta
        jobs = plan_jobs(config["suite"], meta, cfg, cfg.eval, tasks=config.get("tasks"),
                         maps=config.get("maps"), wrong_prompt=False)
        results = [run_job(j, str(ckpt), cfg.diffusion, cfg.eval.target_return, cfg=cfg)
                   for j in jobs]
        metrics = _finish(config, {"success": summarize(results)["success_mean"]},
                          checkpoint=str(ckpt))
    ray.tune.report(metrics)


def task_count_trial(config: dict[str, Any]) -> None:
    """Trial (Fig. 7): MTDiff-S trained on one task set -> synthesize for `task` -> TD3-BC
    on original + synthetic data, one run per `offline.seeds`. The driver function builds
    the TorchTrainer (`mtdiff.train.run`, Train V2 pattern); TD3-BC runs in the trial.

    config (besides the common keys): "data": {spec: dataset}, "train_out", "out"
    (synthesis + TD3-BC results), "task". Each stage is recorded as a graph's job is, so a
    resumed trial does not redo what finished.
    """
    import ray.tune

    from mtdiff.envs.metaworld import resolve_tasks
    from mtdiff.experiment.execute import run_once

    def num_tasks(cfg: Config) -> dict[str, Any]:
        return {"num_tasks": len(resolve_tasks(cfg.metaworld.tasks))}

    with _trial(config, num_tasks) as (cfg, _):
        cfg = replace(cfg, model=replace(cfg.model, kind="mtdiff-s"))
        spec, task = cfg.metaworld.tasks, config["task"]
        n = len(resolve_tasks(spec))
        data = Dataset.at(config["data"][spec])
        model = _train(cfg, config, data.path)
        ckpt = model.path
        lay = Layout.at(config["out"])
        off = {k: v for k, v in to_dict(cfg.offline).items() if k not in ("seeds", "tasks")}
        key = {"checkpoint": str(ckpt), "offline": off, "tasks": spec, "view": cfg.data.view}
        cfg = tracked(cfg, False)
        synth_out = lay.synthesis(task, key)
        src = run_once("synthesize", cfg, Inputs(model=model, task=task, data=data,
                                                 view=cfg.data.view), synth_out,
                       record=lay.job_record(f"synthesize-{synth_out.name}"),
                       key=config_hash(key))
        metrics: dict[str, float] = {"num_tasks": float(n)}
        method = f"mtdiff-s-{spec}"
        for seed in cfg.offline.seeds:
            out = lay.td3bc(task, method, seed, key)
            res = run_once("offline", cfg, Inputs(
                task=task, synth=src, variant=method, seed=seed,
                labels={"method": method, "num_tasks": n, "seen": True}), out,
                record=lay.job_record(f"offline-{task}-{out.name}"),
                key=config_hash({**key, "seed": seed, "method": method, "task": task}))
            metrics[f"success_s{seed}"] = res.info["success"]
        metrics["success"] = sum(metrics[f"success_s{s}"] for s in cfg.offline.seeds) / len(
            cfg.offline.seeds)
        _finish(config, metrics, checkpoint=str(ckpt))
    ray.tune.report(metrics)


def _evaluation(cfg: Config, ckpt: Path, suite: str, root: str | Path) -> dict[str, Any]:
    """The evaluation of `ckpt` under `cfg`'s evaluation and sampler settings, recorded under
    `root` by checkpoint and settings (a trial whose own record was lost or re-keyed does
    not evaluate again)."""
    # (pulls in torch: imported on use)
    from mtdiff.eval.policy import load_policy
    from mtdiff.experiment.execute import run_once

    key = config_hash({"checkpoint": str(Path(ckpt).resolve()), "eval": cfg.eval,
                       "diffusion": cfg.diffusion.identity()})
    out = Path(root) / f"{Path(ckpt).parent.name}-{key}"
    record = Layout.at(root).job_record(f"evaluate-{out.name}")
    model = Checkpoint.find(ckpt)
    tasks: tuple[str, ...] = ()
    if done_at(record, key) is None and load_policy(ckpt).conditioning == "task_id":
        tasks = tuple(model.meta["tasks"])  # it knows only its training tasks: no held-out
    return run_once("evaluate", tracked(cfg, False), Inputs(
        model=model, suite=suite, tasks=tasks, wrong_prompt=False), out,
        record=record, key=key).doc


def budget_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """A budget-curve cell's numbers from one evaluation: the score (success where the suite
    has one, else the average return) overall, per group and per task."""
    summary = evaluation["summary"]
    key = "success_mean" if summary["all"]["success_mean"] is not None else "return_mean"
    out = {"score": float(summary["all"][key])}
    for group in ("train", "heldout", "unseen"):
        if group in summary:
            out[f"score_{group}"] = float(summary[group][key])
    for task, row in summary["all"]["tasks"].items():
        out[f"task.{task}"] = float(row[key])
    for name, v in (summary.get("state_use") or {}).items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            out[f"state_use.{name}"] = float(v)
    return out


def budget_trial(config: dict[str, Any]) -> None:
    """Trial (budget curve): train one method at one budget and seed, then evaluate it on
    its suite (held-out tasks included). The driver function builds the TorchTrainer
    (`mtdiff.train.run`, Train V2 pattern); the evaluation fans out from the trial.

    config (besides the common keys): "data", "train_out", "out" (evaluations), "suite".
    """
    import ray.tune

    with _trial(config) as (cfg, _):
        ckpt = _train(cfg, {**config, "trainer_cpus_per_worker": 1}, config["data"]).path
        metrics = budget_metrics(_evaluation(cfg, ckpt, config["suite"], config["out"]))
        trained_on = Checkpoint.at(ckpt).meta["tasks"]  # batch = M x tasks
        metrics["samples"] = float(cfg.train.steps * cfg.data.batch_per_task * len(trained_on))
        _finish(config, metrics, checkpoint=str(ckpt))
    ray.tune.report({**metrics, "success": metrics["score"]})  # Tune's sort key
