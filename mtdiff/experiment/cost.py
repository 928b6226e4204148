"""The cost of a job graph before it runs: each job's seconds, the graph's wall time on a
cluster, its GPU-hours and CPU core-hours.

    estimate(jobs, cluster, calibration) -> Estimate     (what `--plan` prints)
    simulate(graph, nodes) -> Schedule                    (the scheduler alone)

The wall time is a discrete-event simulation of the graph's schedule, not a sum: a job
starts when its dependencies have finished; its pieces (`workload.Task`: its own Ray task,
a trainer's workers, the tasks it fans out) wait in one queue, in the order they were
submitted, and start as soon as some node has their CPUs and GPUs free (a later piece
that fits goes ahead of an earlier one that does not, as Ray's scheduler does). Trainings
are admitted as the runner admits them (`runner.train_capacity`: only while the trainers
already running leave room for one more). A piece that no node can ever host makes its
job unschedulable, and the jobs after it blocked; the wall time is then unknown (None).

A job's ``estimated_s`` is its wall time alone on the cluster (its pieces spread over all
nodes); its place in the whole graph's schedule is ``start_s`` / ``end_s``.
GPU-hours and core-hours count what the pieces reserve while they run, as a bill would.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mtdiff.experiment.jobs import Job
from mtdiff.experiment.rates import Calibration
from mtdiff.experiment.workload import (
    Task,
    Work,
    collect_work,
    distill_work,
    evaluate_work,
    reference_work,
    report_work,
    train_work,
)
from mtdiff.experiment.workload_offline import (
    offline_work,
    quality_work,
    subset_work,
    synthesize_work,
)

if TYPE_CHECKING:
    from mtdiff.experiment.cells import ClusterInfo

RESOURCES = ("CPU", "GPU")
EPS = 1e-9


WORK = {"collect": collect_work, "reference": reference_work, "train": train_work,
        "distill": distill_work, "evaluate": evaluate_work, "synthesize": synthesize_work,
        "offline": offline_work, "quality": quality_work, "subset": subset_work,
        "report": report_work}


def job_work(job: Job, cal: Calibration) -> Work:
    """The job's `Work` under calibration `cal` (module docstring)."""
    if job.kind not in WORK:
        raise ValueError(f"job {job.name}: no cost model for kind {job.kind!r} (add one to "
                         "mtdiff.experiment.cost.WORK)")
    return WORK[job.kind](job, cal)



@dataclass(frozen=True)
class SimJob:
    """A job as the simulator sees it: name, kind, dependencies, its work; `gate` > 0 for
    a training (how much of the training capacity it takes)."""

    name: str
    kind: str
    deps: tuple[str, ...]
    work: Work
    gate: float = 0.0


@dataclass
class Schedule:
    """What `simulate` returns: per job its start and end (seconds from the graph's start),
    the reason for each job that could not run, and the makespan (None when some job
    could not run)."""

    start: dict[str, float] = field(default_factory=dict)
    end: dict[str, float] = field(default_factory=dict)
    unschedulable: dict[str, str] = field(default_factory=dict)
    makespan: float | None = 0.0


def _fits(free: dict[str, float], need: dict[str, float]) -> bool:
    return all(free.get(k, 0.0) + EPS >= need.get(k, 0.0) for k in RESOURCES)


def _place(free: list[dict[str, float]], task: Task) -> list[int] | None:
    """Nodes for each of the task's bundles (first fit, spanning nodes), or None."""
    trial = [dict(n) for n in free]
    where = []
    for _ in range(task.bundles):
        i = next((i for i, n in enumerate(trial) if _fits(n, task.need)), None)
        if i is None:
            return None
        for k in RESOURCES:
            trial[i][k] = trial[i].get(k, 0.0) - task.need.get(k, 0.0)
        where.append(i)
    return where


def _never_fits(nodes: list[dict[str, float]], task: Task) -> str | None:
    if _place(nodes, task) is None:
        need = {k: v for k, v in task.need.items() if v}
        return (f"needs {task.bundles} x {need}" if task.bundles > 1 else f"needs {need}") + \
            f", which the cluster's nodes {nodes} cannot offer"
    return None


