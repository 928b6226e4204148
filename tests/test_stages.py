"""The stage contract: every stage is ``run(cfg, inputs, out) -> artifact``, the graph runs
each job kind through one, and what the stages hand each other are typed records."""

from __future__ import annotations

import ast
import inspect
import json
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from mtdiff.artifacts import (
    Checkpoint,
    Dataset,
    Evaluation,
    Inputs,
    OfflineResult,
    Report,
    from_record,
)
from mtdiff.config import smoke
from mtdiff.experiment.execute import STAGES, job_inputs, run_once
from mtdiff.experiment.jobs import Job, Kind, done_at, read_record
from mtdiff.methods import get_method
from mtdiff.sweeps.records import read_records, write_record

PACKAGE = Path(__file__).resolve().parents[1] / "mtdiff"


def test_every_stage_has_the_one_signature():
    assert set(STAGES) == set(typing.get_args(Kind))  # every job kind runs a stage
    for kind, (run, artifact) in STAGES.items():
        assert run.__name__ == "run", kind
        sig = inspect.signature(run)
        assert list(sig.parameters) == ["cfg", "inputs", "out"], kind
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
                   for p in sig.parameters.values()), kind
        hints = typing.get_type_hints(run)
        assert hints["inputs"] is Inputs and hints["out"] is Path, kind
        assert hints["return"] is artifact, kind


def test_artifacts_round_trip_their_records(tmp_path):
    arts = [Dataset(tmp_path / "d", {"hash": "h", "tasks": ["a"], "transitions": 3}),
            Dataset(tmp_path / "s/augmented", {"synthetic": str(tmp_path / "s/synthetic")}),
            Evaluation(tmp_path / "e/eval-maze2d.json", {"suite": "maze2d"}),
            OfflineResult(tmp_path / "o/result.json", {"success": 0.5, "agent": None}),
            OfflineResult(tmp_path / "q/quality.json", {"records": [], "plot": "p.png"}),
            Report(tmp_path / "r/report.md", {"results": str(tmp_path / "r/results.json")})]
    for a in arts:
        rec = a.to_record()
        assert from_record(rec) == a and type(a).from_record(rec) == a
        assert all(isinstance(p, str) for p in rec["outputs"])
    assert arts[1].to_record()["outputs"] == [str(tmp_path / "s/augmented/manifest.json"),
                                              str(tmp_path / "s/synthetic/manifest.json")]
    assert Checkpoint.from_record({"checkpoint": str(tmp_path / "c")}) == Checkpoint(
        tmp_path / "c")


def test_records_without_a_type_still_name_their_artifact(tmp_path):
    """A graph finished before its records carried types resumes: its dependents get the
    same artifacts."""
    syn = {"task": "t", "synthetic": "/x/synthetic", "augmented": "/x/augmented",
           "outputs": ["/x/synthetic/manifest.json", "/x/augmented/manifest.json"]}
    assert Dataset.from_record(syn).path == Path("/x/augmented")
    assert Evaluation.from_record({"reference_file": "/r/reference-maze2d.json",
                                   "outputs": []}).path == Path("/r/reference-maze2d.json")
    td3 = {"task": "t", "success": 1.0, "agent": "/o/agent.pt",
           "outputs": ["/o/result.json", "/o/agent.pt"]}
    assert OfflineResult.from_record(td3).agent == Path("/o/agent.pt")
    assert OfflineResult.from_record(td3).path == Path("/o/result.json")


def test_a_job_hands_its_stage_its_dependencies_by_role(tmp_path):
    from mtdiff.config import get_preset

    data = Dataset(tmp_path / "d")
    synth = Dataset(tmp_path / "s/augmented")
    agent = OfflineResult(tmp_path / "o/result.json", {"agent": str(tmp_path / "o/agent.pt")})
    job = Job("offline/t/s4rl/s1", "offline", get_preset("smoke"), {"task": "t"},
              params={"task": "t", "method": "s4rl", "seed": 1, "data": "s4rl", "seen": True,
                      "view": "near-optimal", "save_agent": False, "out": str(tmp_path / "x"),
                      "data_job": "collect", "agent_job": "offline/t/original/s1"})
    inputs, out = job_inputs(job, {"collect": data, "offline/t/original/s1": agent})
    assert (inputs.data, inputs.agent, inputs.synth) == (data, agent, None)
    assert (inputs.task, inputs.seed, inputs.variant, inputs.view) == ("t", 1, "s4rl",
                                                                        "near-optimal")
    assert dict(inputs.labels) == {"method": "s4rl", "seen": True} and out == tmp_path / "x"
    train = Job("train/x", "train", get_preset("smoke"), {},
                params={"data_job": "c", "root": str(tmp_path / "t"), "out": "run"})
    inputs, out = job_inputs(train, {"c": synth})
    assert inputs.data == synth and out == tmp_path / "t"  # the stage names its run folder
    with pytest.raises(ValueError, match="needs inputs.model"):
        Inputs().need("model")


def _strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and n.body and isinstance(n.body[0], ast.Expr)
            and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docs]


