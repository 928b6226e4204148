"""Run the job graph on Ray Core: every job a Ray task, its dependencies passed as
ObjectRefs, as many at once as the cluster's resources allow.

- A job whose record says it is done (same key, outputs on disk) is skipped: its result
  is read back and handed to its dependents as a plain value.
- A job's task reserves its own resources (`Job.resources`); a training job's task is the
  driver function that builds the `TorchTrainer` (Train V2), whose workers reserve their
  own (`Job.inner`). Ray cannot see that a training task will ask for more, so training
  jobs are submitted only while the trainers in flight leave room for one more
  (`experiment.max_concurrent_train`, else the nodes' CPUs / GPUs) — the limit Ray's
  guide sets for Tune trials that start trainers; every other job is submitted at once
  and waits for its inputs inside Ray.
- A failed job is retried (`experiment.retries`, Ray's `max_retries` with
  `retry_exceptions`); its dependents wait, and if it fails for good they are reported
  "blocked" while independent branches go on. The report runs last, with whatever
  finished.
- Each job writes its output to `Layout.job_log(name)` and, when done, its record
  (`Layout.job_record(name)`: key, result, seconds, node) atomically: a rerun after a
  kill skips finished jobs and resumes the others (`mtdiff.experiment.execute`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.execute import execute
from mtdiff.experiment.jobs import Job, done_result
from mtdiff.layout import Layout
from mtdiff.runtime import release_orphaned_placement_groups


class GraphAborted(RuntimeError):
    """The graph was stopped (its running jobs cancelled) for a reason outside any job,
    such as the tracking server gone for longer than its retry budget."""


@dataclass
class Outcome:
    """What happened to a job in this run."""

    name: str
    kind: str
    state: str  # "done" | "skipped" | "failed" | "blocked"
    seconds: float = 0.0
    node: str = ""
    log: str = ""
    error: str = ""
    result: dict[str, Any] | None = None


def train_capacity(jobs: list[Job], cluster: Any, limit: int | None) -> tuple[str, float]:
    """(resource, capacity) that bounds how many trainers run at once: GPUs on a GPU
    cluster, else CPUs, over all nodes; `limit` (a count) overrides."""
    res = "GPU" if cluster.gpus > 0 else "CPU"
    if limit is not None:
        return "count", float(limit)
    return res, float(sum(n.get(res, 0.0) for n in cluster.nodes))


class LiveCluster:
    """The cluster as it is now: its alive nodes, re-read at most every `every` seconds
    (a node lost or added changes what the graph may start)."""

    def __init__(self, first: Any, *, every: float = 5.0,
                 read: Callable[[], Any] | None = None) -> None:
        self.now, self.every, self.read_at = first, every, time.monotonic()
        self._read = read

    def current(self) -> tuple[Any, bool]:
        """(the cluster now, whether its nodes changed since the last call)."""
        if time.monotonic() - self.read_at < self.every:
            return self.now, False
        if self._read is None:
            self._read = ClusterInfo.from_ray
        before, self.now, self.read_at = self.now, self._read(), time.monotonic()
        return self.now, sorted(map(_node_key, before.nodes)) != sorted(
            map(_node_key, self.now.nodes))


def _node_key(n: dict[str, float]) -> tuple:
    return tuple(sorted((k, v) for k, v in n.items() if k in ("CPU", "GPU")))


def _describe(cluster: Any) -> str:
    cpus = sum(n.get("CPU", 0.0) for n in cluster.nodes)
    gpus = sum(n.get("GPU", 0.0) for n in cluster.nodes)
    return (f"{len(cluster.nodes)} node(s), {cpus:g} CPU" + (f", {gpus:g} GPU" if gpus else ""))


def unplaceable(j: Job, cluster: Any) -> str | None:
    """What of `j` no node of `cluster` can host ("what it starts needs {'CPU': 2.0}"), or
    None when all of it fits somewhere."""
    for what, need in j.bundles().items():
        if need and not cluster.fits(need):
            return f"{what} needs {need}"
    return None


def run_graph(jobs: list[Job], *, out: str | Path, cluster: Any, mlflow_spec: dict | None,
              code_version: str, retries: int, max_concurrent_train: int | None,
              progress: bool = True, resource_wait_s: float = 600.0,
              on_update: Callable[[list[Outcome]], None] | None = None,
              live: LiveCluster | None = None,
              watch: Callable[[], str | None] | None = None,
              release_every: float = 30.0) -> list[Outcome]:
    """Run (or skip) every job; returns their outcomes in the graph's order. `on_update`
    gets the outcomes so far before the first job starts and after each one ends.

    Trainings are admitted against the cluster as it is now (`live`, default: Ray's alive
    nodes re-read every few seconds), not as it was at the start. A job that needs more
    than any live node offers for `resource_wait_s` seconds (a node was lost) is failed
    with one line instead of waiting forever; its dependents are blocked. `watch`, called
    every round, stops the whole graph (`GraphAborted`) when it returns a reason. When the
    cluster changes, and every `release_every` seconds, placement groups whose trainer died
    are given back (`runtime.release_orphaned_placement_groups`)."""
    import ray
    from tqdm import tqdm

    lay = Layout.at(out)
    spec = {"out": str(lay.out), "mlflow": mlflow_spec, "code_version": code_version}
    outcomes: dict[str, Outcome] = {}
    values: dict[str, Any] = {}  # name -> ObjectRef (running) or result dict (skipped)
    for j in jobs:
        res = done_result(j, lay.job_record(j.name))
        if res is not None:
            values[j.name] = res
            outcomes[j.name] = Outcome(j.name, j.kind, "skipped", result=res)
    remote = ray.remote(execute)
    kind_of = {j.name: j.kind for j in jobs}
    queue = [j for j in jobs if j.name not in outcomes and j.kind != "report"]
    reports = [j for j in jobs if j.kind == "report"]
    running: dict[Any, Job] = {}
    started: dict[str, float] = {}
    cap_res, capacity = train_capacity(jobs, cluster, max_concurrent_train)
    used = 0.0
    live = live or LiveCluster(cluster)
    stuck: dict[str, float] = {}  # job -> since when it needs what no live node offers
    next_release = 0.0  # when to look for placement groups of dead trainers next

    def need(j: Job) -> float:
        return 1.0 if cap_res == "count" else float(j.inner.get(cap_res, 0.0))

    def dep_ready(j: Job) -> bool:
        return all(d in values for d in j.deps)

    def submit(j: Job) -> None:
        nonlocal used
        args = [values[d].ref if isinstance(values[d], _RefResult) else values[d]
                for d in j.deps]
        # SPREAD: a job whose task reserves no CPU (it drives a trainer or fans out tasks)
        # would otherwise always start on the driver's node; spread, the jobs of a
        # multi-node cluster start on every node (their trainers' workers and fanned-out
        # tasks are placed by their own resources either way).
        opts = {"num_cpus": j.resources.get("CPU", 0.0), "num_gpus": j.resources.get("GPU", 0.0),
                "max_retries": retries, "retry_exceptions": True,
                "name": f"job:{j.name}", "scheduling_strategy": "SPREAD"}
        ref = remote.options(**opts).remote(j, spec, [(d, kind_of[d]) for d in j.deps], *args)
        running[ref] = j
        values[j.name] = _RefResult(ref)  # dependents get the ref; Ray resolves it
        started[j.name] = time.time()
        if j.kind == "train":
            used += need(j)

    def blocked_by(j: Job) -> str | None:
        bad = [d for d in j.deps if d in outcomes and outcomes[d].state in ("failed", "blocked")]
        return bad[0] if bad else None

    def update() -> None:
        if on_update is not None:
            on_update([outcomes[j.name] for j in jobs if j.name in outcomes])

    def waited_too_long(j: Job, now: Any) -> str | None:
        """The one-line error of a job stuck on resources no live node offers, once it
        has waited `resource_wait_s`; None while it may still wait (or fits)."""
        why = unplaceable(j, now)
        if why is None:
            stuck.pop(j.name, None)
            return None
        since = stuck.setdefault(j.name, time.monotonic())
        if time.monotonic() - since < resource_wait_s:
            return None
        return (f"waited {resource_wait_s:.0f}s: {why}, which no live node offers "
                f"({_describe(now)}: {now.nodes}); a node was lost? restart it (or lower the "
                "request) and rerun the same command to resume")

    update()
    total = len(jobs)
    with tqdm(total=total, initial=len(outcomes), unit="job", desc="jobs",
              disable=not progress) as bar:
        while queue or running:
            stop = watch() if watch is not None else None
            if stop is not None:  # finished jobs keep their records; a rerun resumes
                for ref in running:
                    ray.cancel(ref, force=True, recursive=True)
                raise GraphAborted(stop)
            # The bar's own clock is the elapsed time; its counts say what is left.
            bar.set_postfix_str(f"done {len(outcomes)}, running {len(running)}, "
                                f"pending {len(queue) + len(reports)}", refresh=False)
            now, changed = live.current()
            if changed:
                cap_res, capacity = train_capacity(jobs, now, max_concurrent_train)
                tqdm.write(f"[repro] the cluster changed: now {_describe(now)}; trainings "
                           f"are admitted against it ({capacity:g} {cap_res})")
            if changed or time.monotonic() >= next_release:
                next_release = time.monotonic() + release_every
                for pg in release_orphaned_placement_groups():
                    tqdm.write(f"[repro] gave back placement group {pg}: the trainer that "
                               "made it is dead (its node was lost)")
            for ref, j in list(running.items()):  # started, but stuck on a lost node's share
                err = waited_too_long(j, now)
                if err is None:
                    continue
                ray.cancel(ref, force=True, recursive=True)
                running.pop(ref)
                values.pop(j.name, None)
                if j.kind == "train":
                    used -= need(j)
                outcomes[j.name] = Outcome(j.name, j.kind, "failed",
                                           seconds=time.time() - started[j.name],
                                           log=str(lay.job_log(j.name)), error=err)
                bar.update(1)
                update()
                tqdm.write(f"[repro] {j.name}: failed - {err}")
            progressed = False
            for j in list(queue):
                b = blocked_by(j)
                if b is not None:
                    outcomes[j.name] = Outcome(j.name, j.kind, "blocked", log=str(
                        lay.job_log(j.name)), error=f"{b} failed")
                    queue.remove(j)
                    bar.update(1)
                    progressed = True
                    continue
                if not dep_ready(j):
                    continue
                err = waited_too_long(j, now)
                if err is not None:
                    outcomes[j.name] = Outcome(j.name, j.kind, "failed", error=err,
                                               log=str(lay.job_log(j.name)))
                    queue.remove(j)
                    bar.update(1)
                    update()
                    tqdm.write(f"[repro] {j.name}: failed - {err}")
                    progressed = True
                    continue
                if j.name in stuck:  # it would wait inside Ray for what no node has
                    continue
                if j.kind == "train":
                    # a trainer starts only once its data exists and there is room for it
                    if any(isinstance(values[d], _RefResult) for d in j.deps):
                        continue
                    if used > 0 and used + need(j) > capacity + 1e-9:
                        continue
                submit(j)
                queue.remove(j)
                progressed = True
            if not running:
                if stuck and any(j.name in stuck for j in queue):
                    time.sleep(min(2.0, live.every))  # waiting for a node to come back
                    continue
                if not progressed and queue:  # nothing can start: a dependency never ran
                    for j in queue:
                        outcomes[j.name] = Outcome(j.name, j.kind, "blocked",
                                                   error="dependencies did not run")
                        bar.update(1)
                    queue = []
                continue
            ready, _ = ray.wait(list(running), num_returns=1, timeout=2.0)
            for ref in ready:
                j = running.pop(ref)
                if j.kind == "train":
                    used -= need(j)
                secs = time.time() - started[j.name]  # incl. waiting for its inputs
                try:
                    rec = ray.get(ref)
                    secs = float(rec["seconds"])
                except Exception as e:  # noqa: BLE001 - any failure of the job's task
                    dep = blocked_by(j)
                    outcomes[j.name] = Outcome(
                        j.name, j.kind, "blocked" if dep else "failed", seconds=secs,
                        log=str(lay.job_log(j.name)),
                        error=f"{dep} failed" if dep else _one_line(e))
                    values.pop(j.name, None)
                else:
                    values[j.name] = rec["result"]
                    outcomes[j.name] = Outcome(j.name, j.kind, "done", seconds=secs,
                                               node=rec["node"], log=str(lay.job_log(j.name)),
                                               result=rec["result"])
                bar.update(1)
                update()
                o = outcomes[j.name]
                tqdm.write(f"[repro] {j.name}: {o.state} ({secs:.0f}s)"
                           + (f" - {o.error}" if o.error else ""))
        for j in reports:  # last, with whatever finished
            t0 = time.time()
            ref = remote.options(num_cpus=j.resources.get("CPU", 1.0), max_retries=retries,
                                 retry_exceptions=True, name=f"job:{j.name}"
                                 ).remote(j, spec, [])
            try:
                rec = ray.get(ref)
                outcomes[j.name] = Outcome(j.name, j.kind, "done", time.time() - t0,
                                           rec["node"], str(lay.job_log(j.name)),
                                           result=rec["result"])
            except Exception as e:  # noqa: BLE001
                outcomes[j.name] = Outcome(j.name, j.kind, "failed", time.time() - t0,
                                           log=str(lay.job_log(j.name)), error=_one_line(e))
            bar.update(1)
            update()
    return [outcomes[j.name] for j in jobs if j.name in outcomes]


class _RefResult:
    """A dependency's value while it runs: the ObjectRef Ray resolves for the dependent."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref


def _one_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None) or e
    text = f"{type(cause).__name__}: {cause}".splitlines()
    return text[0][:300] if text else type(e).__name__
