"""A sweep's resume state: one record per finished trial, in the graph's record format
(`mtdiff.experiment.jobs.write_record`), and its MLflow child run.

Layout of a sweep folder (``<storage>/<name>/``)::

    trials/<key>.json      a finished trial's record; its result: {"params", "sample",
                           "metrics", "status"}
    attempts/<attempt>/    Tune's experiment folder of one run of the driver (logs; its
                           pickles are never read back)

`key` hashes everything that decides a trial's result (the base config, the trial
function, its inputs with absolute paths, the swept values and the sample index), so
changing any of them runs the trial again instead of reusing a stale record. The stages a
trial runs keep records of the same kind beside their outputs
(`mtdiff.experiment.execute.run_once`). JSON only: reading a record cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtdiff.config import config_hash
from mtdiff.experiment.jobs import done_at
from mtdiff.experiment.jobs import write_record as write_job_record

TRIALS = "trials"
ATTEMPTS = "attempts"


def trial_key(identity: str, params: dict[str, Any], sample: int) -> str:
    """The hash naming one trial of the sweep `identity`."""
    return config_hash({"sweep": identity, "params": params, "sample": sample})


def write_record(folder: str | Path, key: str, params: dict[str, Any], sample: int,
                 metrics: dict[str, Any], status: str = "finished",
                 outputs: list[str] | None = None) -> Path:
    """Write a trial's record atomically; only numbers of `metrics` are kept. `outputs`:
    files that must still exist for the trial to count as done (a checkpoint it made)."""
    nums = {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    path = Path(folder) / f"{key}.json"
    write_job_record(path, key, {"params": params, "sample": sample, "metrics": nums,
                                 "status": status, "outputs": list(outputs or [])},
                     kind="trial")
    return path


def read_records(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every finished trial in `folder`, by key: {"key", "params", "sample", "metrics",
    "status"}. A damaged record, or one whose outputs are gone, counts as absent: its trial
    runs again."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        result = done_at(f, f.stem)
        if result is not None and "metrics" in result:
            out[f.stem] = {"key": f.stem, **result}
    return out
