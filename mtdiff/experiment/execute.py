"""One job inside its Ray task (`execute`): its output teed to its log file, its MLflow child
run, its kind's stage (`STAGES`: every stage is ``run(cfg, inputs, out) -> artifact``,
the same function the commands call) and, when done, its record (the artifact's
`to_record`) written atomically. The graph (`mtdiff.experiment.runner`) submits it once
per job."""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from mtdiff import collect, tracking
from mtdiff.artifacts import (
    Artifact,
    Checkpoint,
    Dataset,
    Evaluation,
    Inputs,
    OfflineResult,
    Report,
)
from mtdiff.collect import NO_PROGRESS_ENV
from mtdiff.config import Config
from mtdiff.data import subset
from mtdiff.eval import reference
from mtdiff.eval import stage as evaluate
from mtdiff.experiment.jobs import Job, done_at, write_record
from mtdiff.layout import Layout
from mtdiff.offline import quality
from mtdiff.offline import stage as offline
from mtdiff.report import stage as report
from mtdiff.runtime import set_torch_threads
from mtdiff.synth import stage as synthesize
from mtdiff.train import distill
from mtdiff.train import stage as train

# What each kind of job runs, and the artifact its record holds (what its dependents get).
STAGES: dict[str, tuple[Callable[[Config, Inputs, Path], Artifact], type]] = {
    "collect": (collect.run, Dataset),
    "subset": (subset.run, Dataset),
    "train": (train.run, Checkpoint),
    "distill": (distill.run, Checkpoint),
    "evaluate": (evaluate.run, Evaluation),
    "reference": (reference.run, Evaluation),
    "synthesize": (synthesize.run, Dataset),
    "offline": (offline.run, OfflineResult),
    "quality": (quality.run, OfflineResult),
    "report": (report.run, Report),
}
# Kinds whose Ray task holds one CPU and runs torch itself, many side by side: one thread
# each (the others drive work they fan out, or a trainer with its own workers).
ONE_THREAD = ("synthesize", "offline", "quality")


class _Tee:
    """A text stream writing to two streams (the job's log file and the worker's own)."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()

    def isatty(self) -> bool:
        return False


@contextmanager
def _logged(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()} "
                f"(pid {os.getpid()}) ===\n")
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(old[0], f), _Tee(old[1], f)
        try:
            yield f
        finally:
            sys.stdout, sys.stderr = old


FAIL_ENV = "MTDIFF_TEST_FAIL_JOB"  # "<job>[:<tries>],...": make those jobs fail (drills)


def _injected_failure(job: Job, lay: Layout) -> None:
    """Fault injection for tests and drills: fail a job named in $MTDIFF_TEST_FAIL_JOB (its
    first `tries` attempts, every attempt when no count is given). Attempts are counted in
    a file next to its log: each one is a fresh process."""
    for spec in filter(None, os.environ.get(FAIL_ENV, "").split(",")):
        name, _, count = spec.partition(":")
        if name != job.name:
            continue
        tries = lay.job_log(job.name).with_suffix(".injected")
        n = int(tries.read_text()) + 1 if tries.exists() else 1
        tries.write_text(str(n))
        if not count or n <= int(count):
            raise RuntimeError(f"injected failure of {job.name} (try {n}, {FAIL_ENV})")


def job_inputs(job: Job, deps: dict[str, Artifact]) -> tuple[Inputs, Path]:
    """(the stage's inputs, its `out`) from a job's params and its dependencies' artifacts:
    a ``<role>_job`` param names the dependency that fills `Inputs.<role>`; the others are
    the job's coordinates (suite, task, seed, ...)."""
    p = job.params
    roles = {k[:-len("_job")]: deps[v] for k, v in p.items() if k.endswith("_job")}
    labels = {k: p[k] for k in ("method", "seen", "num_tasks") if k in p}
    graph = p.get("graph", ())
    inputs = Inputs(
        **roles, suite=p.get("suite"), task=p.get("task"), tasks=tuple(p.get("tasks", ())),
        prompt_tasks=tuple(p.get("prompt_tasks", ())), view=p.get("view"),
        seed=p.get("seed"), variant=p.get("data") if job.kind == "offline" else None,
        save_agent=bool(p.get("save_agent")), labels=labels if job.kind == "offline" else {},
        graph=graph if isinstance(graph, dict) else tuple(graph))
    # a training's (a distillation's) runs live under "root", named by the stage itself
    return inputs, Path(p["root"] if "root" in p else p["out"])


def execute(job: Job, spec: dict[str, Any], deps: list[tuple[str, str]],
            *dep_results: dict[str, Any]) -> dict[str, Any]:
    """A job inside its Ray task: log file, MLflow child run, the kind's stage, the record.
    `deps`: (name, kind) of each dependency, whose records or results follow. Returns the
    record (its "result" is what dependents receive)."""
    import ray  # (in the job's Ray task: a driver that imports this module needs no Ray)

    os.environ["MTDIFF_CODE_VERSION"] = spec["code_version"]
    os.environ[NO_PROGRESS_ENV] = "1"  # a job's output goes to its log file
    lay = Layout.at(spec["out"])
    # A dependency that ran in this graph hands over its record, a skipped one its result;
    # its kind says which artifact that is.
    arts = {n: STAGES[kind][1].from_record(r["result"] if r.get("record") else r)
            for (n, kind), r in zip(deps, dep_results, strict=True)}
    inputs, out = job_inputs(job, arts)
    stage = STAGES[job.kind][0]
    # The job's stage logs into the job's run, and nowhere when the graph runs without MLflow.
    cfg = replace(job.cfg, tracking=replace(job.cfg.tracking, enabled=bool(spec.get("mlflow"))))
    if job.kind in ONE_THREAD:
        set_torch_threads(1)
    node = ray.get_runtime_context().get_node_id()
    with _logged(lay.job_log(job.name)) as log:
        t0 = time.time()

        def work() -> dict[str, Any]:
            _injected_failure(job, lay)
            return stage(cfg, inputs, out).to_record()

        try:
            if spec.get("mlflow"):
                with tracking.job_run(spec["mlflow"], job.cfg, name=job.name, stage=job.kind,
                                      sections=job.sections,
                                      params={f"job.{k}": v for k, v in job.config.items()},
                                      job_key=job.key):
                    result = work()
                    tracking.log_metrics({"job_seconds": time.time() - t0})
            else:
                result = work()
        except BaseException:
            log.write(traceback.format_exc())
            raise
        rec = write_record(
            lay.job_record(job.name), job.key, result, name=job.name, kind=job.kind,
            config=job.config, seconds=round(time.time() - t0, 2), node=node,
            host=socket.gethostname(), finished=time.strftime("%Y-%m-%d %H:%M:%S"),
            code_version=spec["code_version"])
    return rec


def run_once(kind: str, cfg: Config, inputs: Inputs, out: Path, *, record: Path,
             key: str) -> Artifact:
    """Stage `kind` outside the graph (a sweep's trial trains, evaluates, synthesizes, runs
    TD3-BC), resumed as the graph's jobs are: when `record` holds `key` and the outputs it
    names exist, its artifact is read back; else the stage runs and `record` is written.
    `key` must hash everything that decides the result (the caller's inputs and settings)."""
    stage, artifact = STAGES[kind]
    done = done_at(record, key)
    if done is not None:
        return artifact.from_record(done)
    t0 = time.time()
    art = stage(cfg, inputs, out)
    write_record(record, key, art.to_record(), kind=kind, seconds=round(time.time() - t0, 2),
                 host=socket.gethostname(), finished=time.strftime("%Y-%m-%d %H:%M:%S"))
    return art
