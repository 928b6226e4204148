"""Atomic writes: a file is either absent or complete, never half-written.

Everything is written to a temporary file in the same directory, flushed and fsynced,
then moved into place with `os.replace` (atomic on POSIX within one filesystem). A write
that fails (a full disk included) removes its temporary file; an out-of-space error is
raised naming the file it was writing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mtdiff.errors import DISK_FULL_ERRNOS

_UMASK: list[int] = []


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under this process's umask
    (0644 under the usual 022). `tempfile.mkstemp` creates 0600 files; written files get
    this mode instead, so a group-shared output folder (`/shared` on a cluster) stays
    readable by the group."""
    if not _UMASK:
        mask = os.umask(0)  # reading the umask means setting it: put it straight back
        os.umask(mask)
        _UMASK.append(mask)
    return 0o666 & ~_UMASK[0]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto `path` (with the mode
    the user's umask gives new files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = _out_of_space(e)
        if full is not None:
            # Writers do not say which file filled the disk (pyarrow, file.write), or hide
            # it behind their own error (torch.save's "unexpected pos"): say it.
            raise OSError(full.errno, os.strerror(full.errno), str(path)) from e
        raise
    return path


def _out_of_space(e: BaseException) -> OSError | None:
    """The ENOSPC / EDQUOT error that `e` is or was raised from (or while handling)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically."""

    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, _w)


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented, keys sorted) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_parquet(path: str | Path, table: pa.Table) -> Path:
    """Write a Parquet file atomically (zstd-compressed)."""
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def remove_stale_temps(directory: str | Path) -> int:
    """Delete temporary files a killed writer left behind; returns how many."""
    n = 0
    d = Path(directory)
    if d.exists():
        for p in d.rglob(".*.tmp"):
            p.unlink(missing_ok=True)
            n += 1
    return n
