"""Checkpoints, in one place: the file, finding the newest readable one, loading, the config.

A checkpoint is a folder holding one file, ``checkpoint.pt``, with only tensors, numbers
and strings, so it loads with ``torch.load(weights_only=True)`` (nothing is unpickled):

    model       state dict of what was trained (for baselines: all their networks)
    ema         state dict of the weights planning / synthesis / evaluation use
    optimizer   the optimiser state(s)
    step        int, optimisation steps done
    meta        JSON text: config, model build arguments, task names, normaliser
                statistics, dataset path and hash, prompt-set location, method kind

Ray Train names the folders ``checkpoint_<timestamp>`` under a run folder; a run killed
while Ray copied a checkpoint can leave a damaged one behind, so every lookup here takes
the readable checkpoint with the highest step, never "the newest folder".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtdiff.data.io import atomic_write

if TYPE_CHECKING:
    from mtdiff.config import Config

CHECKPOINT_FILE = "checkpoint.pt"
_REQUIRED = ("model", "ema", "step", "meta")


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable; the message says where and what to do."""


def write_checkpoint(path: str | Path, *, model: dict[str, Any], ema: dict[str, Any],
                     optimizer: dict[str, Any], step: int, meta: dict[str, Any]) -> Path:
    """Write ``<path>/checkpoint.pt`` atomically from state dicts; returns the file."""
    import torch

    state = {"model": model, "ema": ema, "optimizer": optimizer, "step": int(step),
             "meta": json.dumps(meta)}
    out = Path(path) / CHECKPOINT_FILE
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    return out


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a folder holding ``checkpoint.pt``, or the file) without pickle."""
    import torch

    p = Path(path)
    f = p / CHECKPOINT_FILE if p.is_dir() else p
    if not f.exists():
        raise CheckpointError(f"no checkpoint at {path} (expected {f}); train one with "
                              "`python pipelines/train.py ... --out DIR` and pass DIR or the "
                              "checkpoint folder it prints")
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{f} cannot be read as a checkpoint ({type(e).__name__}: {e}); "
                              "it is damaged or not an mtdiff checkpoint") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f} is not an mtdiff checkpoint (no state dict)")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{f} lacks {missing}: not an mtdiff checkpoint")
    state["meta"] = json.loads(state["meta"])
    return state


def _candidates(p: Path) -> list[Path]:
    if (p / CHECKPOINT_FILE).exists():
        return [p]
    if p.is_file() and p.name == CHECKPOINT_FILE:
        return [p.parent]
    return [f.parent for f in sorted(p.glob(f"**/checkpoint_*/{CHECKPOINT_FILE}"))] \
        if p.is_dir() else []


def latest_checkpoint(path: str | Path, *, quiet: bool = False) -> tuple[Path, int] | None:
    """(folder, step) of the readable checkpoint with the highest step at or under `path`
    (a checkpoint folder, its file, or a run folder); None when there is none.

    Damaged or partial checkpoints are skipped (with a note unless `quiet`).
    """
    best: tuple[Path, int] | None = None
    for c in _candidates(Path(path).resolve()):
        try:
            step = int(load_checkpoint(c)["step"])
        except CheckpointError as e:
            if not quiet:
                print(f"[checkpoint] skipping unreadable checkpoint: {e}")
            continue
        if best is None or step > best[1]:
            best = (c, step)
    return best


def find_checkpoint(path: str | Path) -> Path:
    """The readable checkpoint with the highest step at or under `path`; raises when none."""
    found = latest_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no readable checkpoint under {path}; train with `python "
                              "pipelines/train.py --data DIR --out DIR` first (or check the path)")
    return found[0]


def checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The metadata stored with the best checkpoint at or under `path`."""
    return load_checkpoint(find_checkpoint(path))["meta"]


def checkpoint_config(path: str | Path) -> Config:
    """The config a checkpoint was trained with."""
    from mtdiff.config import from_dict

    return from_dict(checkpoint_meta(path)["config"])
