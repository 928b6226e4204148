"""The training stage's driver side: skip / resume / fit, MLflow run, where the result is."""

from __future__ import annotations

import time
from pathlib import Path

from mtdiff.config import Config, flatten
from mtdiff.data.reader import verify_checksums
from mtdiff.train.core import CHECKPOINT_FILE, CheckpointError, load_checkpoint


def find_checkpoint(path: str | Path) -> Path:
    """The newest checkpoint folder at or under `path` (a run folder or a checkpoint)."""
    p = Path(path).resolve()
    if (p / CHECKPOINT_FILE).exists():
        return p
    if p.is_file() and p.name == CHECKPOINT_FILE:
        return p.parent
    found = sorted(p.glob(f"**/checkpoint_*/{CHECKPOINT_FILE}")) if p.is_dir() else []
    if not found:
        raise CheckpointError(f"no checkpoint under {path}; train with `python pipelines/train.py"
                              " --data DIR --out DIR` first (or check the path)")
    return found[-1].parent  # Ray names them checkpoint_<timestamp>: the last is the newest


def latest_checkpoint(path: str | Path) -> tuple[Path, int] | None:
    """The readable checkpoint with the highest step under `path`, or None.

    A run killed while Ray was copying a checkpoint into storage can leave a damaged or
    partial one behind; it is skipped (with a note) and the one before it is used.
    """
    p = Path(path)
    best: tuple[Path, int] | None = None
    for f in sorted(p.glob(f"**/checkpoint_*/{CHECKPOINT_FILE}")) if p.is_dir() else []:
        try:
            step = int(load_checkpoint(f.parent)["step"])
        except CheckpointError as e:
            print(f"[train] skipping unreadable checkpoint: {e}")
            continue
        if best is None or step > best[1]:
            best = (f.parent, step)
    return best


def run_name(cfg: Config, data: str | Path) -> str:
    """Run folder name: model kind + hash of the dataset and what shapes the weights."""
    from mtdiff.data.reader import read_manifest

    return f"train-{cfg.model.kind}-{cfg.training_hash(read_manifest(data)['config_hash'])}"


def run(cfg: Config, *, data: str | Path, out: str | Path, track: bool = True,
        cpus_per_worker: int | None = None) -> Path:
    """Train `cfg.model.kind` on the dataset at `data`; returns the final checkpoint folder.

    Finished runs (a checkpoint at `train.steps`) are skipped; unfinished ones resume.
    `cpus_per_worker`: CPUs each Ray Train worker reserves (default: the cluster's CPUs
    split over the workers); a caller that itself holds CPUs (a Tune trial) passes fewer,
    or the worker group can never be placed.
    """
    from mtdiff.runtime import init_ray
    from mtdiff.train.ray_train import build_trainer

    out = Path(out)
    name = run_name(cfg, data)
    latest = latest_checkpoint(out / name)
    if latest is not None and latest[1] >= cfg.train.steps:
        print(f"[train] {out / name} already finished ({cfg.train.steps} steps); skipping")
        return latest[0]
    if latest is not None:
        print(f"[train] resuming {out / name} from step {latest[1]} ({latest[0]})")
    verify_checksums(data)  # damaged shards: one clear error before any worker starts
    init_ray()
    spec = None
    mlflow_run = None
    if track:
        import mlflow

        from mtdiff import tracking

        uri = tracking.setup(cfg)
        parent = mlflow.active_run()
        mlflow_run = mlflow.start_run(run_name=name, nested=parent is not None,
                                      tags=tracking.common_tags(cfg, "train", model=cfg.model.kind))
        mlflow.log_params(flatten(cfg))
        spec = {"uri": uri, "run_id": mlflow_run.info.run_id}
    t0 = time.time()
    try:
        result = build_trainer(cfg, data, out, run_name=name, mlflow_spec=spec,
                               cpus_per_worker=cpus_per_worker,
                               resume_from=latest[0] if latest else None).fit()
        if result.error:
            raise result.error
        ckpt = find_checkpoint(result.checkpoint.path if result.checkpoint else out / name)
        if track:
            import mlflow

            from mtdiff import tracking
            from mtdiff.data.reader import read_manifest

            tracking.log_dataset(read_manifest(data), data)
            mlflow.log_metric("train_seconds", time.time() - t0)
            mlflow.log_artifact(str(ckpt / CHECKPOINT_FILE), artifact_path="checkpoint")
            mlflow.set_tag("checkpoint", str(ckpt))
    finally:
        if mlflow_run is not None:
            import mlflow

            mlflow.end_run()
    print(f"[train] {cfg.model.kind}: {cfg.train.steps} steps in {time.time() - t0:.1f}s -> {ckpt}")
    return ckpt
