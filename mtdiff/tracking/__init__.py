"""MLflow in one place: where runs go, run naming, params, tags, run states, stale runs.

No other module calls `mlflow` directly: stages ask for a run here (`stage_run`,
`job_run`) and log through the functions below (`log_metrics`, `log_artifact`, ...).

The embedded default store is ``sqlite:///mlflow.db`` (MLflow 3's default; the file store
needs an opt-in). On a cluster set ``tracking.uri`` (or $MLFLOW_TRACKING_URI) to the
``mlflow server`` on the head node so every worker logs to one place.

The experiment is marked for model training (`EXPERIMENT_KIND`), which MLflow UIs that read
the tag take to open it on its runs, not on the GenAI overview (3.17's UI follows a switch it
keeps per browser instead: `ui.runs_page_url` links past it). Every run a stage or job
opens samples system metrics (CPU, memory, disk, network; GPU where `nvidia-ml-py` is
installed: the `gpu` extra).

Run states are honest: a run whose body raises ends FAILED (KILLED on Ctrl-C); a run a
killed process left RUNNING is closed (KILLED) by the next run that claims the same output
folder (`claim_output`: an exclusive lock on the folder proves nobody else is writing it).
"""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtdiff.config import Config, config_hash, flatten, to_dict
from mtdiff.tracking.outputs import LOCK_FILE, OutputBusyError, claim_output, close_stale_runs
from mtdiff.tracking.store import (
    CODE_VERSION_FILE,
    code_version,
    retry_budget,
    retry_seconds,
    setup,
)
from mtdiff.tracking.ui import mark_model_training

__all__ = ["CODE_VERSION_FILE", "LOCK_FILE", "OutputBusyError", "RunLogger", "abandon_runs",
           "active", "claim_output", "close_stale_runs", "code_version", "common_tags",
           "end_parent", "job_run", "log_artifact", "log_dataset", "log_metrics", "log_params",
           "log_table", "mark_model_training", "nested_run", "parent_name", "retry_budget",
           "retry_seconds", "run", "set_tags", "setup", "stage_run", "start_parent"]

def _quiet_system_metrics() -> None:
    """Keep the system-metrics monitor's per-run INFO lines (and its note that no GPU
    library is installed) out of the stage logs."""
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)


def common_tags(cfg: Config, stage: str, **extra: Any) -> dict[str, str]:
    """Tags every run carries: stage, preset, config hash, code version, host (+ extra)."""
    tags = {"stage": stage, "preset": cfg.preset, "config_hash": config_hash(cfg),
            "code_version": code_version(), "host": socket.gethostname()}
    node = _ray_node_id()
    if node:
        tags["ray_node_id"] = node
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def _ray_node_id() -> str:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    return ray.get_runtime_context().get_node_id()


