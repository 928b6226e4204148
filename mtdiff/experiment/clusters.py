"""A cluster described in a file (`full_repro.py --plan --cluster FILE`), as the nodes the
cost estimate and the grid's resources are computed for.

Accepted (JSON or YAML):

- a Ray autoscaler config (``cluster.yaml``): every type of ``available_node_types`` at its
  ``max_workers`` (the largest configuration the autoscaler may reach; the global
  ``max_workers`` caps the workers, filled in the order the types are listed) plus the
  head (``head_node_type``, one); each type's ``resources`` must give its CPU (and GPU);
- ``{"nodes": [{"CPU": 16, "GPU": 1, "count": 8}, {"CPU": 8}]}``: nodes, ``count`` of each
  (default 1);
- ``{"node_types": {"gpu": {"CPU": 8, "GPU": 1, "count": 4}, "cpu": {"CPU": 16, "count": 6}}}``:
  named types with their counts (``resources: {...}`` may hold the CPU / GPU instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtdiff.experiment.cells import ClusterInfo

FORMATS = ("a Ray autoscaler cluster.yaml (available_node_types x max_workers + head), "
           "{\"nodes\": [{\"CPU\": 16, \"GPU\": 1, \"count\": 8}, ...]} or "
           "{\"node_types\": {\"name\": {\"CPU\": 8, \"GPU\": 1, \"count\": 4}, ...}}")


class ClusterFileError(ValueError):
    """A cluster file that cannot be read as a cluster; one line naming the problem."""


def _number(where: str, key: str, v: Any, *, integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (
            integer and int(v) != v):
        kind = "a whole number" if integer else "a number"
        raise ClusterFileError(f"{where}: {key} must be {kind} >= 0, got {v!r}")
    return float(v)


def _node(where: str, spec: Any) -> dict[str, float]:
    if not isinstance(spec, dict):
        raise ClusterFileError(f"{where}: a node must be a mapping like {{CPU: 16, GPU: 1}}, "
                               f"got {spec!r}")
    res = spec.get("resources", spec)
    if not isinstance(res, dict) or "CPU" not in res:
        raise ClusterFileError(f"{where}: no CPU count (give resources: {{CPU: n, GPU: m}}; "
                               "Ray would detect it from the instance type, this file must "
                               "say it)")
    return {"CPU": _number(where, "CPU", res["CPU"]),
            "GPU": _number(where, "GPU", res.get("GPU", 0))}


def _from_autoscaler(doc: dict[str, Any], where: str) -> list[dict[str, float]]:
    types = doc["available_node_types"]
    if not isinstance(types, dict) or not types:
        raise ClusterFileError(f"{where}: available_node_types must map node type names to "
                               "their resources and max_workers")
    head = doc.get("head_node_type")
    if head is not None and head not in types:
        raise ClusterFileError(f"{where}: head_node_type {head!r} is not one of "
                               f"available_node_types ({', '.join(types)})")
    cap = doc.get("max_workers")
    left = _number(where, "max_workers", cap, integer=True) if cap is not None else float("inf")
    nodes = [_node(f"{where}: node type {head!r}", types[head])] if head else []
    for name, spec in types.items():
        if name == head:
            continue
        if not isinstance(spec, dict):
            raise ClusterFileError(f"{where}: node type {name!r} must be a mapping")
        n = _number(f"{where}: node type {name!r}", "max_workers",
                    spec.get("max_workers", 0), integer=True)
        n = min(n, left)
        left -= n
        nodes += [_node(f"{where}: node type {name!r}", spec)] * int(n)
    return nodes


def _from_types(doc: dict[str, Any], where: str) -> list[dict[str, float]]:
    types = doc["node_types"]
    if not isinstance(types, dict) or not types:
        raise ClusterFileError(f"{where}: node_types must map names to "
                               "{CPU: n, GPU: m, count: k}")
    return _counted([(f"{where}: node type {name!r}", spec) for name, spec in types.items()])


def _from_nodes(doc: dict[str, Any], where: str) -> list[dict[str, float]]:
    listed = doc["nodes"]
    if not isinstance(listed, list) or not listed:
        raise ClusterFileError(f"{where}: nodes must be a non-empty list of "
                               "{CPU: n, GPU: m, count: k}")
    return _counted([(f"{where}: nodes[{i}]", spec) for i, spec in enumerate(listed)])


def _counted(specs: list[tuple[str, Any]]) -> list[dict[str, float]]:
    """Each (label, {CPU, GPU, count}) as `count` nodes (1 when not given)."""
    nodes: list[dict[str, float]] = []
    for w, spec in specs:
        count = _number(w, "count", spec.get("count", 1) if isinstance(spec, dict) else None,
                        integer=True)
        nodes += [_node(w, spec)] * int(count)
    return nodes


def cluster_from_doc(doc: Any, where: str = "cluster file") -> ClusterInfo:
    """The cluster a parsed file describes (module docstring)."""
    if not isinstance(doc, dict):
        raise ClusterFileError(f"{where}: expected a mapping; accepted: {FORMATS}")
    if "available_node_types" in doc:
        nodes = _from_autoscaler(doc, where)
    elif "node_types" in doc:
        nodes = _from_types(doc, where)
    elif "nodes" in doc:
        nodes = _from_nodes(doc, where)
    else:
        raise ClusterFileError(f"{where}: no available_node_types, node_types or nodes; "
                               f"accepted: {FORMATS}")
    if not any(n["CPU"] for n in nodes):
        raise ClusterFileError(f"{where}: describes no node with a CPU (jobs need CPUs)")
    return ClusterInfo([dict(n) for n in nodes])


def load_cluster(path: str | Path) -> ClusterInfo:
    """The cluster described in `path` (JSON or YAML; module docstring); a missing or
    malformed file raises `ClusterFileError` with one line."""
    import yaml

    p = Path(path)
    where = f"--cluster {path}"
    try:
        text = p.read_text()
    except OSError as e:
        raise ClusterFileError(f"{where}: cannot read it ({e.strerror or e})") from e
    try:
        doc = yaml.safe_load(text)  # JSON is YAML
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ClusterFileError(f"{where}: neither JSON nor YAML ({first})") from e
    return cluster_from_doc(doc, where)
