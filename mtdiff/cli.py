"""Command-line plumbing shared by the thin scripts in `pipelines/` and `sweeps/`."""

from __future__ import annotations

import argparse
import sys

from mtdiff.config import PRESETS, Config, ConfigError, apply_overrides, get_preset


def add_config_args(parser: argparse.ArgumentParser, *, default_preset: str | None = "local",
                    ) -> None:
    """`--preset NAME` and any number of `--set section.field=value` overrides."""
    parser.add_argument("--preset", choices=PRESETS, default=default_preset,
                        help=f"configuration preset (default: {default_preset})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="override any config field, e.g. --set train.lr=1e-4 (repeatable)")


def config_from_args(args: argparse.Namespace, preset: str | None = None) -> Config:
    """The preset with the overrides applied; a bad value exits with the config's message."""
    try:
        return apply_overrides(get_preset(preset or args.preset), args.overrides)
    except ConfigError as e:
        sys.exit(f"error: bad configuration: {e}")
