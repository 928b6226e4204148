"""Training stage: MTDiff-P / -P-onehot / -S on Ray Train (see `mtdiff.train.ray_train`).

`run(cfg, data=..., out=...)` trains (or resumes, or skips when finished) and returns the
checkpoint folder.
"""

from __future__ import annotations

from typing import Any


def run(*args: Any, **kwargs: Any) -> Any:
    """Train a model; see `mtdiff.train.stage.run`."""
    from mtdiff.train.stage import run as _run

    return _run(*args, **kwargs)
