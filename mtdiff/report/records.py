"""What the report reads: the records of the graph's finished jobs, by job name.

Every job of a reproduction leaves `<out>/jobs/<name>.json` (`Layout.job_record`): its
kind, the fields that make it differ from its siblings (`config`: suite, method, view,
seed, task) and its `result`. The report takes the job names of the graph (the report
job's `graph` parameter, or `<out>/graph.json`'s jobs) and reads exactly those records:
no folder is found by its name. Given the jobs' keys too (graph.json holds them), a
record left by an earlier config (another key) is stale and not read; a record whose
outputs are gone is not read either.

- evaluate records name their evaluation JSON (`result.eval_file`: a summary and the
  per-episode results, `mtdiff.eval.stage.run`);
- offline records (TD3-BC) hold task, method, seed, seen, success, mean_return,
  episodes, transitions (and num_tasks for Fig. 7);
- quality records hold Table 4's `records`;
- collect records describe the datasets.

Paths in records are absolute; a run folder moved or copied elsewhere still reads: a
recorded path that is gone is looked up under the run folder by its trailing part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtdiff.experiment.jobs import outputs_exist, read_record
from mtdiff.layout import Layout


class GraphError(ValueError):
    """The report cannot find the graph it should read (the message says what to run)."""


def graph_names(root: str | Path) -> list[str]:
    """The job names of `<root>/graph.json` (written by the driver at the end of a run)."""
    return list(graph_keys(root))


def graph_keys(root: str | Path) -> dict[str, str]:
    """Job name -> key of `<root>/graph.json`'s jobs (the report job left out)."""
    path = Layout.at(root).graph
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise GraphError(f"no job graph at {path}: run `python pipelines/full_repro.py "
                         f"--out {Path(root)}` first (it writes graph.json)") from None
    except ValueError as e:
        raise GraphError(f"{path} is not valid JSON ({e}); rerun full_repro to rewrite it") \
            from None
    jobs = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(jobs, list):
        raise GraphError(f"{path} has no list of jobs; rerun full_repro to rewrite it")
    return {j["name"]: str(j.get("key", "")) for j in jobs if j.get("name") != "report"}


def local_path(recorded: str | Path, root: Path) -> Path:
    """`recorded` if it exists, else the same trailing path under `root` (a run folder
    moved or copied elsewhere), else `recorded` unchanged."""
    p = Path(recorded)
    if p.exists():
        return p
    parts = p.parts
    for i in range(1, len(parts)):
        cand = root.joinpath(*parts[i:])
        if cand.exists():
            return cand
    return p


@dataclass
class EvalRun:
    """One evaluate job: which model it evaluated and its evaluation JSON."""

    job: str
    suite: str
    method: str
    view: str | None  # Meta-World dataset view; None elsewhere
    seed: int  # training seed
    path: Path  # the evaluation JSON
    summary: dict[str, Any]
    episodes: list[dict[str, Any]]  # per (task, eval seed[, prompt]) results

    def results(self, group: str | None = None, prompt: str = "own") -> list[dict[str, Any]]:
        """The per-(task, eval seed) results of `group` ("train", "unseen", "heldout";
        None: all groups) with `prompt` ("own" / "wrong")."""
        return [e for e in self.episodes if e.get("prompt", "own") == prompt
                and (group is None or e.get("group") == group)]

    @property
    def eval_settings(self) -> dict[str, Any]:
        """The evaluation config the JSON records (episodes, seeds, stop_on_success)."""
        return dict(self.summary.get("eval", {}))


@dataclass
class GraphRecords:
    """The finished records of a graph's jobs and what is missing."""

    root: Path
    names: list[str]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> record
    missing: list[str] = field(default_factory=list)  # no finished record (failed, pending)
    stale: list[str] = field(default_factory=list)  # a record of another key, or outputs gone
    problems: list[str] = field(default_factory=list)  # unreadable outputs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Finished records of `kind`, in graph order."""
        return [r for r in self.done.values() if r.get("kind") == kind]

    def evals(self) -> list[EvalRun]:
        """Every finished evaluation whose JSON reads (others go to `problems`)."""
        runs = []
        for rec in self.of_kind("evaluate"):
            cfg, res = rec.get("config", {}), rec.get("result", {})
            path = local_path(res.get("eval_file", ""), self.root)
            try:
                doc = json.loads(path.read_text())
                runs.append(EvalRun(rec["name"], cfg["suite"], cfg["method"], cfg.get("view"),
                                    int(cfg["seed"]), path, doc["summary"],
                                    list(doc.get("episodes", []))))
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.problems.append(f"{rec.get('name')}: evaluation `{path}` unreadable "
                                     f"({type(e).__name__}: {e})")
        return runs

    def offline(self) -> list[dict[str, Any]]:
        """The results of finished TD3-BC jobs (task, method, seed, seen, success, ...)."""
        return [r["result"] for r in self.of_kind("offline")]

    def quality(self) -> list[dict[str, Any]]:
        """Table 4's records of the finished quality jobs."""
        return [q for r in self.of_kind("quality") for q in r["result"].get("records", [])]

    def presets(self) -> list[str]:
        """Presets named by the records' results (offline and quality records carry one)."""
        found = {str(r["preset"]) for r in self.offline() if "preset" in r}
        found |= {str(q["preset"]) for q in self.quality() if "preset" in q}
        return sorted(found)


def load_graph(root: str | Path,
               graph: Sequence[str] | Mapping[str, str] | None = None) -> GraphRecords:
    """The records of `graph`'s jobs under `root`: job names, or names -> keys (a record
    with another key is stale); default: `<root>/graph.json`'s names and keys."""
    lay = Layout.at(root)
    if not lay.out.is_dir():
        raise FileNotFoundError(f"no output folder at {lay.out}; run `python pipelines/"
                                "full_repro.py --out DIR` first and pass that DIR")
    keys = dict(graph) if isinstance(graph, Mapping) else (
        dict.fromkeys(graph, "") if graph is not None else graph_keys(lay.out))
    recs = GraphRecords(lay.out, list(keys))
    for name, key in keys.items():
        rec = read_record(lay.job_record(name))
        if rec is None or rec.get("state") != "done":
            recs.missing.append(name)
        elif (key and rec.get("key") != key) or not outputs_exist(_localized(rec, lay.out)):
            recs.stale.append(name)
        else:
            recs.done[name] = rec
    return recs


def _localized(rec: dict[str, Any], root: Path) -> dict[str, Any]:
    """A record's result with its outputs looked up under `root` (`local_path`)."""
    res = rec.get("result") or {}
    return {"outputs": [str(local_path(p, root)) for p in res.get("outputs", [])]}


def task_set_name(tasks: list[str]) -> str:
    """E.g. "10 (MT10)", "50 (MT50)", "3": the count and a named Meta-World set if equal."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.metaworld import TASK_SETS

    for name, members in TASK_SETS.items():
        if set(tasks) == set(members):
            return f"{len(tasks)} ({name})"
    return str(len(tasks))
