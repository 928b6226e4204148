"""The reproduction's driver: build the graph, check it fits the cluster, run it, report.

    run(cfg, out=..., plan_only=False)     (what `pipelines/full_repro.py` calls)
    plan(cfg, out=..., cluster_file=..., calibration=...)   (--plan: the jobs and their cost)

On a cluster of several nodes the output folder must be one filesystem every node sees:
the driver writes a marker and a task pinned to each node reads it back, and a folder
some node cannot see is refused before anything runs (`--out /shared/...`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtdiff import tracking
from mtdiff.config import Config
from mtdiff.data.io import atomic_write_json
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.clusters import load_cluster
from mtdiff.experiment.cost import Estimate, estimate, format_estimate, human_s
from mtdiff.experiment.grid import build_jobs
from mtdiff.experiment.jobs import Job, done_result
from mtdiff.experiment.rates import (
    default_calibration,
    load_calibration,
    measured_elsewhere,
    precision_unpriced,
    this_machine,
)
from mtdiff.layout import Layout
from mtdiff.runtime import alive_nodes, init_ray
from mtdiff.tracking.server import TrackingError, check_reachable
from mtdiff.tracking.ui import runs_page_url


def tracking_watch(uri: str, retry_s: float, every: float = 10.0
                   ) -> Callable[[], str | None] | None:
    """For an http(s) tracking server: a check, run by the graph every round, that returns
    the reason to stop once the server has not accepted a connection for `retry_s`
    seconds (its jobs' calls would fail by then anyway, one retry budget each). None for
    stores that are files."""
    if not uri.startswith(("http://", "https://")):
        return None
    state: dict[str, float | None] = {"checked": 0.0, "down_since": None}

    def watch() -> str | None:
        now = time.monotonic()
        if now - float(state["checked"] or 0.0) < every:
            return None
        state["checked"] = now
        try:
            check_reachable(uri, timeout_s=5.0)
        except TrackingError:
            state["down_since"] = state["down_since"] or now
            if now - float(state["down_since"]) >= retry_s:
                return (f"the tracking server {uri} has not answered for {retry_s:.0f}s "
                        "(tracking.retry_s); the graph stopped, finished jobs are kept; "
                        "start the server and rerun the same command to resume")
        else:
            if state["down_since"] is not None:
                print(f"[repro] the tracking server {uri} answers again", flush=True)
            state["down_since"] = None
        return None

    return watch


class TrackingDownError(RuntimeError):
    """The tracking server stopped answering for longer than its retry budget."""


class GraphError(ValueError):
    """The graph cannot run here (a job no node can host, an output folder some node
    cannot see); the message names the problem and the fix."""


def plan_rows(jobs: list[Job], out: str | Path, est: Estimate | None = None
              ) -> list[dict[str, Any]]:
    """The --plan view: each job's description and state ("done" / "pending"), and with
    an estimate its cost: ``estimated_s`` (wall seconds alone on the cluster's resources,
    None where it cannot run) and ``cost`` (its place in the simulated schedule, the
    core- and GPU-hours it reserves, what it counted)."""
    lay = Layout.at(out)
    rows = [{**j.describe(), "state": "done" if done_result(j, lay.job_record(j.name))
             is not None else "pending"} for j in jobs]
    for r in rows if est is not None else []:
        c = est.jobs[r["name"]]
        r["estimated_s"] = None if c.seconds is None else round(c.seconds, 2)
        r["cost"] = {"start_s": c.start_s, "end_s": c.end_s,
                     "core_hours": round(c.cpu_s / 3600, 5),
                     "gpu_hours": round(c.gpu_s / 3600, 5), **c.detail,
                     **({"problem": c.problem} if c.problem else {})}
    return rows


def format_plan(rows: list[dict[str, Any]]) -> str:
    """One line per job: state, name, resources, dependencies (and its estimated time
    when the rows carry one)."""
    lines = []
    for r in rows:
        res = ", ".join(f"{k}={v:g}" for k, v in r["resources"].items() if k != "inner")
        inner = r["resources"].get("inner")
        if inner:
            res += (" + " if res else "") + "inner(" + ", ".join(
                f"{k}={v:g}" for k, v in inner.items() if v) + ")"
        deps = ", ".join(r["deps"]) if len(r["deps"]) <= 3 else \
            f"{', '.join(r['deps'][:2])}, ... ({len(r['deps'])} jobs)"
        est = f" ~{human_s(r['estimated_s'])}" if "estimated_s" in r else ""
        lines.append(f"{r['state']:<8} {r['name']:<52} [{res or 'CPU=0'}]{est}  "
                     f"<- {deps or '-'}")
    n_done = sum(r["state"] == "done" for r in rows)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    lines.append(f"{len(rows)} jobs ({', '.join(f'{v} {k}' for k, v in kinds.items())}); "
                 f"{n_done} done, {len(rows) - n_done} pending")
    return "\n".join(lines)


def check_fits(jobs: list[Job], cluster: ClusterInfo) -> None:
    """Every job's task, and every worker / fanned-out task it starts, fits on some node."""
    for j in jobs:
        for what, need in j.bundles().items():
            if need and not cluster.fits(need):
                raise GraphError(
                    f"job {j.name}: {what} needs {need}, which no node of the cluster offers "
                    f"(nodes: {cluster.nodes}); lower the request (e.g. --set "
                    "train.cpus_per_worker=1) or add a larger node")


def check_not_job_copy(out: str | Path) -> None:
    """Refuse a relative output folder in a driver started by `ray job submit
    --working-dir`: it would resolve inside the job's private copy of the working
    directory, which no other node sees and Ray deletes after the job."""
    import os

    cwd = Path(os.getcwd())
    if not Path(out).is_absolute() and "runtime_resources" in cwd.parts:
        raise GraphError(f"--out {out} is relative, and this driver runs in the job's own "
                         f"copy of the working directory ({cwd}), which other nodes do not see "
                         "and Ray deletes after the job; give an absolute folder on a "
                         "filesystem every node mounts, e.g. --out /shared/runs/repro")


def check_shared(out: Path, nodes: list[dict[str, Any]]) -> None:
    """Refuse an output folder that some node cannot see (module docstring)."""
    if len(nodes) < 2:
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    marker = out / f".mtdiff-shared-{token}"
    marker.write_text(token)

    def read(path: str) -> str:
        p = Path(path)
        return p.read_text() if p.exists() else ""

    remote = ray.remote(num_cpus=0)(read)
    try:
        refs = {n["id"]: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["id"], soft=False)).remote(str(marker)) for n in nodes}
        blind = [f"{nid[:8]} ({n['ip']})" for n in nodes for nid in [n["id"]]
                 if ray.get(refs[nid], timeout=120) != token]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise GraphError(f"the output folder {out} is not visible from node(s) "
                         f"{', '.join(blind)}: every node writes its jobs' outputs there; "
                         "use a folder on a filesystem all nodes mount (--out /shared/...)")


