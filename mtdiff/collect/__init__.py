"""Collection: environments -> Parquet datasets, fanned out over Ray (one task per env task).

`run(cfg, inputs, out)` is the stage (`inputs.suite`: which suite; the work itself is
`mtdiff.collect.pipeline`).
"""

from __future__ import annotations

import os
from pathlib import Path

from mtdiff import tracking
from mtdiff.artifacts import Dataset, Inputs
from mtdiff.collect.mujoco import log_sac_curves
from mtdiff.collect.pipeline import run as collect_suite
from mtdiff.collect.sac_run import log_sac_runs
from mtdiff.config import Config

# Set (to anything) to keep the collection's progress bar off (a graph's jobs, whose logs
# are files; the command's --no-progress).
NO_PROGRESS_ENV = "MTDIFF_NO_PROGRESS"


def run(cfg: Config, inputs: Inputs, out: Path) -> Dataset:
    """Collect `inputs.suite` under `cfg` into `out`, resumably. Inside an MLflow run the
    dataset is logged as its input, and each SAC-trained task's learning curve as a child
    run. A progress bar unless $MTDIFF_NO_PROGRESS is set."""
    suite = inputs.need("suite")
    progress = not os.environ.get(NO_PROGRESS_ENV)
    root = collect_suite(cfg, suite=suite, out=out, progress=progress)
    data = Dataset.at(root)
    if tracking.active() is not None:
        tracking.log_dataset(data.manifest, root, context="collected")
        if suite == "metaworld" and cfg.metaworld.source == "sac":
            log_sac_runs(cfg, root)
        elif suite in ("cheetah-vel", "ant-dir"):
            log_sac_curves(cfg, root, suite)
    return data
