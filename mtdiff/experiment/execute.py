"""One job inside its Ray task (`execute`): its output teed to its log file, its MLflow child
run, its kind's runner (`jobs.RUNNERS`) and, when done, its record written atomically. The
graph (`mtdiff.experiment.runner`) submits it once per job."""

from __future__ import annotations

import importlib
import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from mtdiff import tracking
from mtdiff.data.io import atomic_write_json
from mtdiff.experiment.jobs import RUNNERS, Job
from mtdiff.layout import Layout


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


def execute(job: Job, spec: dict[str, Any], dep_names: list[str],
            *dep_results: dict[str, Any]) -> dict[str, Any]:
    """A job inside its Ray task: log file, MLflow child run, the kind's runner, the
    record. Returns the record (its "result" is what dependents receive)."""
    import ray  # (in the job's Ray task: a driver that imports this module needs no Ray)

    os.environ["MTDIFF_CODE_VERSION"] = spec["code_version"]
    lay = Layout.at(spec["out"])
    # A dependency that ran in this graph hands over its record, a skipped one its result.
    inputs = {n: r["result"] if r.get("record") else r
              for n, r in zip(dep_names, dep_results, strict=True)}
    module, _, attr = RUNNERS[job.kind].partition(":")
    fn = getattr(importlib.import_module(module), attr)
    node = ray.get_runtime_context().get_node_id()
    with _logged(lay.job_log(job.name)) as log:
        t0 = time.time()

        def work() -> dict[str, Any]:
            _injected_failure(job, lay)
            return fn(job, inputs)

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
        rec = {"record": True, "name": job.name, "kind": job.kind, "key": job.key,
               "state": "done",
               "config": job.config, "result": result, "seconds": round(time.time() - t0, 2),
               "node": node, "host": socket.gethostname(),
               "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
               "code_version": spec["code_version"]}
        atomic_write_json(lay.job_record(job.name), rec)
    return rec
