"""Collection: environments -> Parquet datasets, fanned out over Ray (one task per env task).

`run(cfg, suite=..., out=...)` is the stage's entry point (see `mtdiff.collect.pipeline`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mtdiff.config import Config


def run(cfg: Config, *, suite: str, out: str | Path, progress: bool = True) -> Path:
    """Collect `suite` under `cfg` into `out`, resumably (`mtdiff.collect.pipeline.run`)."""
    from mtdiff.collect.pipeline import run as _run

    return _run(cfg, suite=suite, out=out, progress=progress)