def _print_outcomes(outcomes: list[Any]) -> None:
    print(f"\n{'job':<52} {'state':<8} {'seconds':>8}  node")
    for o in outcomes:
        print(f"{o.name:<52} {o.state:<8} {o.seconds:>8.1f}  {o.node[:12]}")
    bad = [o for o in outcomes if o.state in ("failed", "blocked")]
    for o in bad:
        print(f"{o.state.upper()}: {o.name}: {o.error}" + (f" (log: {o.log})" if
                                                           o.state == "failed" else ""))


def plan(cfg: Config, *, out: str | Path, plan_json: bool = False,
         cluster_file: str | Path | None = None,
         calibration: str | Path | None = None) -> int:
    """Print the job graph and its cost (`mtdiff.experiment.cost`) on the cluster it sees,
    or the one `cluster_file` describes (`mtdiff.experiment.clusters`), priced by
    `calibration` (default: the shipped file of the cluster's node kind)."""
    import os

    lay = Layout.at(out)
    here = None  # this machine's fingerprint, where the plan prices this machine
    if cluster_file is not None:
        cluster = load_cluster(cluster_file)
    elif os.environ.get("RAY_ADDRESS") not in (None, "", "local"):
        init_ray()
        cluster = ClusterInfo.from_ray()
    else:  # describe this machine without starting Ray
        cluster = ClusterInfo.local()
        here = this_machine()
    cal = load_calibration(calibration) if calibration is not None else \
        default_calibration(cluster.gpus > 0, here)
    jobs = build_jobs(cfg, str(lay.out), cluster)
    est = estimate(jobs, cluster, cal)
    rows = plan_rows(jobs, lay.out, est)
    notes = [precision_unpriced(cal, cfg.train.bf16, cfg.train.tf32),
             measured_elsewhere(cal, here) if here is not None else None]
    print(json.dumps(rows, indent=1) if plan_json else
          format_plan(rows) + "\n" + format_estimate(est)
          + "".join(f"\n{n}" for n in notes if n))
    return 0


