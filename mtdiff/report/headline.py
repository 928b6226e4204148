"""A reproduction's headline numbers as flat MLflow metrics, from its results.json.

The names are fixed by the table, not by the run, so two reproductions line up column by
column in MLflow's runs table and Compare view:

    table1/<method>/<view>/{mean,ci_low,ci_high}           success (%), Meta-World
    table5/<method>/<suite>/<group>/{mean,ci_low,ci_high}  return, Cheetah-vel / Ant-dir
    table2/<method>/<task>/{mean,ci_low,ci_high}           TD3-BC success (%)
    table2/<method>/<task>/gain                            mean - Original's mean (points)

`<method>` is the method's id (`mtdiff-p`, `zero-action`, ...; a row without one, such as
a baseline quoted from the paper, carries no numbers of ours and is left out). Cells we
did not run, and bounds a one-value cell does not have, are absent rather than 0. The
interval is the cell's own (results.json's `ci_method`: over seeds, or over episodes of
one seed).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_BOUNDS = ("mean", "ci_low", "ci_high")
# Names MLflow accepts: alphanumerics, _ - . space : and /; "/" stays the separator.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-. :]+")


def metric_part(name: Any) -> str:
    """One path part of a metric name: characters MLflow rejects (and "/") become "_"."""
    part = _UNSAFE.sub("_", str(name)).strip(" _")
    return part or "_"


def metric_name(*parts: Any) -> str:
    """`parts` joined by "/", each made safe (`metric_part`)."""
    return "/".join(metric_part(p) for p in parts)


def _bounds(prefix: str, cell: dict[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{b}": float(cell[b]) for b in _BOUNDS if cell.get(b) is not None}


def _cells(results: dict[str, Any], table: str) -> Iterable[dict[str, Any]]:
    return (c for c in results.get("cells", [])
            if c.get("table") == table and c.get("method") and c.get("mean") is not None)


def headline_metrics(results: dict[str, Any]) -> dict[str, float]:
    """The Table 1, Table 5 and Table 2 cells of `results` (results.json's content) as
    ``{metric name: value}`` (module docstring)."""
    out: dict[str, float] = {}
    for c in _cells(results, "table1"):
        out.update(_bounds(metric_name("table1", c["method"], c.get("view") or "all"), c))
    for c in _cells(results, "table5"):
        out.update(_bounds(metric_name("table5", c["method"], c.get("tasks") or "all",
                                       c.get("group") or "all"), c))
    original = {c.get("tasks"): float(c["mean"]) for c in _cells(results, "table2")
                if c["method"] == "original"}
    for c in _cells(results, "table2"):
        prefix = metric_name("table2", c["method"], c.get("tasks") or "all")
        out.update(_bounds(prefix, c))
        base = original.get(c.get("tasks"))
        if c["method"] != "original" and base is not None:
            out[f"{prefix}/gain"] = float(c["mean"]) - base
    return out