def _params(cfg: Config, params: dict[str, Any] | None,
            sections: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The config (or its `sections`) as flat params, `params` taking precedence."""
    flat = flatten(cfg)
    if sections is not None:
        flat = {k: v for k, v in flat.items() if k.split(".", 1)[0] in sections}
    out = dict(flat)
    out.update(params or {})
    return out


@contextmanager
def _ended(run: Any) -> Iterator[Any]:
    """End `run` FINISHED, or FAILED / KILLED when the body raises (then re-raise)."""
    import mlflow

    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


@contextmanager
def run(cfg: Config, stage: str, *, name: str | None = None, nested: bool = False,
        params: dict[str, Any] | None = None, **tags: Any) -> Iterator[Any]:
    """An MLflow run for a stage: flattened config (+ `params`) as params, common tags.

    With ``nested=True`` it becomes a child of the active run (which samples the system
    metrics already). Ends FAILED when the body raises.
    """
    import mlflow

    _quiet_system_metrics()
    active = mlflow.start_run(run_name=name or stage, nested=nested,
                              tags=common_tags(cfg, stage, **tags), log_system_metrics=not nested)
    with _ended(active):
        mlflow.log_params(_params(cfg, params))
        yield active


@contextmanager
def stage_run(cfg: Config, stage: str, *, name: str, output: str | Path, track: bool = True,
              params: dict[str, Any] | None = None, **tags: Any
              ) -> Iterator[dict[str, str] | None]:
    """The run a stage logs into, as ``{"uri", "run_id"}`` (what worker processes need to
    log into it), or None when not tracking.

    Inside a job of the experiment graph (a run is already active: `job_run`) that run is
    used. A stage called on its own (`pipelines/train.py`) claims its `output` folder,
    closes runs a killed earlier attempt left RUNNING there, and opens its own run.
    """
    if not track:
        yield None
        return
    import mlflow

    if mlflow.active_run() is not None:
        yield {"uri": mlflow.get_tracking_uri(), "run_id": mlflow.active_run().info.run_id,
               "retry_s": cfg.tracking.retry_s}
        return
    uri = setup(cfg)
    output = str(Path(output).resolve())
    with claim_output(output):
        close_stale_runs(cfg, output)
        with run(cfg, stage, name=name, params=params, output=output, **tags) as active:
            yield {"uri": uri, "run_id": active.info.run_id, "retry_s": cfg.tracking.retry_s}


@contextmanager
def job_run(spec: dict[str, Any], cfg: Config, *, name: str, stage: str,
            sections: tuple[str, ...], params: dict[str, Any] | None = None, **tags: Any
            ) -> Iterator[Any]:
    """A job's child run under the experiment graph's parent, from inside its Ray task.

    spec: ``{"uri", "experiment_id", "parent_id", "output"}`` from the driver. The run
    carries the config `sections` the job uses (e.g. data, model, diffusion, train for a
    training job: its own model kind, seed, view) and `params` (its grid fields) as
    params, a `config_hash` of exactly those, the node it ran on (`ray_node_id`) and the
    graph's output folder (so a rerun can close it if it is left RUNNING). Ends FAILED
    when the job raises.
    """
    import mlflow

    retry_budget(spec.get("retry_s"))
    mlflow.set_tracking_uri(spec["uri"])
    mark_model_training(mlflow.set_experiment(experiment_id=spec["experiment_id"]))
    _quiet_system_metrics()
    own = config_hash({"sections": {s: to_dict(getattr(cfg, s)) for s in sections},
                       "job": params or {}})
    active = mlflow.start_run(run_name=name, tags={
        **common_tags(cfg, stage, **tags), "config_hash": own,
        "mlflow.parentRunId": spec["parent_id"], "output": spec["output"], "job": name},
        log_system_metrics=True)
    with _ended(active):
        mlflow.log_params(_params(cfg, params, ("preset", *sections)))
        yield active


def start_parent(cfg: Config, *, name: str, output: str | Path, **tags: Any) -> dict[str, Any]:
    """Open the experiment graph's parent run in this (the driver's) process; returns the
    spec jobs need to open their child runs under it (`job_run`). End it with
    `end_parent`."""
    import mlflow

    uri = setup(cfg)
    output = str(Path(output).resolve())
    _quiet_system_metrics()
    active = mlflow.start_run(run_name=name, tags=common_tags(cfg, "full_repro", output=output,
                                                              **tags), log_system_metrics=True)
    mlflow.log_params(_params(cfg, None))
    return {"uri": uri, "experiment_id": active.info.experiment_id,
            "parent_id": active.info.run_id, "output": output,
            "retry_s": cfg.tracking.retry_s}


def end_parent(ok: bool, *, interrupted: bool = False) -> None:
    """End the parent run: FINISHED when every job finished, KILLED when interrupted
    (Ctrl-C), else FAILED."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.end_run("KILLED" if interrupted else "FINISHED" if ok else "FAILED")


