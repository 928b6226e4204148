"""Tune sweeps over the project's run functions; every trial an MLflow child run.

The scripts in `sweeps/` hold only search spaces; they call `run_sweep` with one of the
trial functions here. Train V2 pattern: a trial that trains runs a driver function that
builds a `TorchTrainer` itself (`mtdiff.train.run`), never a Trainer inside the Tuner.

MLflow: the sweep's driver opens a parent run; each trial opens a child run (tag
``mlflow.parentRunId``) with the swept values as params and the objective as a metric,
so the UI's compare view lines the trials up. Concurrency comes from the cluster's
resources; ``scheduler="asha"`` stops poor trials early; a sweep interrupted midway
resumes from its experiment folder when the same command is run again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtdiff.config import Config, apply_overrides, flatten, to_dict


def _child_run(spec: dict[str, str], name: str, params: dict[str, Any]) -> Any:
    import mlflow

    mlflow.set_tracking_uri(spec["uri"])
    mlflow.set_experiment(experiment_id=spec["experiment_id"])
    run = mlflow.start_run(run_name=name, tags={"mlflow.parentRunId": spec["parent_id"],
                                                "stage": "sweep-trial", "sweep": spec["sweep"]})
    mlflow.log_params(params)
    return run


def evaluate_trial(config: dict[str, Any]) -> None:
    """Trial: evaluate a planner checkpoint with swept sampling values (α, β, steps, ...).

    config: {"params": {dotted config field: value}, "base": Config dict, "checkpoint",
    "suite", "mlflow": spec}. Evaluation runs in the trial's own process (nested Ray
    fan-out inside trials would compete with the trials for CPUs).
    """
    import mlflow
    import ray.tune

    from mtdiff.config import from_dict
    from mtdiff.eval.stage import plan_jobs
    from mtdiff.eval.suites import run_job, summarize
    from mtdiff.train.checkpoints import find_checkpoint, load_checkpoint

    params = _expand(config["params"])
    cfg = apply_overrides(from_dict(config["base"]), [f"{k}={v}" for k, v in params.items()])
    ckpt = find_checkpoint(config["checkpoint"])
    meta = load_checkpoint(ckpt)["meta"]
    jobs = plan_jobs(config["suite"], meta, cfg, cfg.eval, tasks=config.get("tasks"),
                     maps=config.get("maps"), wrong_prompt=False)
    run = _child_run(config["mlflow"], _trial_name(params), params)
    results = []
    for i, job in enumerate(jobs):
        results.append(run_job(job, str(ckpt), cfg.diffusion, cfg.eval.target_return))
        ray.tune.report({**_eval_metrics(results, summarize), "jobs_done": i + 1})
    mlflow.log_metrics(_eval_metrics(results, summarize))
    mlflow.end_run()
    del run


def train_eval_trial(config: dict[str, Any]) -> None:
    """Trial: train MTDiff-P with swept values (horizon, prompt length, ...) on Ray Train,
    then evaluate it; the driver function builds the TorchTrainer (Train V2 pattern)."""
    import mlflow
    import ray.tune

    from mtdiff.config import from_dict
    from mtdiff.eval.stage import plan_jobs
    from mtdiff.eval.suites import run_job, summarize
    from mtdiff.train import run as train
    from mtdiff.train.checkpoints import load_checkpoint

    params = _expand(config["params"])
    cfg = apply_overrides(from_dict(config["base"]), [f"{k}={v}" for k, v in params.items()])
    run = _child_run(config["mlflow"], _trial_name(params), params)
    ckpt = train(cfg, data=config["data"], out=config["train_out"], track=False,
                 cpus_per_worker=config.get("trainer_cpus_per_worker", 1))
    meta = load_checkpoint(ckpt)["meta"]
    jobs = plan_jobs(config["suite"], meta, cfg, cfg.eval, tasks=config.get("tasks"),
                     maps=config.get("maps"), wrong_prompt=False)
    results = [run_job(j, str(ckpt), cfg.diffusion, cfg.eval.target_return) for j in jobs]
    success = summarize(results)["success_mean"]
    mlflow.log_metric("success", success)
    mlflow.set_tag("checkpoint", str(ckpt))
    mlflow.end_run()
    del run
    ray.tune.report({"success": success})


def _expand(params: dict[str, Any]) -> dict[str, Any]:
    """Swept values that are dicts set several fields at once (e.g. sampler and its step
    count together: ``{"diffusion.sampler": "ddim", "diffusion.sample_steps": 20}``)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        out.update(v if isinstance(v, dict) else {k: v})
    return out


def _eval_metrics(results: list[dict[str, Any]], summarize: Callable) -> dict[str, float]:
    """Success and planning cost of evaluation results so far."""
    steps = sum(r["env_steps"] for r in results)
    return {"success": summarize(results)["success_mean"],
            "plan_s_per_env_step": sum(r["plan_seconds"] for r in results) / max(steps, 1),
            "env_steps_per_s": steps / max(sum(r["seconds"] for r in results), 1e-9)}


def _trial_name(params: dict[str, Any]) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())


