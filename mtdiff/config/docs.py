"""The config's fields with their comments and defaults, read from the dataclasses' source:
what `mtdiff <command> --help` lists and `--print-config` prints.

A field's documentation is the block of `#` comment lines right above it plus a comment at
the end of its line: the comments in `mtdiff.config` (and in the methods' own sections,
`Config.methods`) are written for a reader of the field, so they are shown as they are.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import textwrap
from functools import cache
from typing import Any

from mtdiff.config.base import to_dict

_FIELD = re.compile(r"^\s{4}(\w+)\s*:\s*[^=#]+?(?:=.*?)?(?:#\s?(.*))?$")


@cache
def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment text} for a config section class (empty text when none); a
    field a base class declares has the comment there, unless the class declares it again."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" in vars(klass):
            out.update(_own_comments(klass))
    return out


def _own_comments(cls: type) -> dict[str, str]:
    """{field: its comment text} for the fields `cls`'s own source declares."""
    lines = inspect.getsource(cls).splitlines()
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    block: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        m = _FIELD.match(line)
        if m and m.group(1) in names and m.group(1) not in out:
            tail = (m.group(2) or "").strip()
            out[m.group(1)] = " ".join([*block, tail]).strip()
        block = []
    return out


def _sections(cfg: Any) -> list[tuple[str, Any]]:
    """(dotted name, section) of every section, a method's own as ``methods.NAME``."""
    out = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.append((f.name, value))
        elif isinstance(value, dict):
            out += [(f"{f.name}.{k}", v) for k, v in value.items() if dataclasses.is_dataclass(v)]
    return out


def fields_help(cfg: Any, sections: tuple[str, ...] | None = None, width: int = 100) -> str:
    """Text listing `section.field = default` and its comment for `sections` of `cfg`
    (all when None; "methods" names every method's own), for an argparse epilog."""
    parts = ["config fields (--set SECTION.FIELD=VALUE; defaults of the preset shown):"]
    for name, section in _sections(cfg):
        if sections is not None and name not in sections and \
                name.partition(".")[0] not in sections:
            continue
        doc = (type(section).__doc__ or "").strip().splitlines()
        parts.append(f"\n[{name}]" + (f"  {doc[0]}" if doc else ""))
        comments = field_comments(type(section))
        for f in dataclasses.fields(section):
            value = json.dumps(to_dict(getattr(section, f.name)), default=str)
            parts.append(f"  {name}.{f.name} = {value}")
            text = comments.get(f.name, "")
            if text:
                parts.append(textwrap.fill(text, width=width, initial_indent=" " * 6,
                                           subsequent_indent=" " * 6))
    return "\n".join(parts)


def print_config(cfg: Any) -> str:
    """The resolved config as `section.field = value` lines (what --print-config prints)."""
    lines = [f"preset = {json.dumps(getattr(cfg, 'preset', None))}"]
    for name, section in _sections(cfg):
        for f in dataclasses.fields(section):
            lines.append(f"{name}.{f.name} = "
                         f"{json.dumps(to_dict(getattr(section, f.name)), default=str)}")
    return "\n".join(lines)
