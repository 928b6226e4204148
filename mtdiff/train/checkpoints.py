"""The checkpoint file: writing it, and repairing what a kill left in a run folder (reading
it and finding the newest readable one is `mtdiff.artifacts.Checkpoint`; the file names are
`mtdiff.layout`'s).

A checkpoint is a folder holding one file, ``checkpoint.pt``, with only tensors, numbers
and strings, so it loads with ``torch.load(weights_only=True)`` (nothing is unpickled):

    model       state dict of what was trained (for baselines: all their networks)
    ema         state dict of the weights planning / synthesis / evaluation use
    optimizer   the optimiser state(s)
    step        int, optimisation steps done
    meta        JSON text: config, model build arguments, task names, normaliser
                statistics, dataset path and hash, prompt-set location, method kind

Ray Train names the folders ``checkpoint_<timestamp>`` under a run folder; a run killed
while Ray copied a checkpoint can leave a damaged one behind, so every lookup takes
the readable checkpoint with the highest step, never "the newest folder". Ray also keeps
its own list of a run's checkpoints, ``checkpoint_manager_snapshot.json``, rewritten in
place (not atomically) after every checkpoint: `repair_run_state` sets a damaged one aside
before a rerun (Ray refuses to start from it), and `remove_partial_checkpoints` deletes
the cut-short copies a kill or a full disk left (Ray does not know them, so they stayed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from mtdiff.data.io import atomic_write
from mtdiff.layout import CHECKPOINT_FILE, RAY_SNAPSHOT


def write_checkpoint(path: str | Path, *, model: dict[str, Any], ema: dict[str, Any],
                     optimizer: dict[str, Any], step: int, meta: dict[str, Any]) -> Path:
    """Write ``<path>/checkpoint.pt`` atomically from state dicts; returns the file. The
    temporary file of an earlier write into `path` that was killed is removed first."""
    import torch

    state = {"model": model, "ema": ema, "optimizer": optimizer, "step": int(step),
             "meta": json.dumps(meta)}
    out = Path(path) / CHECKPOINT_FILE

    def _save(tmp: str) -> None:
        # Through a Python file: torch's own file writer turns a full disk into a bare
        # "RuntimeError: unexpected pos ..."; this way the OSError(ENOSPC) is raised or
        # chained, and `atomic_write` raises it naming the file.
        with open(tmp, "wb") as f:
            torch.save(state, f)

    for stale in out.parent.glob(f".{CHECKPOINT_FILE}.*.tmp"):  # a killed earlier write's
        stale.unlink(missing_ok=True)
    atomic_write(out, _save)
    return out


def repair_run_state(run_dir: str | Path) -> str | None:
    """Set Ray Train's checkpoint list of `run_dir` aside when Ray could not start from it;
    returns why (None when it is fine or absent).

    Ray rewrites ``checkpoint_manager_snapshot.json`` in place after every checkpoint: a
    kill or a full disk during that write leaves it empty or cut short, and Ray then
    refuses every later fit of the run ("CheckpointManagerInitializationError: Expecting
    value"), as it does when the list names a checkpoint folder that is gone. Renamed to
    ``<name>.damaged``, Ray starts afresh and the workers resume from the newest readable
    checkpoint on disk (`Checkpoint.latest`, passed as ``resume_from``).
    """
    f = Path(run_dir) / RAY_SNAPSHOT
    if not f.exists():
        return None
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
        names = [r["checkpoint_dir_name"] for r in state["checkpoint_results"]]
        latest = state.get("latest_checkpoint_result")
        if latest:
            names.append(latest["checkpoint_dir_name"])
        missing = [n for n in names if not (f.parent / n).is_dir()]
        problem = f"it names checkpoint folders that are gone: {missing}" if missing else None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        problem = f"it cannot be read ({type(e).__name__}: {e})"
    if problem is None:
        return None
    os.replace(f, f.with_name(f.name + ".damaged"))
    print(f"[checkpoint] set Ray's checkpoint list {f} aside: {problem}; resuming from the "
          "newest readable checkpoint", flush=True)
    return problem


def cut_short(f: str | Path) -> bool:
    """Whether checkpoint file `f` is a write or copy that stopped part way: empty, or
    without the end record every complete ``torch.save`` zip file ends with. Only the tail
    is read. A complete file with damage inside is not "cut short" (nor is a file that
    cannot be read at all: an I/O error says nothing about the file)."""
    f = Path(f)
    size = f.stat().st_size
    with open(f, "rb") as fh:  # the end record: 22 bytes + a comment of up to 64 KiB
        fh.seek(max(0, size - 65_557))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return True
    return at + 22 + int.from_bytes(tail[at + 20: at + 22], "little") != len(tail)


def remove_partial_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete the ``checkpoint_*`` folders of `run_dir` that hold a cut-short copy of a
    checkpoint, or none at all: what Ray Train leaves when it is killed, or the disk fills,
    while it copies a checkpoint into storage. Ray does not list them, so it never deletes
    them, and each held up to a checkpoint's space for good. Returns them. Call only while
    nothing writes `run_dir` (no fit of this run is running)."""
    removed = []
    for d in sorted(Path(run_dir).glob("checkpoint_*")):
        if not d.is_dir():
            continue
        f = d / CHECKPOINT_FILE
        try:
            partial = not f.exists() or cut_short(f)
        except OSError:
            continue
        if partial:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    if removed:
        print(f"[checkpoint] removed {len(removed)} partly written checkpoint(s): "
              f"{[d.name for d in removed]}", flush=True)
    return removed


def tidy_run(run_dir: str | Path) -> None:
    """Before a fit of `run_dir` and after a failed one: the cut-short copies go first, then
    Ray's checkpoint list is set aside if damaged or naming one of them (in that order: the
    removal can leave the list naming a folder that is gone). Call only while nothing writes
    `run_dir`."""
    remove_partial_checkpoints(run_dir)
    repair_run_state(run_dir)