def test_file_names_are_spelled_by_the_layout_only():
    """Writers and readers name the files inside a run's folders through `mtdiff.layout`
    (and the artifacts that use it); a name spelled twice drifts."""
    prefixes = ("eval-", "student-", "distill-", "reference-")
    files = ("result.json", "quality.json", "manifest.json", "checkpoint.pt",
             "checkpoint_manager_snapshot.json")
    owners = {PACKAGE / "layout.py", PACKAGE / "artifacts.py"}
    found = [f"{f.relative_to(PACKAGE)}:{line}: {text!r}"
             for f in sorted(PACKAGE.rglob("*.py")) if f not in owners
             for line, text in _strings(f)
             if text in files or any(p in text for p in prefixes)]
    assert found == []


def test_checkpoints_are_looked_up_in_one_place():
    """`Checkpoint` (`mtdiff.artifacts`) looks them up and reads them; training only writes
    them (`mtdiff.train.checkpoints`)."""
    users = sorted(str(f.relative_to(PACKAGE)) for f in PACKAGE.rglob("*.py")
                   if any(n in f.read_text() for n in ("find_checkpoint", "load_checkpoint")))
    assert users == ["artifacts.py"]


def test_a_stage_outside_the_graph_resumes_from_the_graphs_record(write_dataset, tmp_path):
    """`run_once` (what a sweep's trial runs its stages through) writes the graph's record
    and reads it back instead of running again; another key, or a record whose outputs are
    gone, runs the stage again."""

    src = Dataset.at(write_dataset(tasks=("a", "b", "c")))
    record, out = tmp_path / "jobs" / "subset.json", tmp_path / "sub"
    inputs = Inputs(data=src, tasks=("a", "c"))
    first = run_once("subset", smoke(), inputs, out, record=record, key="k1")
    assert first.info["tasks"] == ["a", "c"] and done_at(record, "k1") is not None
    assert read_record(record)["state"] == "done"  # the graph's own format
    stamp = record.stat().st_mtime_ns
    again = run_once("subset", smoke(), inputs, out, record=record, key="k1")
    assert again == first and record.stat().st_mtime_ns == stamp  # read back, not rerun
    assert done_at(record, "k2") is None  # a stale key is "run again"
    run_once("subset", smoke(), inputs, out, record=record, key="k2")
    assert record.stat().st_mtime_ns != stamp and done_at(record, "k2") is not None
    shutil.rmtree(out)
    assert done_at(record, "k2") is None  # its outputs are gone: not done


def test_a_sweeps_trial_records_are_job_records(tmp_path):
    """A sweep's trial records are the graph's records: the same reader decides they are
    done, and a trial whose checkpoint is gone runs again."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_record(tmp_path / "trials", "t1", {"train.steps": 10}, 0, {"success": 0.5},
                 outputs=[str(ckpt)])
    write_record(tmp_path / "trials", "t2", {"train.steps": 20}, 0, {"success": 0.7})
    assert done_at(tmp_path / "trials" / "t1.json", "t1")["metrics"] == {"success": 0.5}
    recs = read_records(tmp_path / "trials")
    assert set(recs) == {"t1", "t2"} and recs["t1"]["params"] == {"train.steps": 10}
    ckpt.rmdir()
    assert set(read_records(tmp_path / "trials")) == {"t2"}


MTDIFF_METHODS = ["mtdiff-p", "mtdiff-p-onehot", "mtdiff-p-unet", "mtdiff-p-distill", "mtdiff-s"]
BASELINE_FILES = ["mtbc", "mtiql", "mtcql", "mtdt", "promptdt", "mttd3bc"]


def test_each_baseline_registers_itself_from_its_own_file():
    """`mtdiff.methods` lists MTDiff's own methods only. In a fresh interpreter, an old
    checkpoint's model kind (no method name in its meta) finds each baseline's file, which
    registers exactly its own name; listings keep the paper's order whatever the order of
    the imports."""
    code = ("import json, sys, mtdiff.methods as m\n"
            "own, added = list(m.METHODS), {}\n"
            "for kind in sys.argv[1:]:\n"
            "    before = set(m.METHODS)\n"
            "    found = m.method_of_meta({'kind': kind}).name\n"
            "    added[kind] = [found, sorted(set(m.METHODS) - before)]\n"
            "print(json.dumps([own, added, m.all_methods()]))\n")
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    out = subprocess.run([sys.executable, "-c", code, *reversed(BASELINE_FILES)], env=env,
                         check=True, capture_output=True, text=True, timeout=300).stdout
    own, added, listed = json.loads(out.splitlines()[-1])
    assert own == MTDIFF_METHODS
    assert added == {name: [name, [name]] for name in BASELINE_FILES}
    assert listed == MTDIFF_METHODS + BASELINE_FILES


def test_each_method_file_prices_its_own_network():
    """`--plan`'s cost of a method comes from its own file; the shared cost module knows
    only MTDiff's models."""
    for name in BASELINE_FILES:
        assert get_method(name).network == f"mtdiff.baselines.{name}:network"
    flops = (PACKAGE / "experiment" / "flops.py").read_text()
    assert not [n for n in BASELINE_FILES if f'"{n}"' in flops]
