"""Command-line plumbing shared by the thin scripts in `pipelines/` and `sweeps/`.

Exit codes, the same for every entry point (README, "Exit codes"): 0 done; 2 a user
error found before any work starts (arguments, configuration, input data, an output
folder that cannot be written, an unreachable tracking server), with one line on stderr
naming the problem and the fix; 1 a run that failed while working (a stage or trial
raised; rerunning the same command resumes), and `dataset.py validate` finding problems.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from mtdiff.config import PRESETS, Config, ConfigError, TrackingConfig, apply_overrides, get_preset

USER_ERROR = 2  # the exit code of every user error (argparse's own too)
RUN_FAILED = 1


def fail(message: str) -> NoReturn:
    """Print ``error: <message>`` (one line) on stderr and exit with `USER_ERROR`."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USER_ERROR)


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
    from mtdiff.config.docs import fields_help

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
        from mtdiff.config.docs import print_config

        print(print_config(cfg))
        raise SystemExit(0)
    return cfg


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
    return p


def check_tracking(tracking: TrackingConfig, timeout_s: float = 5.0) -> None:
    """Exit with one line (exit 2) when the configured MLflow store cannot be used; call it
    before any Ray work (MLflow otherwise retries an unreachable server for minutes).

    Commands whose config comes from a checkpoint check ``TrackingConfig()`` ($MLFLOW_
    TRACKING_URI or the default store) before loading it (torch takes seconds to import),
    then the checkpoint's own section."""
    from mtdiff.tracking.server import TrackingError, check_reachable

    try:
        check_reachable(tracking.resolved_uri(), timeout_s)
    except TrackingError as e:
        fail(str(e))