def run(cfg: Config, *, out: str | Path, track: bool = True, plan_only: bool = False,
        plan_json: bool = False, progress: bool = True) -> int:
    """Plan (and unless `plan_only`, run) the reproduction; returns the exit code: 0 when
    every job finished, 1 when some failed (each named with its log)."""
    check_not_job_copy(out)
    lay = Layout.at(out)
    if plan_only:
        return plan(cfg, out=out, plan_json=plan_json)
    with tracking.claim_output(lay.out):
        if track:  # before Ray starts: its workers take the retry budget from here
            tracking.retry_budget(cfg.tracking.retry_s)
        init_ray()
        cluster = ClusterInfo.from_ray()
        jobs = build_jobs(cfg, str(lay.out), cluster)
        check_fits(jobs, cluster)
        check_shared(lay.out, alive_nodes())
        version = tracking.code_version()
        mlflow_spec = None
        if track:
            mlflow_spec = _start_parent(cfg, lay.out, len(jobs), version)
        t0 = time.time()
        ok = interrupted = tracking_down = False
        try:
            # (pulls in torch: imported on use)
            from mtdiff.experiment.runner import GraphAborted, run_graph

            outcomes = run_graph(jobs, out=lay.out, cluster=cluster, mlflow_spec=mlflow_spec,
                                 code_version=version, retries=cfg.experiment.retries,
                                 max_concurrent_train=cfg.experiment.max_concurrent_train,
                                 resource_wait_s=cfg.experiment.resource_wait_s,
                                 progress=progress, on_update=lambda done: _write_graph(
                                     lay, jobs, done, time.time() - t0),
                                 watch=tracking_watch(cfg.tracking.resolved_uri(),
                                                      cfg.tracking.retry_s) if track else None)
            ok = all(o.state in ("done", "skipped") for o in outcomes)
            if track:  # every job has ended: a run still open lost its process (a node died;
                # Ray ran the job again elsewhere under a new run)
                tracking.close_stale_runs(cfg, lay.out, exclude=(mlflow_spec["parent_id"],))
            _write_graph(lay, jobs, outcomes, time.time() - t0)
            _print_outcomes(outcomes)
            if track:
                _log_summary(lay, outcomes, time.time() - t0)
        except KeyboardInterrupt:
            interrupted = True
            raise
        except GraphAborted as e:
            # The server cannot take the runs' ends now: they stay RUNNING there until the
            # rerun, which closes them (`tracking.close_stale_runs`) before it starts.
            tracking_down = True
            import ray

            ray.shutdown()
            tracking.abandon_runs()  # the one line below stays the last
            raise TrackingDownError(str(e)) from None
        finally:
            if track and not tracking_down:
                tracking.end_parent(ok, interrupted=interrupted)
            if track and interrupted:  # the jobs' tasks end with this driver: so do their runs
                import ray

                ray.shutdown()
                tracking.close_stale_runs(cfg, lay.out)
    states = [o.state for o in outcomes]
    print(f"[repro] {len(outcomes)} jobs: {states.count('done')} done, "
          f"{states.count('skipped')} skipped (done earlier), {states.count('failed')} failed, "
          f"{states.count('blocked')} blocked, in {time.time() - t0:.0f}s; outputs under "
          f"{lay.out}")
    if mlflow_spec:
        url = runs_page_url(cfg.tracking.resolved_uri(), mlflow_spec["experiment_id"])
        print(f"[repro] runs in MLflow: {url or cfg.tracking.resolved_uri()}"
              + ("" if url else " (mlflow ui --backend-store-uri <that>; pick 'Model training')"))
    return 0 if ok else 1


def _start_parent(cfg: Config, out: Path, n_jobs: int, version: str) -> dict[str, Any]:

    tracking.setup(cfg)
    tracking.close_stale_runs(cfg, out)
    return tracking.start_parent(cfg, name=tracking.parent_name(cfg.preset, cfg), output=out,
                                 code_version=version, jobs=n_jobs)


def _write_graph(lay: Layout, jobs: list[Job], outcomes: list[Any], seconds: float) -> None:

    by = {o.name: o for o in outcomes}
    atomic_write_json(lay.graph, {"seconds": round(seconds, 1), "jobs": [
        {**j.describe(), "state": by[j.name].state if j.name in by else "pending",
         "seconds": round(by[j.name].seconds, 1) if j.name in by else None,
         "node": by[j.name].node if j.name in by else "",
         "record": str(lay.job_record(j.name)), "log": str(lay.job_log(j.name)),
         "error": by[j.name].error if j.name in by else ""} for j in jobs]})


def _log_summary(lay: Layout, outcomes: list[Any], seconds: float) -> None:

    tracking.log_table([{"job": o.name, "kind": o.kind, "state": o.state,
                         "seconds": round(o.seconds, 1), "node": o.node, "error": o.error}
                        for o in outcomes], "jobs.json")
    tracking.log_artifact(lay.graph)
    states = [o.state for o in outcomes]
    tracking.log_metrics({"wall_seconds": seconds,
                          "job_seconds_sum": sum(o.seconds for o in outcomes),
                          **{f"jobs_{s}": float(states.count(s))
                             for s in ("done", "skipped", "failed", "blocked")}})
