"""What the stages hand each other, typed: a trained model is a `Checkpoint`.

    ckpt = Checkpoint.find(run_or_checkpoint_folder)   # the newest readable one under it
    ckpt.step, ckpt.meta, ckpt.config, ckpt.method     # read from the file once
    ckpt.state["ema"]                                  # the tensors (on the CPU)

A checkpoint file is read once per process: `find` has to open every candidate to know its
step (a damaged copy is skipped, never "the newest folder"), and the state it read is what
`state` returns afterwards, for as long as the file is unchanged on disk. Consumers move
tensors to their device when they load them into a module (`load_state_dict` copies), so
everything is read on the CPU. The state is shared by everyone in the process who asks for
the same file: read it, never change it.

`mtdiff.train.checkpoints` holds the file format (written by training, read here); nothing
else in the package looks checkpoints up or loads them.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtdiff.config import Config, from_dict
from mtdiff.methods import Method, method_of_meta
from mtdiff.train import checkpoints as _files

CheckpointError = _files.CheckpointError

# Checkpoint states read in this process, by (file, inode, size, mtime): the last two a
# lookup read (what `find` then hands on). Few, since evaluation workers live long and each
# state holds the weights, the EMA and the optimiser.
_READ: OrderedDict[tuple[str, int, int, int], dict[str, Any]] = OrderedDict()
_KEEP = 2


def _read(folder: Path) -> dict[str, Any]:
    f = folder / _files.CHECKPOINT_FILE
    try:
        st = os.stat(f)
    except OSError:
        return _files.load_checkpoint(folder)  # raises the one-line "no checkpoint at ..."
    key = (str(f), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _READ:
        _READ[key] = _files.load_checkpoint(folder)
        while len(_READ) > _KEEP:
            _READ.popitem(last=False)
    _READ.move_to_end(key)
    return _READ[key]


@dataclass(frozen=True)
class Checkpoint:
    """One trained model on disk: a folder holding ``checkpoint.pt`` (see
    `mtdiff.train.checkpoints` for its fields)."""

    path: Path  # the checkpoint folder

    @classmethod
    def find(cls, where: str | Path) -> Checkpoint:
        """The readable checkpoint with the highest step at or under `where` (a checkpoint
        folder, its file, or a run folder); raises `CheckpointError` in one line when there
        is none."""
        found = cls.latest(where)
        if found is None:
            raise CheckpointError(f"no readable checkpoint under {where}; train with `python "
                                  "pipelines/train.py --data DIR --out DIR` first (or check "
                                  "the path)")
        return found

    @classmethod
    def latest(cls, where: str | Path, *, quiet: bool = False) -> Checkpoint | None:
        """Like `find`, but None when there is no readable checkpoint (damaged ones are
        skipped with a note unless `quiet`)."""
        best: tuple[Checkpoint, int] | None = None
        for folder in _files.candidates(Path(where).resolve()):
            try:
                step = int(_read(folder)["step"])
            except CheckpointError as e:
                if not quiet:
                    print(f"[checkpoint] skipping unreadable checkpoint: {e}")
                continue
            if best is None or step > best[1]:
                best = (cls(folder), step)
        return best[0] if best else None

    @classmethod
    def at(cls, folder: str | Path) -> Checkpoint:
        """Exactly the checkpoint in `folder` (or that file), read now: raises
        `CheckpointError` when it is missing or damaged."""
        p = Path(folder).resolve()
        ckpt = cls(p.parent if p.name == _files.CHECKPOINT_FILE else p)
        _read(ckpt.path)
        return ckpt

    @staticmethod
    def read(folder: str | Path) -> dict[str, Any]:
        """The state in exactly `folder`, read now and not kept (a training's resume state,
        which the learner copies and drops); raises `CheckpointError` like `at`."""
        return _files.load_checkpoint(folder)

    @property
    def file(self) -> Path:
        return self.path / _files.CHECKPOINT_FILE

    @property
    def state(self) -> dict[str, Any]:
        """model / ema / optimizer / step / meta (meta parsed), on the CPU; read-only."""
        return _read(self.path)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def meta(self) -> dict[str, Any]:
        return self.state["meta"]

    @property
    def config(self) -> Config:
        """The config it was trained with."""
        return from_dict(self.meta["config"])

    @property
    def method(self) -> Method:
        """The method that trained it (`mtdiff.methods`)."""
        return method_of_meta(self.meta)

    def __str__(self) -> str:
        return str(self.path)
