"""Validation machinery shared by every config section, and the stable hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, ClassVar, Literal, Self

from mtdiff.errors import ConfigError

__all__ = ["ConfigError", "MethodConfig", "config_hash", "to_dict"]


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


class _Validated:
    """Mixin: type/Literal checks for every field, then the section's own `_validate`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_type(f"{type(self).__name__}.{f.name}", getattr(self, f.name), hints[f.name])
        self._validate()

    def _validate(self) -> None:  # overridden where a section has cross-field rules
        pass


class MethodConfig(_Validated):
    """Base of a method's own section (`Config.methods[name]`, `--set methods.NAME.FIELD=`),
    a dataclass in the method's file: validated like every section, and the values the
    presets give it kept beside its defaults, so that a method is one file."""

    # {preset: {field: value}}: what a preset changes from the defaults (the paper's).
    # A subclass's entries add to (and win over) its bases'.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def preset(cls, name: str) -> Self:
        """The section with preset `name`'s values."""
        values: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            values.update(vars(klass).get("PRESETS", {}).get(name, {}))
        return cls(**values)


def _check_type(where: str, value: Any, tp: Any) -> None:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        _check(value in args, where, f"{value!r} is not one of {list(args)}")
    elif origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return
        inner = [a for a in args if a is not type(None)]
        _check_type(where, value, inner[0])
    elif origin is tuple:
        _check(isinstance(value, tuple), where, f"expected a tuple, got {type(value).__name__}")
        for i, v in enumerate(value):
            _check_type(f"{where}[{i}]", v, args[0])
    elif tp is float:
        _check(isinstance(value, int | float) and not isinstance(value, bool), where,
               f"expected a number, got {value!r}")
        # No field means anything by inf or nan: inf passes the sections' `> 0` checks, and
        # either one surfaces only later, as a nan loss or a hang.
        _check(math.isfinite(value), where, f"expected a finite number, got {value!r}")
    elif tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), where,
               f"expected an integer, got {value!r}")
    elif tp is bool:
        _check(isinstance(value, bool), where, f"expected true/false, got {value!r}")
    elif tp is str:
        _check(isinstance(value, str), where, f"expected a string, got {value!r}")


def _positive(obj: Any, *names: str) -> None:
    for n in names:
        v = getattr(obj, n)
        _check(v > 0, f"{type(obj).__name__}.{n}", f"must be > 0, got {v}")


def to_dict(obj: Any) -> Any:
    """A dataclass (or dict of them) as plain JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def config_hash(obj: Any) -> str:
    """A stable 12-hex-digit hash of a config (section): same values, same hash."""
    text = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
