"""The job kinds of the graph that call the pipeline stages: collect, subset, train,
distill, evaluate, reference, report. Each runs inside its job's Ray task as
``fn(job, inputs) -> result`` (`mtdiff.experiment.jobs`), inside that job's MLflow run
(`mtdiff.tracking.job_run`), through the stage's own `run` function — the same one
`pipelines/*.py` call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mtdiff import tracking
from mtdiff.artifacts import Checkpoint
from mtdiff.layout import evaluation_file


def _tracked() -> bool:
    """Whether a job's stage logs to MLflow: inside the run `execute` opened for the job (a
    graph that tracks). A graph run with --no-mlflow opens none, and its stages log nowhere
    (not into a default store of their own)."""
    return tracking.active() is not None


def collect(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Collect `params.suite` into `params.out` (the stage fans out one Ray task per env
    task); logs the dataset as the run's input."""
    from mtdiff.collect import run as collect_stage
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import MANIFEST

    p = job.params
    root = collect_stage(job.cfg, suite=p["suite"], out=p["out"], progress=False)
    man = read_manifest(root)
    tracking.log_dataset(man, root, context="collected")
    # a child run per SAC-collected task with its learning curve, where the graph tracks
    if _tracked() and p["suite"] == "metaworld" and job.cfg.metaworld.source == "sac":
        from mtdiff.collect.sac_run import log_sac_runs

        log_sac_runs(job.cfg, root)
    elif _tracked() and p["suite"] in ("cheetah-vel", "ant-dir"):
        from mtdiff.collect.mujoco import log_sac_curves

        log_sac_curves(job.cfg, root, p["suite"])
    return {"dataset": str(root), "hash": man["config_hash"], "tasks": sorted(man["tasks"]),
            "transitions": sum(int(t["transitions"]) for t in man["tasks"].values()),
            "outputs": [str(Path(root) / MANIFEST)]}


def subset(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A subset of a dataset: one task's (`params.task`: MTDiff-S-single, Fig. 6) or a task
    set's with the prompts of `params.prompt_tasks` (Fig. 7)."""
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.subset import write_subset
    from mtdiff.data.writer import MANIFEST

    p = job.params
    tasks = list(p["tasks"]) if "tasks" in p else [p["task"]]
    root = write_subset(inputs[p["data_job"]]["dataset"], p["out"], tasks,
                        p.get("prompt_tasks", ()))
    man = read_manifest(root)
    return {"dataset": str(root), "hash": man["config_hash"], "tasks": tasks,
            "outputs": [str(Path(root) / MANIFEST)]}


def train(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Train (or resume) one model: the Train V2 pattern — this task is the driver
    function that builds the `TorchTrainer`, whose workers reserve their own resources
    (`job.inner`, counted by the runner when it decides how many trainings run at once)."""
    from mtdiff.train.stage import run as train_stage

    p = job.params
    # a share of a GPU per worker where the grid gave one (`grid.train_gpu_share`)
    gpus = job.inner.get("GPU", 0.0) / max(job.inner.get("workers", 1.0), 1.0)
    ckpt = train_stage(job.cfg, data=inputs[p["data_job"]]["dataset"], out=p["root"],
                       track=_tracked(), cpus_per_worker=p.get("cpus_per_worker"),
                       gpus_per_worker=gpus or None)
    c = Checkpoint.at(ckpt)
    return {"checkpoint": str(c.path), "run": str(c.path.parent), "steps": c.step,
            "method": job.config.get("method"), "outputs": [str(c.file)]}


def distill(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Distil the teacher job's model into a few-step student (`mtdiff.train.distill`,
    resumes; its loss curve and validation error go to the job's run)."""
    from mtdiff.train.distill import run as distill_stage

    p = job.params
    ckpt = distill_stage(job.cfg, teacher=inputs[p["model_job"]]["checkpoint"],
                         data=inputs[p["data_job"]]["dataset"], out=p["root"], track=_tracked())
    c = Checkpoint.at(ckpt)
    return {"checkpoint": str(c.path), "run": str(c.path.parent), "steps": c.step,
            "teacher": inputs[p["model_job"]]["checkpoint"], "method": job.config.get("method"),
            "outputs": [str(c.file)]}


def evaluate(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Evaluate a trained planner (the stage fans out one Ray task per task/map and
    seed); per-task table and plots go to the job's run."""
    from mtdiff.eval.stage import run as evaluate_stage

    p = job.params
    ckpt = inputs[p["model_job"]]["checkpoint"]
    summary = evaluate_stage(ckpt, suite=p["suite"], out=p["out"], cfg_overrides=job.cfg,
                             track=_tracked())
    groups = {g: summary[g]["success_mean"] for g in
              ("all", "train", "unseen", "unseen_wrong_prompt", "heldout") if g in summary}
    eval_file = evaluation_file(p["out"], p["suite"])
    return {"eval_file": str(eval_file), "checkpoint": ckpt, "success": groups,
            "env_steps_per_s": summary["env_steps_per_s"], **job.config,
            "outputs": [str(eval_file)]}


def reference(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The reference rows of a suite (`mtdiff.eval.reference`): the zero action and a
    uniform random policy evaluated as its planners are, and the dataset's own numbers."""
    from mtdiff.eval.reference import run as reference_stage

    p = job.params
    doc = reference_stage(inputs[p["data_job"]]["dataset"], suite=p["suite"], out=p["out"],
                          cfg=job.cfg, track=_tracked())
    return {"reference_file": doc["path"], "suite": p["suite"], "outputs": [doc["path"]]}


def report(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The report from the records of the graph's jobs (`params.graph`): tables with
    spread and CIs, resolved differences, plots, `results.json`; the offline-RL contract
    files beside it; logged as the run's artifacts."""
    from mtdiff import tracking
    from mtdiff.report import RESULTS_FILE, build_report

    p = job.params
    write_contracts(p["root"], p["graph"])
    # "graph": the job names, or names -> keys (then records of another key are stale)
    path = build_report(p["root"], preset=job.cfg.preset, graph=p["graph"])
    tracking.log_artifact(Path(path).parent, artifact_path="report")
    results = Path(path).parent / RESULTS_FILE
    return {"report": str(path), "results": str(results), "outputs": [str(path), str(results)]}


def write_contracts(root: str | Path, graph: Sequence[str] | Mapping[str, str]) -> None:
    """The offline-RL results as contract files (`mtdiff.report.contracts`: Table 2,
    Table 4, Figs. 6 and 7), from the graph's finished offline and quality records
    (`report.records.load_graph`: `graph` is job names, or names -> keys): an export for
    other tools (the report reads the records themselves). Fig. 7's file is merged, so
    records a `sweeps/task_count.py` run wrote there stay."""
    from mtdiff.report import contracts
    from mtdiff.report.offline_tables import fig6_records
    from mtdiff.report.records import load_graph

    recs = load_graph(root, graph)
    keep = ("task", "seen", "method", "seed", "success", "mean_return", "transitions",
            "episodes", "preset", "num_tasks")
    runs = [{k: r[k] for k in keep if k in r} for r in recs.offline()]
    table2 = [r for r in runs if r["method"] in contracts.METHODS and "num_tasks" not in r]
    # "source": the report shows the file's other records (a sweep's) beside the graph's
    fig7 = [{**r, "method": "mtdiff-s", "source": "graph"} for r in runs if "num_tasks" in r]
    if table2:
        contracts.write_table2(root, table2)
    if recs.quality():
        contracts.write_quality(root, recs.quality())
    if fig6_records(runs):
        contracts.write_single_task(root, fig6_records(runs))
    if fig7:
        contracts.write_task_count(root, fig7, merge=True)
