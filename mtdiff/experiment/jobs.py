"""A job of the experiment graph: what it is, what it needs, whether it is done.

A `Job` is plain data (it travels to a Ray task): a unique name, a kind, the names of the
jobs it depends on, the resources its Ray task reserves (and those of the work it fans
out or the trainer it starts), the fields that make it differ from its siblings, the
full config it runs with, and a `key`: the content hash of that config and of its
dependencies' keys. A finished job leaves a record (`Layout.job_record`) holding its key
and its result; a job is done when that record's key is its key and the outputs its
result names still exist. Change a setting and exactly the jobs it reaches run again.

That record (`write_record` / `done_at`) is the one way anything here resumes: a graph's
jobs, a sweep's trials (`mtdiff.sweeps.records`) and the stages a trial runs
(`mtdiff.experiment.execute.run_once`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtdiff.config import Config, config_hash, to_dict
from mtdiff.data.io import atomic_write_json

Kind = Literal["collect", "subset", "train", "distill", "evaluate", "reference", "synthesize",
               "offline", "quality", "report"]
@dataclass
class Job:
    """One node of the graph (module docstring)."""

    name: str  # unique, e.g. "train/metaworld/mtdiff-p/near-optimal/s0"
    kind: Kind
    cfg: Config  # the whole config this job runs with (method, view, seed applied)
    config: dict[str, Any]  # what differs from its siblings: suite, method, view, seed, task
    deps: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)  # its own Ray task: CPU, GPU
    # Resources of what it starts: a trainer's workers ({"CPU": .., "GPU": ..}) or the
    # Ray tasks it fans out ({"CPU": 1, "tasks": n}); shown by --plan, used for checks.
    inner: dict[str, float] = field(default_factory=dict)
    # Kind-specific inputs; "out" is its content-hashed output folder (part of the key).
    params: dict[str, Any] = field(default_factory=dict)
    always: bool = False  # never "done": runs every time (the report)
    # Config sections the job uses: its MLflow run logs these (and its `config_hash` is of
    # these), not the whole config.
    sections: tuple[str, ...] = ()
    key: str = ""  # content hash (set by `finalize_keys`)

    def bundles(self) -> dict[str, dict[str, float]]:
        """What must fit on one node: "its task" (the job's own Ray task) and "what it
        starts" (one trainer worker's bundle, or one fanned-out task); CPU / GPU only."""
        own = {k: v for k, v in self.resources.items() if k in ("CPU", "GPU") and v}
        inner = dict(self.inner)
        if self.kind == "train":  # one worker's bundle
            n = max(inner.get("workers", 1.0), 1.0)
            inner = {"CPU": inner.get("CPU", 0.0) / n, "GPU": inner.get("GPU", 0.0) / n}
        inner = {k: v for k, v in inner.items() if k in ("CPU", "GPU") and v}
        return {"its task": own, "what it starts": inner}

    def describe(self) -> dict[str, Any]:
        """The --plan --json view of the job (without its state)."""
        res = {k: v for k, v in self.resources.items() if v}
        if self.inner:
            res["inner"] = dict(self.inner)
        return {"name": self.name, "kind": self.kind, "deps": list(self.deps),
                "resources": res, "config": dict(self.config), "key": self.key}


def finalize_keys(jobs: list[Job]) -> None:
    """Set every job's key from its kind, fields, params and its dependencies' keys (jobs
    in dependency order)."""
    keys: dict[str, str] = {}
    for j in jobs:
        missing = [d for d in j.deps if d not in keys]
        if missing:
            raise ValueError(f"job {j.name!r} depends on {missing}, which come later or do "
                             "not exist (the grid must list jobs in dependency order)")
        j.key = config_hash({"kind": j.kind, "job": j.config, "params": to_dict(j.params),
                             "deps": [keys[d] for d in j.deps]})
        keys[j.name] = j.key


def read_record(path: Path) -> dict[str, Any] | None:
    """A job record, or None when absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def outputs_exist(result: dict[str, Any]) -> bool:
    """Every path a result lists under "outputs" still exists."""
    return all(Path(p).exists() for p in result.get("outputs", []))


def write_record(path: Path, key: str, result: dict[str, Any], **info: Any) -> dict[str, Any]:
    """Write a finished unit's record atomically (a kill leaves the old one or none, never
    half of one); `result["outputs"]` lists the files that must still exist for it to
    count. `info`: what a reader may want besides (name, kind, seconds, node, ...)."""
    rec = {"record": True, "key": key, "state": "done", **info, "result": result}
    atomic_write_json(path, rec)
    return rec


def done_at(path: Path, key: str) -> dict[str, Any] | None:
    """The result recorded at `path` when it is done under `key` (same key, outputs on
    disk), else None: a damaged, foreign or stale record means "run it again"."""
    rec = read_record(path)
    if not isinstance(rec, dict) or rec.get("key") != key or rec.get("state") != "done":
        return None
    result = rec.get("result") or {}
    return result if outputs_exist(result) else None


def done_result(job: Job, record_path: Path) -> dict[str, Any] | None:
    """The job's result when it is done (same key, outputs on disk), else None."""
    return None if job.always else done_at(record_path, job.key)
