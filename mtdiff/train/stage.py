"""The training stage's driver side: skip / resume / fit, the MLflow run, where the result is."""

from __future__ import annotations

import time
from pathlib import Path

from mtdiff import tracking
from mtdiff.artifacts import Checkpoint, Inputs
from mtdiff.config import Config
from mtdiff.data.reader import read_manifest, verify_checksums
from mtdiff.layout import train_run_name
from mtdiff.runtime import init_ray
from mtdiff.train.checkpoints import tidy_run
from mtdiff.train.ray_train import build_trainer


def run_name(cfg: Config, data: str | Path) -> str:
    """Run folder name (`mtdiff.layout.train_run_name`) for the dataset at
    `data`."""
    return train_run_name(cfg, read_manifest(data)["config_hash"])


def run(cfg: Config, inputs: Inputs, out: Path) -> Checkpoint:
    """Train `cfg.model.kind` on `inputs.data` into a run folder under `out` (named by
    `run_name`); returns its final checkpoint.

    Finished runs (a checkpoint at `train.steps`) are skipped; unfinished ones resume from
    their newest readable checkpoint. Each Ray Train worker reserves
    `train.cpus_per_worker` CPUs (None: the largest node's CPUs split over the workers; a
    caller that itself holds CPUs sets fewer, or the worker group can never be placed) and
    `train.gpus_per_worker` of a GPU on a GPU cluster (None: a whole one). Logs to MLflow
    when `tracking.enabled`. Paths are made absolute here: Ray Train workers run elsewhere.
    """
    data, out = inputs.need("data").path.resolve(), Path(out).resolve()
    track = cfg.tracking.enabled
    name = run_name(cfg, data)
    latest = Checkpoint.latest(out / name)
    if latest is not None and latest.step >= cfg.train.steps:
        print(f"[train] {out / name} already finished ({cfg.train.steps} steps); skipping")
        if track:
            _close_stale_runs(cfg, out / name)
        return latest
    if latest is not None:
        print(f"[train] resuming {out / name} from step {latest.step} ({latest.path})")
    verify_checksums(data)  # damaged shards: one clear error before any worker starts
    init_ray()
    t0 = time.time()
    with tracking.stage_run(cfg, "train", name=name, output=out / name, track=track,
                            model=cfg.model.kind) as spec:
        # What a kill (or a full disk) left: copies cut short, Ray's own checkpoint list
        # damaged. (This process holds the run folder now: `stage_run` claimed it.)
        tidy_run(out / name)
        trainer = build_trainer(cfg, data, out, run_name=name, mlflow_spec=spec,
                                cpus_per_worker=cfg.train.cpus_per_worker,
                                gpus_per_worker=cfg.train.gpus_per_worker,
                                resume_from=latest.path if latest else None)
        try:
            result = trainer.fit()  # Ray Train V2 raises TrainingFailedError
            if result.error:
                raise result.error
        except Exception:
            # Nothing half-written stays: checkpoints this fit's Ray copied only in part
            # (a full disk) go, and a checkpoint list it left damaged is set aside.
            tidy_run(out / name)
            raise
        found = Checkpoint.find(out / name)
        if spec is not None:
            tracking.log_dataset(read_manifest(data), data, view=cfg.data.view)
            tracking.log_metrics({"train_seconds": time.time() - t0})
            tracking.log_artifact(found.file, artifact_path="checkpoint")
            tracking.set_tags({"checkpoint": str(found.path)})
    print(f"[train] {cfg.model.kind}: {cfg.train.steps} steps in {time.time() - t0:.1f}s "
          f"-> {found.path}")
    return found


def _close_stale_runs(cfg: Config, run_dir: Path) -> None:
    """A finished run found again: close the MLflow run that an attempt killed after its
    last checkpoint (before it ended its run) left RUNNING, as `tracking.stage_run` does
    before it opens a run. Inside a job of the experiment graph (a run is active in this
    process) the graph does that; a live process writing `run_dir` keeps its run."""
    if tracking.active() is not None:
        return
    try:
        with tracking.claim_output(run_dir):
            closed = tracking.close_stale_runs(cfg, run_dir)
    except tracking.OutputBusyError:
        return
    if closed:
        print(f"[train] closed {len(closed)} MLflow run(s) a killed attempt left RUNNING")
