"""Command-line plumbing shared by the thin scripts in `pipelines/` and `sweeps/`.

Exit codes, the same for every entry point (README, "Exit codes"): 0 done; 2 a user
error found before any work starts (arguments, configuration, input data, an output
folder that cannot be written, an unreachable tracking server), with one line on stderr
naming the problem and the fix; 1 a run that failed while working (a stage or trial
raised; rerunning the same command resumes), and `dataset.py validate` finding problems.
A disk that fills while working is exit 1 with one line too (`disk_full_message`): the
file or output folder, its filesystem's free space, and to free space or choose another
--out; every file is written atomically, so the same command then resumes.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import NoReturn

from mtdiff.config import PRESETS, Config, ConfigError, TrackingConfig, apply_overrides, get_preset
from mtdiff.config.docs import fields_help, print_config
from mtdiff.errors import DISK_FULL_ERRNOS
from mtdiff.tracking.server import TrackingError, check_reachable

USER_ERROR = 2  # the exit code of every user error (argparse's own too)
RUN_FAILED = 1


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with `USER_ERROR`."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USER_ERROR)


# ----------------------------------------------------------------------------- a full disk

# Out-of-space errors that reach the driver as text only (a remote error's message, SQLite).
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "[Errno 28]",
                   "database or disk is full")
# The output folders this process proved writable (`writable_dir`): the disk to name when
# an out-of-space error does not say which file it was writing.
_OUTPUTS: dict[Path, str] = {}


def disk_full_error(exc: BaseException) -> OSError | None:
    """The out-of-space error (ENOSPC, EDQUOT) behind `exc`, or None when `exc` is not one.

    Looked for through chained exceptions (``__cause__`` / ``__context__``), Ray task errors
    (``.cause``: an error raised inside a Ray worker), Ray Train's worker-group and
    controller errors (``.worker_failures``, ``.controller_failure``) and exception groups;
    then, for errors that crossed a process boundary as text, in the messages."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    texts: list[str] = []
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        texts.append(str(e))
        nested: list[object] = [e.__cause__, e.__context__, getattr(e, "cause", None),
                                getattr(e, "controller_failure", None)]
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            nested += list(failures.values())
        nested += list(getattr(e, "exceptions", None) or ())
        todo += [n for n in nested if isinstance(n, BaseException)]
    for text in texts:
        if any(t in text for t in _DISK_FULL_TEXT):
            quota = "Disk quota exceeded" in text
            code = errno.EDQUOT if quota else errno.ENOSPC
            return OSError(code, os.strerror(code))
    return None


