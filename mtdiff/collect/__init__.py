"""Collection: environments -> Parquet datasets, fanned out over Ray (one task per env task).

`run(cfg, suite=..., out=...)` is the stage's entry point (see `mtdiff.collect.pipeline`).
"""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """Collect a dataset; see `mtdiff.collect.pipeline.run`."""
    from mtdiff.collect.pipeline import run as _run

    return _run(*args, **kwargs)
