"""The training stage's driver side: skip / resume / fit, the MLflow run, where the result is."""

from __future__ import annotations

import time
from pathlib import Path

from mtdiff.config import Config
from mtdiff.train.checkpoints import CHECKPOINT_FILE, find_checkpoint, latest_checkpoint


def run_name(cfg: Config, data: str | Path) -> str:
    """Run folder name (`mtdiff.layout.train_run_name`) for the dataset at
    `data`."""
    from mtdiff.data.reader import read_manifest
    from mtdiff.layout import train_run_name

    return train_run_name(cfg, read_manifest(data)["config_hash"])


def run(cfg: Config, *, data: str | Path, out: str | Path, track: bool = True,
        cpus_per_worker: int | None = None, gpus_per_worker: float | None = None) -> Path:
    """Train `cfg.model.kind` on the dataset at `data`; returns the final checkpoint folder.

    Finished runs (a checkpoint at `train.steps`) are skipped; unfinished ones resume from
    their newest readable checkpoint. `cpus_per_worker`: CPUs each Ray Train worker
    reserves (default: `train.cpus_per_worker`, else the largest node's CPUs split over
    the workers); a caller that itself holds CPUs passes fewer, or the worker group can
    never be placed. `gpus_per_worker`: a share of a GPU per worker on a GPU cluster
    (default: a whole one). Paths are made absolute here: Ray Train workers run elsewhere.
    """
    from mtdiff import tracking
    from mtdiff.data.reader import read_manifest, verify_checksums
    from mtdiff.runtime import init_ray
    from mtdiff.train.ray_train import build_trainer

    data, out = Path(data).resolve(), Path(out).resolve()
    name = run_name(cfg, data)
    latest = latest_checkpoint(out / name)
    if latest is not None and latest[1] >= cfg.train.steps:
        print(f"[train] {out / name} already finished ({cfg.train.steps} steps); skipping")
        return latest[0]
    if latest is not None:
        print(f"[train] resuming {out / name} from step {latest[1]} ({latest[0]})")
    verify_checksums(data)  # damaged shards: one clear error before any worker starts
    init_ray()
    t0 = time.time()
    with tracking.stage_run(cfg, "train", name=name, output=out / name, track=track,
                            model=cfg.model.kind) as spec:
        result = build_trainer(cfg, data, out, run_name=name, mlflow_spec=spec,
                               cpus_per_worker=cpus_per_worker,
                               gpus_per_worker=gpus_per_worker,
                               resume_from=latest[0] if latest else None).fit()
        if result.error:
            raise result.error
        ckpt = find_checkpoint(out / name)
        if spec is not None:
            tracking.log_dataset(read_manifest(data), data, view=cfg.data.view)
            tracking.log_metrics({"train_seconds": time.time() - t0})
            tracking.log_artifact(ckpt / CHECKPOINT_FILE, artifact_path="checkpoint")
            tracking.set_tags({"checkpoint": str(ckpt)})
    print(f"[train] {cfg.model.kind}: {cfg.train.steps} steps in {time.time() - t0:.1f}s -> {ckpt}")
    return ckpt