def simulate(graph: Sequence[SimJob], nodes: list[dict[str, float]], *,
             train_capacity: float | None = None) -> Schedule:
    """The schedule of `graph` (jobs in dependency order) on `nodes` (per node: CPU, GPU).

    `train_capacity`: how much `gate` the trainings running at once may take together
    (one always may start); None: no limit beyond the resources."""
    nodes = [{k: float(n.get(k, 0.0)) for k in RESOURCES} for n in nodes]
    by = {j.name: j for j in graph}
    sched = Schedule()
    for j in graph:  # what can never run, and what waits for it
        bad = next((r for t in j.work.tasks if (r := _never_fits(nodes, t))), None)
        dep = next((d for d in j.deps if d in sched.unschedulable or d not in by), None)
        if bad:
            sched.unschedulable[j.name] = bad
        elif dep is not None:
            sched.unschedulable[j.name] = f"waits for {dep}, which cannot run" \
                if dep in by else f"depends on {dep}, which is not in the graph"
    free = [dict(n) for n in nodes]
    events: list[tuple[float, int, str, Any]] = []
    seq = 0

    def push(t: float, what: str, payload: Any) -> None:
        nonlocal seq
        heapq.heappush(events, (t, seq, what, payload))
        seq += 1

    # Waiting tasks, (submission number, job, task index), one FIFO per shape (need and
    # bundles): a task that does not fit means no later one of its shape fits either, so
    # a dispatch looks at each shape's first task only, in submission order.
    queues: dict[tuple[Any, ...], deque[tuple[int, str, int]]] = {}
    submitted = 0
    left = {j.name: len(j.work.tasks) for j in graph}
    done_tasks: dict[str, set[int]] = {j.name: set() for j in graph}
    queued: dict[str, set[int]] = {j.name: set() for j in graph}
    waiting_deps = {j.name: {d for d in j.deps} for j in graph
                    if j.name not in sched.unschedulable}
    dependents: dict[str, list[str]] = {}
    for j in graph:
        for d in j.deps:
            dependents.setdefault(d, []).append(j.name)
    gated: list[str] = []  # trainings ready, waiting for training capacity
    gate_used = 0.0
    running_gated = 0
    placed: dict[tuple[str, int], list[int]] = {}

    def enqueue_ready_tasks(name: str) -> None:
        nonlocal submitted
        work = by[name].work
        for i, t in enumerate(work.tasks):
            if i not in queued[name] and all(a in done_tasks[name] for a in t.after):
                queued[name].add(i)
                shape = (tuple(sorted(t.need.items())), t.bundles)
                queues.setdefault(shape, deque()).append((submitted, name, i))
                submitted += 1

    def start_job(name: str, t: float) -> None:
        nonlocal gate_used, running_gated
        sched.start[name] = t
        if by[name].gate:
            gate_used += by[name].gate
            running_gated += 1
        push(t + by[name].work.lead_s, "lead", name)

    def admit(name: str, t: float) -> None:
        j = by[name]
        if j.gate and train_capacity is not None and running_gated > 0 \
                and gate_used + j.gate > train_capacity + EPS:
            gated.append(name)
        else:
            start_job(name, t)

    def dispatch(t: float) -> None:
        stuck: set[tuple[Any, ...]] = set()
        while True:
            heads = [(q[0][0], shape) for shape, q in queues.items() if q and shape not in stuck]
            if not heads:
                return
            _, shape = min(heads)
            _, name, i = queues[shape][0]
            task = by[name].work.tasks[i]
            where = _place(free, task)
            if where is None:
                stuck.add(shape)
                continue
            queues[shape].popleft()
            for n in where:
                for k in RESOURCES:
                    free[n][k] -= task.need.get(k, 0.0)
            placed[(name, i)] = where
            push(t + task.seconds, "task", (name, i))

    def finish_job(name: str, t: float) -> None:
        nonlocal gate_used, running_gated
        sched.end[name] = t
        if by[name].gate:
            gate_used -= by[name].gate
            running_gated -= 1
            while gated and (running_gated == 0 or gate_used + by[gated[0]].gate
                             <= (train_capacity or math.inf) + EPS):
                start_job(gated.pop(0), t)
        for d in dependents.get(name, []):
            if d in waiting_deps:
                waiting_deps[d].discard(name)
                if not waiting_deps[d]:
                    del waiting_deps[d]
                    admit(d, t)

    for j in graph:
        if j.name in waiting_deps and not waiting_deps[j.name]:
            del waiting_deps[j.name]
            admit(j.name, 0.0)
    now = 0.0
    while events:
        now = events[0][0]
        while events and events[0][0] <= now + EPS:
            _, _, what, payload = heapq.heappop(events)
            if what == "lead":
                enqueue_ready_tasks(payload)
                if not by[payload].work.tasks:
                    push(now + by[payload].work.tail_s, "end", payload)
            elif what == "task":
                name, i = payload
                task = by[name].work.tasks[i]
                for n in placed.pop(payload):
                    for k in RESOURCES:
                        free[n][k] += task.need.get(k, 0.0)
                done_tasks[name].add(i)
                left[name] -= 1
                enqueue_ready_tasks(name)
                if left[name] == 0:
                    push(now + by[name].work.tail_s, "end", name)
            else:
                finish_job(payload, now)
        dispatch(now)
    sched.makespan = None if sched.unschedulable else max(sched.end.values(), default=0.0)
    return sched


# ----------------------------------------------------------------------------------------
# The graph's estimate
# ----------------------------------------------------------------------------------------


@dataclass
class JobCost:
    """One job's figures."""

    name: str
    kind: str
    seconds: float | None  # alone on the cluster; None when it cannot run there
    start_s: float | None
    end_s: float | None
    cpu_s: float  # CPU-seconds its pieces reserve
    gpu_s: float
    detail: dict[str, float]
    problem: str = ""


