"""The whole reproduction, stage by stage (DESIGN.md, data flow).

Stages so far: Maze2D collection, Meta-World collection. Each stage writes under the
run's output folder in a sub-folder named by its config hash and is skipped when that
output exists and is valid, so a re-run after a crash continues where it stopped. One
MLflow parent run per reproduction, a child run per stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtdiff.config import Config


def choose_preset() -> tuple[str, str]:
    """(preset, reason) when none is given: `paper` on a cluster with GPUs, else `local`."""
    from mtdiff.runtime import cluster_gpus, init_ray

    init_ray()
    gpus = cluster_gpus()
    if gpus > 0:
        return "paper", f"the Ray cluster has {gpus:g} GPU(s)"
    return "local", "the Ray cluster has no GPU (a laptop or CPU-only cluster)"


@dataclass
class StageResult:
    """What a stage produced and how long it took."""

    name: str
    output: str
    seconds: float
    skipped: bool
    metrics: dict[str, float] = field(default_factory=dict)


def _collect_stage(cfg: Config, suite: str, out: Path) -> StageResult:
    from mtdiff.collect import run as collect
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import MANIFEST

    root = out / "data" / f"{suite}-{cfg.collection_hash(suite)}"
    existed = (root / MANIFEST).exists()
    t0 = time.time()
    collect(cfg, suite=suite, out=root)
    man = read_manifest(root)
    metrics = {"transitions": float(sum(t["transitions"] for t in man["tasks"].values())),
               "tasks": float(len(man["tasks"]))}
    return StageResult(f"collect-{suite}", str(root), time.time() - t0, existed, metrics)


def run(cfg: Config, *, out: str | Path, track: bool = True) -> list[StageResult]:
    """Run every stage in order (skipping finished ones); returns what each did."""
    from mtdiff import tracking

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stages: list[tuple[str, Any]] = [
        ("collect-maze2d", lambda: _collect_stage(cfg, "maze2d", out)),
        ("collect-metaworld", lambda: _collect_stage(cfg, "metaworld", out)),
    ]
    results: list[StageResult] = []
    if not track:
        return [fn() for _, fn in stages]
    import mlflow

    from mtdiff.data.reader import read_manifest

    uri = tracking.setup(cfg)
    print(f"[repro] MLflow: {uri} (experiment {cfg.tracking.experiment!r})")
    with tracking.run(cfg, "full_repro", name=f"full_repro-{cfg.preset}", output=str(out)):
        for name, fn in stages:
            with tracking.run(cfg, name, nested=True):
                res = fn()
                mlflow.set_tags({"output": res.output, "skipped": str(res.skipped)})
                mlflow.log_metrics({**res.metrics, "stage_seconds": res.seconds})
                if name.startswith("collect-"):
                    tracking.log_dataset(read_manifest(res.output), res.output)
            results.append(res)
            print(f"[repro] {name}: {'skipped (done)' if res.skipped else 'done'} in "
                  f"{res.seconds:.1f}s -> {res.output}")
        mlflow.log_metrics({f"seconds_{r.name}": r.seconds for r in results})
    return results
