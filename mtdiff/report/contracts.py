"""What the synthesis + offline-RL stages write for the report: four small JSON files.

All three live under the reproduction's output folder (`<out>`, the folder given to
`pipelines/full_repro.py --out`) and are lists of flat records, one per measurement.
Writers validate every record and write atomically, so a file is either absent or whole.

``<out>/offline/table2.json`` — Table 2, TD3-BC on original vs augmented data::

    [{"task": "coffee-push-v3",   # Meta-World v3 task name
      "seen": true,               # among the tasks MTDiff-S was trained on
      "method": "mtdiff-s",       # "original" | "rad" | "s4rl" | "mtdiff-s"
      "seed": 0,                  # TD3-BC seed (the paper: 3 seeds)
      "success": 0.31}, ...]      # success rate in [0, 1] at the end of training

``<out>/offline/quality.json`` — Table 4, quality of the augmented data (App. E.2)::

    [{"task": "coffee-push-v3",
      "method": "mtdiff-s",       # "original" | "rad" | "s4rl" | "mtdiff-s"
      "dynamics_error": 0.017,    # mean (s'_data - s'_sim)^2 (`synth.quality.dynamics_error`)
      "l2_distance": 0.45}, ...]  # mean min-L2 to the original data (`l2_distance_from_dataset`)

``<out>/offline/task_count.json`` — Fig. 7, MTDiff-S trained on N tasks -> TD3-BC::

    [{"num_tasks": 10,            # tasks MTDiff-S was trained on
      "seed": 0,
      "success": 0.22,            # TD3-BC success rate in [0, 1] on the augmented data
      "task": "coffee-push-v3"}, ...]

``<out>/offline/single_task.json`` — Fig. 6, multi-task vs single-task MTDiff-S -> TD3-BC::

    [{"task": "coffee-push-v3",
      "method": "mtdiff-s-single", # "original" | "mtdiff-s" | "mtdiff-s-single"
      "seed": 0,
      "success": 0.25}, ...]       # TD3-BC success rate in [0, 1]

Every record may carry more keys (e.g. ``"preset"``, ``"episodes"``, ``"return_mean"``);
they are kept and ignored, except ``"preset"``, which the report shows when present.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from mtdiff.data.io import atomic_write_json

TABLE2_FILE: Final = "offline/table2.json"
QUALITY_FILE: Final = "offline/quality.json"
TASK_COUNT_FILE: Final = "offline/task_count.json"
SINGLE_TASK_FILE: Final = "offline/single_task.json"

METHODS: Final = ("original", "s4rl", "rad", "mtdiff-s")  # Table 2's column order
SINGLE_METHODS: Final = ("original", "mtdiff-s-single", "mtdiff-s")  # Fig. 6's bars


class ContractError(ValueError):
    """A record that does not follow its contract (the message names the file and key)."""


# contract -> (file, {required key: expected type}, keys identifying a record)
_SPECS: Final[dict[str, tuple[str, dict[str, type | tuple[type, ...]], tuple[str, ...]]]] = {
    "table2": (TABLE2_FILE, {"task": str, "seen": bool, "method": str, "seed": int,
                             "success": (int, float)}, ("task", "method", "seed")),
    "quality": (QUALITY_FILE, {"task": str, "method": str, "dynamics_error": (int, float),
                               "l2_distance": (int, float)}, ("task", "method")),
    "task_count": (TASK_COUNT_FILE, {"num_tasks": int, "seed": int, "success": (int, float),
                                     "task": str}, ("task", "num_tasks", "seed")),
    "single_task": (SINGLE_TASK_FILE, {"task": str, "method": str, "seed": int,
                                       "success": (int, float)}, ("task", "method", "seed")),
}
# contract -> the values its "method" key may take
_METHODS: Final[dict[str, tuple[str, ...]]] = {"table2": METHODS, "quality": METHODS,
                                               "single_task": SINGLE_METHODS}


def _check(kind: str, rows: Iterable[Mapping[str, Any]], where: str) -> list[dict[str, Any]]:
    """Validate records against contract `kind`; returns them as plain dicts."""
    _, keys, _ = _SPECS[kind]
    if isinstance(rows, Mapping) or isinstance(rows, str):
        raise ContractError(f"{where}: expected a list of records, got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ContractError(f"{where}[{i}]: a record must be an object, got {row!r}")
        for key, typ in keys.items():
            if key not in row:
                raise ContractError(f"{where}[{i}]: missing key {key!r} (required: "
                                    f"{sorted(keys)}); got {dict(row)}")
            val = row[key]
            # bool is an int in Python: reject it where a number is meant, and vice versa
            if not isinstance(val, typ) or (typ is not bool and isinstance(val, bool)):
                raise ContractError(f"{where}[{i}]: {key!r} must be {_tname(typ)}, got {val!r}")
            if isinstance(val, float) and not math.isfinite(val):
                raise ContractError(f"{where}[{i}]: {key!r} is {val!r}; numbers must be finite")
        methods = _METHODS.get(kind, ())
        if "method" in keys and row["method"] not in methods:
            raise ContractError(f"{where}[{i}]: method {row['method']!r} is not one of {methods}")
        if "success" in keys and not 0.0 <= row["success"] <= 1.0:
            raise ContractError(f"{where}[{i}]: success {row['success']!r} must be a rate in "
                                "[0, 1] (the report converts to %)")
        if "num_tasks" in keys and row["num_tasks"] < 1:
            raise ContractError(f"{where}[{i}]: num_tasks must be >= 1, got {row['num_tasks']}")
        out.append(dict(row))
    return out


def _tname(typ: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(typ, tuple) else f"a {typ.__name__}"


def _write(kind: str, out_dir: str | Path, rows: Iterable[Mapping[str, Any]],
           merge: bool) -> Path:
    rel, _, ident = _SPECS[kind]
    path = Path(out_dir) / rel
    new = _check(kind, rows, str(path))
    if merge and path.exists():
        # Keep earlier records except those the new ones replace (same identifying keys).
        replaced = {tuple(r[k] for k in ident) for r in new}
        new = [r for r in read_records(kind, out_dir)
               if tuple(r[k] for k in ident) not in replaced] + new
    return atomic_write_json(path, new)


def write_table2(out_dir: str | Path, rows: Iterable[Mapping[str, Any]], *,
                 merge: bool = False) -> Path:
    """Write `<out_dir>/offline/table2.json` (module docstring); returns its path.

    With `merge`, records already in the file are kept unless a new record has the same
    (task, method, seed); without it the file is replaced.
    """
    return _write("table2", out_dir, rows, merge)


def write_quality(out_dir: str | Path, rows: Iterable[Mapping[str, Any]], *,
                  merge: bool = False) -> Path:
    """Write `<out_dir>/offline/quality.json`; `merge` replaces by (task, method)."""
    return _write("quality", out_dir, rows, merge)


def write_task_count(out_dir: str | Path, rows: Iterable[Mapping[str, Any]], *,
                     merge: bool = False) -> Path:
    """Write `<out_dir>/offline/task_count.json`; `merge` replaces by (task, num_tasks, seed)."""
    return _write("task_count", out_dir, rows, merge)


def write_single_task(out_dir: str | Path, rows: Iterable[Mapping[str, Any]], *,
                      merge: bool = False) -> Path:
    """Write `<out_dir>/offline/single_task.json`; `merge` replaces by (task, method, seed)."""
    return _write("single_task", out_dir, rows, merge)


def contract_path(kind: str, out_dir: str | Path) -> Path:
    """Where contract `kind` ("table2", "quality", "task_count", "single_task") lives."""
    if kind not in _SPECS:
        raise ValueError(f"unknown contract {kind!r}; one of {sorted(_SPECS)}")
    return Path(out_dir) / _SPECS[kind][0]


def read_records(kind: str, out_dir: str | Path) -> list[dict[str, Any]]:
    """Read and validate contract `kind` under `out_dir`.

    Raises FileNotFoundError when absent and ContractError when malformed.
    """
    path = contract_path(kind, out_dir)
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ContractError(f"{path} is not valid JSON: {e}") from None
    return _check(kind, rows, str(path))
