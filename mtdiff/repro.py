"""Which preset a reproduction runs when none is given.

The reproduction itself is a graph of jobs (`mtdiff.experiment`); `pipelines/full_repro.py`
runs it.
"""

from __future__ import annotations

import os

from mtdiff.runtime import cluster_gpus, init_ray


def choose_preset(*, start_ray: bool = True) -> tuple[str, str]:
    """(preset, reason) when none is given: `paper` on a Ray cluster with GPUs, else
    `local`. Without `start_ray` (e.g. --plan) a local machine is described without
    starting Ray (it has no GPU Ray would use here)."""
    if not start_ray and os.environ.get("RAY_ADDRESS") in (None, "", "local"):
        return "local", "no Ray cluster is given (RAY_ADDRESS): a laptop or CPU machine"
    init_ray()
    gpus = cluster_gpus()
    if gpus > 0:
        return "paper", f"the Ray cluster has {gpus:g} GPU(s)"
    return "local", "the Ray cluster has no GPU (a laptop or CPU-only cluster)"
