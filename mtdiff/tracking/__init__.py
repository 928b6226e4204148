"""MLflow in one place: where runs go, run naming, the config as params, common tags.

The embedded default store is ``sqlite:///mlflow.db`` (MLflow 3's default; the file store
needs an opt-in). On a cluster set ``tracking.uri`` (or $MLFLOW_TRACKING_URI) to the
``mlflow server`` on the head node so every worker logs to one place.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtdiff.config import Config, config_hash, flatten


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store and experiment; returns the URI."""
    import mlflow

    uri = cfg.tracking.resolved_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(cfg.tracking.experiment)
    return uri


def code_version() -> str:
    """The git commit of the code (with '+dirty' when the tree has changes), or 'unknown'."""
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def common_tags(cfg: Config, stage: str, **extra: Any) -> dict[str, str]:
    """Tags every run carries: stage, preset, config hash, code version (+ extra)."""
    tags = {"stage": stage, "preset": cfg.preset, "config_hash": config_hash(cfg),
            "code_version": code_version()}
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


@contextmanager
def run(cfg: Config, stage: str, *, name: str | None = None, nested: bool = False,
        params: dict[str, Any] | None = None, **tags: Any) -> Iterator[Any]:
    """An MLflow run for a stage: flattened config as params, common tags.

    With ``nested=True`` it becomes a child of the active run (one parent per pipeline).
    """
    import mlflow

    with mlflow.start_run(run_name=name or stage, nested=nested,
                          tags=common_tags(cfg, stage, **tags)) as active:
        mlflow.log_params({k: v for k, v in flatten(cfg).items()})
        if params:
            mlflow.log_params(params)
        yield active


def log_dataset(manifest: dict[str, Any], path: str | Path) -> None:
    """Dataset lineage and summary on the active run: path, config hash, sizes, quality."""
    import mlflow

    tasks = manifest["tasks"]
    mlflow.set_tags({"dataset_path": str(path), "dataset_hash": manifest["config_hash"],
                     "dataset_source": manifest["source"]})
    mlflow.log_metrics({
        "dataset_transitions": float(sum(t["transitions"] for t in tasks.values())),
        "dataset_tasks": float(len(tasks)),
        "dataset_mean_success": float(sum(t["success_rate"] for t in tasks.values())
                                      / max(len(tasks), 1)),
    })
    if "collect_seconds" in manifest:
        mlflow.log_metric("collect_seconds", float(manifest["collect_seconds"]))
