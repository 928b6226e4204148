"""A sweep's own resume state: one JSON record per finished trial, and its MLflow child run.

Layout of a sweep folder (``<storage>/<name>/``)::

    trials/<key>.json      a finished trial: {"key", "params", "sample", "metrics", "status"}
    attempts/<attempt>/    Tune's experiment folder of one run of the driver (logs; its
                           pickles are never read back)

`key` hashes everything that decides a trial's result (the base config, the trial
function, its inputs with absolute paths, the swept values and the sample index), so
changing any of them runs the trial again instead of reusing a stale record. JSON only:
reading a record cannot run code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtdiff.config import config_hash
from mtdiff.data.io import atomic_write_json

TRIALS = "trials"
ATTEMPTS = "attempts"


def trial_key(identity: str, params: dict[str, Any], sample: int) -> str:
    """The hash naming one trial of the sweep `identity`."""
    return config_hash({"sweep": identity, "params": params, "sample": sample})


def write_record(folder: str | Path, key: str, params: dict[str, Any], sample: int,
                 metrics: dict[str, Any], status: str = "finished") -> Path:
    """Write a trial's record atomically; only numbers of `metrics` are kept."""
    nums = {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}
    return atomic_write_json(Path(folder) / f"{key}.json", {
        "key": key, "params": params, "sample": sample, "metrics": nums, "status": status})


def read_records(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every readable record in `folder`, by key (a damaged one counts as absent: its
    trial runs again)."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("key") == f.stem and "metrics" in rec:
            out[f.stem] = rec
    return out