def run_sweep(name: str, cfg: Config, space: dict[str, Any], trial: Callable[[dict], None], *,
              trial_config: dict[str, Any], storage: str | Path,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              trainer_cpus: float = 0.0,
              num_samples: int = 1, scheduler: str | None = None,
              max_concurrent: int | None = None) -> dict[str, Any]:
    """Run (or resume) a sweep; returns {"parent_run_id", "results": [(params, success)],
    "best", "trials": [(params, all last metrics)]}.

    space: dotted config field -> a Tune domain (``tune.grid_search([...])``, ...).
    trainer_cpus: CPUs a trial's own `TorchTrainer` reserves outside the trial (Train V2:
    the trainer's workers are not part of the trial's resources); counted when deciding
    how many trials run at once.
    """
    import mlflow
    from ray import tune

    from mtdiff import tracking
    from mtdiff.runtime import cluster_cpus, init_ray

    init_ray()
    uri = tracking.setup(cfg)
    exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    storage = Path(storage).resolve()
    per_trial = max(cpus_per_trial + trainer_cpus, 1e-9)
    concurrent = max_concurrent or max(1, int(cluster_cpus() // per_trial))
    sched = None
    if scheduler == "asha":
        sched = tune.schedulers.ASHAScheduler(grace_period=1, reduction_factor=2)
    elif scheduler is not None:
        raise ValueError(f"unknown scheduler {scheduler!r}; use 'asha' or none")
    parent = _find_parent(exp.experiment_id, name, str(storage))
    with mlflow.start_run(run_id=parent, run_name=f"sweep-{name}",
                          tags={**tracking.common_tags(cfg, "sweep"), "sweep": name,
                                "sweep_storage": str(storage)}) as prun:
        if parent is None:
            mlflow.log_params({f"space.{k}": str(v) for k, v in space.items()})
            mlflow.log_params(flatten(cfg))
        spec = {"uri": uri, "experiment_id": exp.experiment_id, "parent_id": prun.info.run_id,
                "sweep": name}
        param_space = {**trial_config, "base": to_dict(cfg), "mlflow": spec,
                       "params": dict(space.items())}
        resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        trainable = tune.with_resources(trial, resources)
        path = storage / name
        if tune.Tuner.can_restore(str(path)):
            print(f"[sweep] resuming {path}")
            tuner = tune.Tuner.restore(str(path), trainable, param_space=param_space,
                                       resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable, param_space=param_space,
                tune_config=tune.TuneConfig(metric="success", mode="max", scheduler=sched,
                                            num_samples=num_samples,
                                            max_concurrent_trials=concurrent),
                run_config=tune.RunConfig(name=name, storage_path=str(storage)))
        grid = tuner.fit()
        rows = [(r.config["params"], r.metrics.get("success")) for r in grid if r.metrics]
        best = max(rows, key=lambda r: r[1] if r[1] is not None else -1) if rows else None
        if best:
            mlflow.log_metric("best_success", float(best[1]))
            mlflow.set_tag("best_params", str(best[0]))
    trials = [(r.config["params"], dict(r.metrics)) for r in grid if r.metrics]
    return {"parent_run_id": prun.info.run_id, "results": rows, "best": best, "trials": trials}


def _find_parent(experiment_id: str, name: str, storage: str) -> str | None:
    """The parent run of an earlier, interrupted run of the same sweep (to resume into)."""
    import mlflow

    runs = mlflow.search_runs([experiment_id], output_format="list",
                              filter_string=f"tags.sweep = '{name}' and "
                                            f"tags.sweep_storage = '{storage}' and "
                                            "tags.stage = 'sweep'")
    return runs[0].info.run_id if runs else None


def task_count_trial(config: dict[str, Any]) -> None:
    """Trial (Fig. 7): MTDiff-S trained on one task set -> synthesize for `task` -> TD3-BC
    on original + synthetic data, one run per `offline.seeds`. The driver function builds
    the TorchTrainer (`mtdiff.train.run`, Train V2 pattern); TD3-BC runs in the trial.

    config: {"params": {"metaworld.tasks": spec}, "base", "mlflow", "data": {spec: dataset},
    "train_out", "out" (synthesis + TD3-BC results), "task"}. Finished TD3-BC runs are
    read back, so a resumed sweep does not redo them.
    """
    import json
    from dataclasses import replace

    import mlflow
    import ray.tune

    from mtdiff.config import from_dict
    from mtdiff.envs.metaworld import resolve_tasks
    from mtdiff.layout import Layout
    from mtdiff.offline.jobs import load_task, synthesize_data, td3bc_cell
    from mtdiff.train import run as train

    params = _expand(config["params"])
    cfg = apply_overrides(from_dict(config["base"]), [f"{k}={v}" for k, v in params.items()])
    cfg = replace(cfg, model=replace(cfg.model, kind="mtdiff-s"))
    spec, task = cfg.metaworld.tasks, config["task"]
    n = len(resolve_tasks(spec))
    run = _child_run(config["mlflow"], _trial_name(params), {**params, "num_tasks": n})
    data = Path(config["data"][spec])
    ckpt = train(cfg, data=data, out=config["train_out"], track=False,
                 cpus_per_worker=config.get("trainer_cpus_per_worker", 1))
    lay = Layout.at(config["out"])
    offline = {k: v for k, v in to_dict(cfg.offline).items() if k not in ("seeds", "tasks")}
    key = {"checkpoint": str(ckpt), "offline": offline, "tasks": spec, "view": cfg.data.view}
    src = synthesize_data(cfg, str(ckpt), task, str(data), cfg.data.view, lay.synthesis(task, key))
    metrics: dict[str, float] = {"num_tasks": float(n)}
    for seed in cfg.offline.seeds:
        out = lay.td3bc(task, f"mtdiff-s-{spec}", seed, key)
        f = out / "result.json"
        rec = json.loads(f.read_text()) if f.exists() else td3bc_cell(
            cfg, load_task(src["augmented"], task, "near-optimal"), task=task, seed=seed,
            out=out, method=f"mtdiff-s-{spec}", num_tasks=n, seen=True)
        metrics[f"success_s{seed}"] = rec["success"]
    metrics["success"] = sum(metrics[f"success_s{s}"] for s in cfg.offline.seeds) / len(
        cfg.offline.seeds)
    mlflow.log_metrics(metrics)
    mlflow.set_tag("checkpoint", str(ckpt))
    mlflow.end_run()
    del run
    ray.tune.report(metrics)
