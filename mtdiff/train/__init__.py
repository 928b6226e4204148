"""Training stage: MTDiff-P / -P-onehot / -S and every method of `mtdiff.methods` on Ray
Train (see `mtdiff.train.ray_train`).

`run(cfg, data=..., out=...)` trains (or resumes, or skips when finished) and returns the
checkpoint folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mtdiff.config import Config


def run(cfg: Config, *, data: str | Path, out: str | Path, track: bool = True,
        cpus_per_worker: int | None = None) -> Path:
    """Train `cfg.model.kind` on the dataset at `data` (see `mtdiff.train.stage.run`)."""
    from mtdiff.train.stage import run as _run

    return _run(cfg, data=data, out=out, track=track, cpus_per_worker=cpus_per_worker)
