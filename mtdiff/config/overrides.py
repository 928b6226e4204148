"""Command-line overrides (``section.field=value``, ``methods.NAME.field=value``), flat
params, and reading configs back."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from mtdiff.config.base import ConfigError, to_dict
from mtdiff.config.sections import Config
from mtdiff.methods import method_configs


def _parse_value(text: str, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        return _parse_value(text, [a for a in args if a is not type(None)][0], where)
    if origin is tuple:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return tuple(_parse_value(p, args[0], where) for p in parts)
    try:
        if tp is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if tp is int:
            return int(float(text)) if "e" in text.lower() else int(text.replace("_", ""))
        if tp is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{where}: cannot read {text!r} as {tp.__name__}") from None
    return text  # str and Literal[str]


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A new Config with ``section.field=value`` overrides applied (and validated)."""
    cfg = dataclasses.replace(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.field=value "
                              "(e.g. train.lr=1e-4)")
        path, text = item.split("=", 1)
        parts = path.strip().split(".")
        node: Any = cfg
        chain = [node]
        for p in parts[:-1]:
            if isinstance(node, dict):  # Config.methods
                if p not in node:
                    raise ConfigError(f"override {item!r}: no method {p!r} has a config "
                                      f"section; those with one: {sorted(node)}")
                node = node[p]
            else:
                is_section = dataclasses.is_dataclass(node)
                known = {f.name for f in dataclasses.fields(node)} if is_section else set()
                if p not in known:
                    raise ConfigError(f"override {item!r}: no config section {p!r}; sections "
                                      f"are {[f.name for f in dataclasses.fields(cfg)]}")
                node = getattr(node, p)
            chain.append(node)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"override {item!r}: {path.strip()!r} is not a field (a method's "
                              "are methods.NAME.FIELD)")
        names = {f.name: f for f in dataclasses.fields(node)}
        leaf = parts[-1]
        if leaf not in names:
            raise ConfigError(f"override {item!r}: {type(node).__name__} has no field {leaf!r}; "
                              f"fields are {sorted(names)}")
        hints = typing.get_type_hints(type(node))
        value = _parse_value(text.strip(), hints[leaf], path)
        # Rebuild from the leaf up so every touched section is validated again.
        new = dataclasses.replace(node, **{leaf: value})
        for parent, name in zip(reversed(chain[:-1]), reversed(parts[:-1]), strict=True):
            new = {**parent, name: new} if isinstance(parent, dict) else \
                dataclasses.replace(parent, **{name: new})
        cfg = new
    return cfg


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 2e-4, ...}``: the config as flat params (for MLflow)."""
    out: dict[str, Any] = {}
    for k, v in to_dict(obj).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = ",".join(map(str, v)) if isinstance(v, list) else v
    return out


def _section(tp: type, values: dict[str, Any]) -> Any:
    """A section of class `tp` from its `to_dict` values (JSON lists back to tuples)."""
    hints = typing.get_type_hints(tp)
    return tp(**{n: tuple(x) if isinstance(x, list) and typing.get_origin(hints[n]) is tuple
                 else x for n, x in values.items()})


# A config written when the methods shared one flat `baselines` section still reads
# (checkpoints keep theirs): an unprefixed field there is the field of that name of every
# method that has one; a prefixed one (`iql_beta`) is its methods' field without the
# prefix (`methods.mtiql.beta`).
_FLAT_PREFIXES = {"bc_": ("mtbc",), "iql_": ("mtiql",), "cql_": ("mtcql",),
                  "dt_": ("mtdt", "promptdt")}


def _from_flat_baselines(flat: dict[str, Any], preset: str) -> dict[str, dict[str, Any]]:
    """The `methods` values of a flat `baselines` section (`_FLAT_PREFIXES`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, cls in method_configs().items():
        fields = {f.name for f in dataclasses.fields(cls)}
        values = to_dict(cls.preset(preset))
        values.update({k: v for k, v in flat.items() if k in fields})
        for prefix, methods in _FLAT_PREFIXES.items():
            if name in methods:
                values.update({k[len(prefix):]: v for k, v in flat.items()
                               if k.startswith(prefix)})
        out[name] = values
    return out


def from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config from `to_dict` output (e.g. read back from a checkpoint)."""
    hints = typing.get_type_hints(Config)
    data = dict(data)
    if "baselines" in data:
        data["methods"] = _from_flat_baselines(data.pop("baselines"),
                                               data.get("preset", "paper"))
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        tp = hints.get(k)
        if tp is None:
            raise ConfigError(f"unknown config section {k!r}")
        if k == "methods":
            classes = method_configs()
            unknown = sorted(set(v) - set(classes))
            if unknown:
                raise ConfigError(f"no method called {unknown} has a config section; those "
                                  f"with one: {sorted(classes)}")
            kwargs[k] = {name: _section(classes[name], x) for name, x in v.items()}
        elif dataclasses.is_dataclass(tp):
            kwargs[k] = _section(tp, v)
        else:
            kwargs[k] = v
    return Config(**kwargs)
