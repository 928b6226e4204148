"""The fault tests' shared pieces (tests/test_checkpoint_kills.py, tests/test_full_disk.py):
checkpoints of a known step, the one a rerun would take, and a smoke training command."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from mtdiff.artifacts import Checkpoint

REPO = Path(__file__).resolve().parents[1]


def _latest(run: Path) -> tuple[Path, int] | None:
    """(folder, step) of the newest readable checkpoint under `run` (what a rerun takes)."""
    c = Checkpoint.latest(run, quiet=True)
    return (c.path, c.step) if c else None


def _state(step: int, n: int = 4096) -> dict:
    """A checkpoint's fields (`write_checkpoint(**_state(step))`): tensors that say `step`."""
    w = torch.arange(n, dtype=torch.float32) + step
    return {"model": {"w": w}, "ema": {"w": -w}, "optimizer": {"state": {}},
            "step": step, "meta": {"step": step}}


def _train(data: Path, out: Path, steps: int) -> list[str]:
    """A smoke MTDiff-P training of `steps` (a checkpoint every 10), without MLflow."""
    return [sys.executable, str(REPO / "pipelines/train.py"), "--model", "mtdiff-p", "--data",
            str(data), "--out", str(out), "--preset", "smoke", "--no-mlflow", "--set",
            f"train.steps={steps}", "--set", "train.checkpoint_every=10", "--set",
            "data.history=2"]