@dataclass
class Estimate:
    """`estimate`'s result: per job, the graph's wall time and totals."""

    jobs: dict[str, JobCost]
    wall_s: float | None
    nodes: list[dict[str, float]]
    calibration: str

    @property
    def core_hours(self) -> float:
        """CPU core-hours of the whole graph."""
        return sum(j.cpu_s for j in self.jobs.values()) / 3600

    @property
    def gpu_hours(self) -> float:
        """GPU-hours of the whole graph."""
        return sum(j.gpu_s for j in self.jobs.values()) / 3600

    def by_kind(self) -> dict[str, dict[str, float]]:
        """Per job kind: count, GPU-hours, core-hours, summed seconds alone."""
        out: dict[str, dict[str, float]] = {}
        for j in self.jobs.values():
            row = out.setdefault(j.kind, {"count": 0, "gpu_hours": 0.0, "core_hours": 0.0})
            row["count"] += 1
            row["gpu_hours"] += j.gpu_s / 3600
            row["core_hours"] += j.cpu_s / 3600
        return out


def _reserved(work: Work) -> tuple[float, float]:
    cpu = sum(t.need.get("CPU", 0.0) * t.bundles * t.seconds for t in work.tasks)
    gpu = sum(t.need.get("GPU", 0.0) * t.bundles * t.seconds for t in work.tasks)
    return cpu, gpu


def estimate(jobs: Sequence[Job], cluster: ClusterInfo, calibration: Calibration) -> Estimate:
    """Each job's seconds (alone on `cluster`), its place in the simulated schedule of the
    whole graph, and the graph's wall time, GPU-hours and core-hours, priced by
    `calibration` (module docstring)."""
    # (pulls in torch: imported on use)
    from mtdiff.experiment.runner import train_capacity

    res, cap = train_capacity(list(jobs), cluster, jobs[0].cfg.experiment.max_concurrent_train
                              if jobs else None)
    works = {j.name: job_work(j, calibration) for j in jobs}

    def gate(j: Job) -> float:
        if j.kind != "train":
            return 0.0
        return 1.0 if res == "count" else float(j.inner.get(res, 0.0))

    graph = [SimJob(j.name, j.kind, tuple(j.deps), works[j.name], gate(j)) for j in jobs]
    nodes = [{k: float(n.get(k, 0.0)) for k in RESOURCES} for n in cluster.nodes]
    whole = simulate(graph, nodes, train_capacity=cap)
    out: dict[str, JobCost] = {}
    for g in graph:
        alone = simulate([SimJob(g.name, g.kind, (), g.work)], nodes)
        cpu, gpu = _reserved(g.work)
        out[g.name] = JobCost(g.name, g.kind, alone.makespan, whole.start.get(g.name),
                              whole.end.get(g.name), cpu, gpu, dict(g.work.detail),
                              whole.unschedulable.get(g.name, ""))
    return Estimate(out, whole.makespan, nodes, calibration.node)


# ----------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------


def human_s(s: float | None) -> str:
    """Seconds as '42 s', '12.5 min', '3.2 h' or '1.5 days'."""
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.2f} days"


def describe_nodes(nodes: list[dict[str, float]]) -> str:
    """'2 x {CPU 16, GPU 1} + 1 x {CPU 8}'-style summary of a cluster's nodes."""
    counts: dict[tuple[float, float], int] = {}
    for n in nodes:
        key = (n.get("CPU", 0.0), n.get("GPU", 0.0))
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{c} x {{CPU {cpu:g}" + (f", GPU {gpu:g}" if gpu else "") + "}"
             for (cpu, gpu), c in sorted(counts.items(), key=lambda kv: (-kv[0][1], -kv[0][0]))]
    return " + ".join(parts) or "no nodes"


def format_estimate(est: Estimate) -> str:
    """The text `--plan` ends with: the wall time on the cluster, the totals, a cost
    table per job kind, and the jobs that cannot run there."""
    lines = [f"cost (calibration {est.calibration}; cluster {describe_nodes(est.nodes)}):"]
    bad = {n: j.problem for n, j in est.jobs.items() if j.problem}
    lines.append(f"  predicted wall time of the whole graph: {human_s(est.wall_s)}"
                 + (f" (not computable: {len(bad)} job(s) cannot run on this cluster)"
                    if bad else ""))
    lines.append(f"  total: {est.gpu_hours:,.1f} GPU-hours, {est.core_hours:,.1f} CPU "
                 "core-hours (what the jobs reserve while they run)")
    lines.append(f"  {'kind':<12}{'count':>6}{'GPU-hours':>12}{'core-hours':>12}")
    for kind, row in est.by_kind().items():
        lines.append(f"  {kind:<12}{int(row['count']):>6}{row['gpu_hours']:>12,.2f}"
                     f"{row['core_hours']:>12,.2f}")
    for n, why in list(bad.items())[:5]:
        lines.append(f"  cannot run: {n}: {why}")
    if len(bad) > 5:
        lines.append(f"  ... and {len(bad) - 5} more")
    return "\n".join(lines)
