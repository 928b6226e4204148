"""mtdiff: MTDiff (diffusion planner + data synthesizer for multi-task offline RL) on Ray.

Nothing happens at import time: submodules are imported where they are used.
"""

__version__ = "0.1.0"


def load_planner(path, **kwargs):  # noqa: ANN001, ANN003, ANN201 - thin re-export
    """A ready-to-plan MTDiff-P `Planner` from a checkpoint (see `mtdiff.eval.planner`)."""
    # (pulls in torch: imported on use)
    from mtdiff.eval.planner import load_planner as _load

    return _load(path, **kwargs)


def load_synthesizer(path, **kwargs):  # noqa: ANN001, ANN003, ANN201 - thin re-export
    """A ready-to-sample MTDiff-S `Synthesizer` from a checkpoint (see `mtdiff.synth`)."""
    # (pulls in torch: imported on use)
    from mtdiff.synth.synthesizer import load_synthesizer as _load

    return _load(path, **kwargs)