def abandon_runs() -> None:
    """The tracking server is gone and the command is about to stop with one line: the runs
    this process opened stay RUNNING on the server (the rerun closes them), and MLflow's
    threads here (the system-metrics sampler asks the server for its run every few seconds)
    must not print after that line. They are told to stop, without waiting for them (a call
    to a dead server waits out its retries), and MLflow's logging is silenced."""
    # Every MLflow logger, not only the top one: ours set "mlflow.system_metrics"'s own level,
    # and a logger with its own level does not take its parent's.
    for name in ["mlflow", *logging.root.manager.loggerDict]:
        if name == "mlflow" or name.startswith("mlflow."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    fluent = sys.modules.get("mlflow.tracking.fluent")
    for monitor in getattr(fluent, "run_id_to_system_metrics_monitor", {}).values():
        stop = getattr(monitor, "_shutdown_event", None)  # MLflow's own stop flag
        if stop is not None:
            stop.set()


def parent_name(preset: str, cfg: Config) -> str:
    """A reproduction's parent run name: preset, start time and the config's short hash,
    so two runs of one preset can be told apart in the UI."""
    return f"full_repro-{preset}-{time.strftime('%Y%m%d-%H%M%S')}-{config_hash(cfg)[:6]}"


def log_params(params: dict[str, Any]) -> None:
    """Params on the active run."""
    import mlflow

    mlflow.log_params(params)


def active() -> Any | None:
    """The `mlflow` module when a run is active in this process, else None. A run can only
    be active if mlflow was imported already, so this never pays for importing it when
    tracking is off."""
    mlflow = sys.modules.get("mlflow")
    return mlflow if mlflow is not None and mlflow.active_run() is not None else None


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Metrics on the active run (no-op when no run is active)."""
    mlflow = active()
    if mlflow is not None and metrics:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)


def set_tags(tags: dict[str, Any]) -> None:
    """Tags on the active run (no-op when no run is active)."""
    mlflow = active()
    if mlflow is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """A file (or a folder's files) as artifacts of the active run (no-op without one)."""
    mlflow = active()
    if mlflow is None:
        return
    p = Path(path)
    if p.is_dir():
        mlflow.log_artifacts(str(p), artifact_path=artifact_path)
    else:
        mlflow.log_artifact(str(p), artifact_path=artifact_path)


def log_table(rows: list[dict[str, Any]], artifact_file: str) -> None:
    """A table (list of flat records) as a JSON table artifact the UI renders."""
    mlflow = active()
    if mlflow is None or not rows:
        return
    cols = sorted({k for r in rows for k in r})
    mlflow.log_table({c: [r.get(c) for r in rows] for c in cols}, artifact_file=artifact_file)


def log_dataset(manifest: dict[str, Any], path: str | Path, *, context: str = "training",
                view: str | None = None) -> None:
    """The dataset as an MLflow dataset input (`mlflow.data`) of the active run, with its
    lineage tags and size / quality metrics."""
    mlflow = active()
    if mlflow is None:
        return
    tasks = manifest["tasks"]
    n = sum(int(t["transitions"]) for t in tasks.values())
    mlflow.set_tags({"dataset_path": str(path), "dataset_hash": manifest["config_hash"],
                     "dataset_source": manifest["source"]})
    mlflow.log_metrics({
        "dataset_transitions": float(n), "dataset_tasks": float(len(tasks)),
        "dataset_mean_success": float(sum(t["success_rate"] for t in tasks.values())
                                      / max(len(tasks), 1)),
    })
    if "collect_seconds" in manifest:
        mlflow.log_metric("collect_seconds", float(manifest["collect_seconds"]))
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    name = f"{manifest.get('suite', 'data')}-{manifest['config_hash']}" + (
        f"-{view}" if view else "")
    ds = MetaDataset(source=LocalArtifactDatasetSource(str(path)), name=name,
                     digest=manifest["config_hash"][:8],
                     schema=None)
    mlflow.log_input(ds, context=context, tags={"transitions": str(n),
                                                "tasks": ",".join(sorted(tasks))[:250]})


class RunLogger:
    """Logs metrics into an existing run from another process (a Ray Train worker), by run
    id through the client: it never starts or ends the run, so the run's state stays the
    owner's to set. Also samples system metrics (CPU, memory, GPU) into the run, as
    ``system/train_worker/...``: the run's owner samples its own node as ``system/...``,
    and the worker may sit on another (the GPU) node."""

    def __init__(self, spec: dict[str, str] | None, *, enabled: bool = True) -> None:
        self.active = spec is not None and enabled
        self._monitor = None
        if self.active:
            import mlflow
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            _quiet_system_metrics()
            retry_budget(spec.get("retry_s"))
            self.client = mlflow.MlflowClient(tracking_uri=spec["uri"])
            self.run_id = spec["run_id"]
            self._monitor = SystemMetricsMonitor(self.run_id, tracking_uri=spec["uri"],
                                                 resume_logging=True, node_id="train_worker")
            self._monitor.start()

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Metrics at `step`."""
        if self.active:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[
                Metric(k, float(v), now, step) for k, v in metrics.items()])

    def close(self) -> None:
        """Stop sampling system metrics."""
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None


# ----------------------------------------------------------------------------------------
# Sweeps (`mtdiff.sweeps`) and nested runs
# ----------------------------------------------------------------------------------------


@contextmanager
def nested_run(name: str, **tags: Any) -> Iterator[Any]:
    """A child run of the active run (e.g. one SAC task of a collection); FAILED when its
    body raises."""
    import mlflow

    active = mlflow.start_run(run_name=name, nested=True, tags={k: str(v) for k, v in
                                                                tags.items()})
    with _ended(active):
        yield active