def _mount_point(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    while not os.path.ismount(p) and p != p.parent:
        p = p.parent
    return p


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full_message(error: OSError) -> str:
    """One line for an out-of-space error: the file (or the output folder on the fullest
    disk, when the error does not name a file), that disk's mount point and free space, and
    what to do."""
    flag: str | None = "--out"
    if error.filename:
        where = Path(os.fsdecode(error.filename)).resolve()
        flag = None  # a disk other than the outputs' (the temporary directory, say)
        for out, f in _OUTPUTS.items():
            if where == out or out in where.parents:
                flag = f
        what = f"writing {where}"
    elif _OUTPUTS:
        def free(p: Path) -> int:
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return 1 << 62
        where = min(_OUTPUTS, key=free)
        flag = _OUTPUTS[where]
        what = f"writing under {where}"
    else:
        where, what = Path.cwd(), "(the file was not named)"
    mount = _mount_point(where)
    try:
        usage = shutil.disk_usage(mount)
        room = f"{_size(usage.free)} free of {_size(usage.total)}"
    except OSError:
        room = "size unknown"
    kind = "disk quota exceeded" if error.errno == errno.EDQUOT else "disk full"
    fix = f"free space there or choose another {flag}" if flag else "free space there"
    return (f"{kind}: {os.strerror(error.errno or errno.ENOSPC)} {what} (filesystem "
            f"{mount}: {room}); {fix}, then rerun the same command to resume")


def add_config_args(parser: argparse.ArgumentParser, *, default_preset: str | None = "local",
                    sections: tuple[str, ...] | None = None) -> None:
    """`--preset NAME`, any number of `--set section.field=value` overrides and
    `--print-config`; the help lists the fields of `sections` (all when None) with their
    comments and defaults."""
    parser.add_argument("--preset", choices=PRESETS, default=default_preset,
                        help=f"configuration preset (default: {default_preset})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override any config field, e.g. --set train.lr=1e-4 (repeatable); "
                        "the fields are listed below")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (preset and --set applied) and exit")
    add_fields_help(parser, sections, preset=default_preset or "local")


def add_fields_help(parser: argparse.ArgumentParser, sections: tuple[str, ...] | None,
                    *, preset: str = "local") -> None:
    """Append the config fields of `sections` (comments, `preset`'s defaults) to the help."""
    if parser.formatter_class is argparse.HelpFormatter:  # keep the epilog's lines
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    text = fields_help(get_preset(preset), sections)
    parser.epilog = f"{parser.epilog}\n\n{text}" if parser.epilog else text


def config_from_args(args: argparse.Namespace, preset: str | None = None,
                     extra: list[str] | None = None, *, final: bool = True) -> Config:
    """The preset with the overrides (then `extra`) applied; a bad value exits with the
    config's message (exit 2). With --print-config, a `final` config is printed and the
    command exits 0."""
    try:
        cfg = apply_overrides(get_preset(preset or args.preset),
                              [*args.overrides, *(extra or [])])
    except ConfigError as e:
        fail(f"bad configuration: {e}")
    if final and getattr(args, "print_config", False):
        print(print_config(cfg))
        raise SystemExit(0)
    return cfg


def tracked(cfg: Config, enabled: bool) -> Config:
    """`cfg` with its stage logging to MLflow on or off (`tracking.enabled`: a command's
    --no-mlflow)."""
    return replace(cfg, tracking=replace(cfg.tracking, enabled=enabled))


def writable_dir(path: str | Path, flag: str = "--out") -> Path:
    """`path` made absolute, created if missing, and proven writable (a file is written
    and removed in it); exits with one line (exit 2) when it cannot be."""
    p = Path(path).expanduser().resolve()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".mtdiff-write-check-"):
            pass
    except OSError as e:
        fail(f"{flag} {path}: cannot write there ({e.strerror or e}); choose a folder you "
             "can write to")
    _OUTPUTS[p] = flag
    return p


def check_ray_address(timeout_s: float = 5.0) -> None:
    """Exit with one line (exit 2) when $RAY_ADDRESS names a host:port where nothing
    answers: Ray's own connect retries for minutes and prints native warnings meanwhile.
    `local`, `auto`, `ray://` and an unset address are left to Ray."""
    address = os.environ.get("RAY_ADDRESS", "")
    if address in ("", "local", "auto") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except ValueError:
        fail(f"RAY_ADDRESS={address}: not host:port; give the cluster's GCS address "
             "(e.g. 127.0.0.1:6379), or unset it to run on a local Ray instance")
    except OSError as e:
        fail(f"RAY_ADDRESS={address}: no Ray cluster answers there ({e.strerror or e}); "
             "start one (`ray start --head`) or unset RAY_ADDRESS to run on a local Ray "
             "instance")


def check_tracking(tracking: TrackingConfig, timeout_s: float = 5.0) -> None:
    """Exit with one line (exit 2) when the configured MLflow store cannot be used; call it
    before any Ray work (MLflow otherwise retries an unreachable server for minutes).

    Commands whose config comes from a checkpoint check ``TrackingConfig()`` ($MLFLOW_
    TRACKING_URI or the default store) before loading it (torch takes seconds to import),
    then the checkpoint's own section."""
    try:
        check_reachable(tracking.resolved_uri(), timeout_s)
    except TrackingError as e:
        fail(str(e))
