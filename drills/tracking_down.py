"""Tracking-server drill: the MLflow server a smoke reproduction logs to stops mid-run.

    python drills/tracking_down.py --work /tmp/tracking-down [--outage 60] [--repeat 3]
        [--never] [--reference DIR]

1. An `mlflow server` on 127.0.0.1 (its own sqlite store and artifact folder), started by
   the drill in its own session.
2. `python pipelines/full_repro.py --preset smoke --out <abs>` against it
   (MLFLOW_TRACKING_URI=http://127.0.0.1:PORT, a local Ray).
3. Once a training job is running (its log exists, its record does not), the server is
   stopped (SIGTERM to its session, SIGKILL after 5 s) for `--outage` seconds, then
   started again on the same store.
4. Expected: exit 0; outputs equal an uninterrupted reference run's
   (`kill_drills.fingerprint`); no MLflow run left RUNNING, no job with two FINISHED runs;
   and nothing logged during the outage lost: every job run has, per metric (system
   metrics aside), as many points as the reference run of the same job (`--reference`'s
   MLflow store; it is made, with a sqlite store, when not given).

With `--never` the server is not started again: the run must end with exit 1 within the
retry budget (`--set tracking.retry_s=60` is passed) plus a margin, its last line one line
naming the server, and the finished jobs' records intact.

Prints one line per drill; exits non-zero if any failed. Only processes this script
started are stopped, by their session.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "drills"))

from kill_drills import fingerprint  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on the drill's store; returns once it accepts connections."""
    log = open(work / "server.log", "ab")  # noqa: SIM115 - the server writes to it
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
         "--artifacts-destination", str(work / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=work)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"mlflow server did not start on port {port}; see {work / 'server.log'}")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def training_running(out: Path) -> str | None:
    """A training job that has started (log) and not finished (record)."""
    logs = out / "logs"
    if not logs.exists():
        return None
    for log in sorted(logs.glob("train__*.log")):
        if not (out / "jobs" / f"{log.stem}.json").exists():
            return log.stem.replace("__", "/")
    return None


def metric_counts(uri: str, out: Path) -> dict[str, Counter]:
    """job -> {metric key: points}, system metrics aside, for the runs of `out`."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mtdiff")
    counts: dict[str, Counter] = {}
    for run in client.search_runs([exp.experiment_id], max_results=1000,
                                  filter_string="attributes.status = 'FINISHED'"):
        job = run.data.tags.get("job")
        if not job or job == "report" or run.data.tags.get("output") != str(out):
            continue
        c = counts.setdefault(job, Counter())
        for key in run.data.metrics:
            if key.startswith("system/") or "seconds" in key or key.endswith("_per_s"):
                continue  # sampled by time, or timings: differ between any two runs
            c[key] = len(client.get_metric_history(run.info.run_id, key))
    return counts


def reference(work: Path) -> tuple[Path, str]:
    out = work / "reference" / "repro"
    uri = f"sqlite:///{work / 'reference' / 'mlflow.db'}"
    if not (out / "report" / "results.json").exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "RAY_ADDRESS": "local", "MLFLOW_TRACKING_URI": uri}
        with open(out.parent / "log.txt", "wb") as f:
            subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset",
                            "smoke", "--out", str(out)], env=env, check=True, cwd=out.parent,
                           stdout=f, stderr=subprocess.STDOUT)
    return out, uri


def drill(work: Path, outage: float, never: bool, ref: tuple[Path, str] | None,
          timeout: float) -> bool:
    """One drill (module docstring); prints its line."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    out, log = work / "repro", work / "repro.log"
    env = {**os.environ, "RAY_ADDRESS": "local", "MLFLOW_TRACKING_URI": uri}
    cmd = [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
           "--out", str(out)] + (["--set", "tracking.retry_s=60"] if never else [])
    server = start_server(work, port)
    t0 = time.time()
    job, stopped_at, restarted_at = None, None, None
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while proc.poll() is None and time.time() - t0 < timeout:
                if job is None and (job := training_running(out)) is not None:
                    stop_server(server)
                    stopped_at = time.time() - t0
                if stopped_at is not None and restarted_at is None and not never and \
                        time.time() - t0 - stopped_at >= outage:
                    server = start_server(work, port)
                    restarted_at = time.time() - t0
                time.sleep(0.5)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"TIMEOUT after {timeout:.0f}s; log {log}")
                return False
        finally:
            rc, secs = proc.returncode, time.time() - t0
    try:
        text = log.read_text(errors="replace").strip().splitlines()
        if never:
            last = text[-1] if text else ""
            ok = (rc == 1 and last.startswith("error: the tracking server")
                  and stopped_at is not None and secs - stopped_at < 60 + 120)
            print(f"never back: stopped the server at {stopped_at or 0:.0f}s while {job} "
                  f"trained; exit {rc} {secs - (stopped_at or 0):.0f}s later; last line: "
                  f"{last[:200]!r}; records kept: {len(list((out / 'jobs').glob('*.json')))} "
                  f"-> {'ok' if ok else 'FAILED'}", flush=True)
            return ok
        same = ref is not None and fingerprint(out) == fingerprint(ref[0])
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("mtdiff")
        left = [r.info.run_name for r in client.search_runs(
            [exp.experiment_id], filter_string="attributes.status = 'RUNNING'")]
        twice = finished_twice_http(client, exp.experiment_id)
        lost = []
        if ref is not None:
            mine, theirs = metric_counts(uri, out), metric_counts(ref[1], ref[0])
            lost = sorted(f"{j}:{k} {mine.get(j, {}).get(k, 0)}/{n}"
                          for j, c in theirs.items() for k, n in c.items()
                          if mine.get(j, {}).get(k, 0) != n)
        ok = rc == 0 and same and not left and not twice and not lost
        print(f"outage {outage:.0f}s: stopped at {stopped_at or 0:.0f}s while {job} trained, "
              f"back at {restarted_at or 0:.0f}s; exit {rc} in {secs:.0f}s; outputs "
              f"{'equal' if same else 'DIFFER'}; RUNNING runs {len(left)}; done twice "
              f"{twice or 'none'}; metric points differing from the reference "
              f"{lost[:5] or 'none'} -> {'ok' if ok else 'FAILED'}", flush=True)
        return ok
    finally:
        stop_server(server)


def finished_twice_http(client, experiment_id: str) -> list[str]:
    n = Counter(r.data.tags.get("job") for r in client.search_runs(
        [experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=5000)
        if r.data.tags.get("job") not in (None, "report"))
    return sorted(j for j, c in n.items() if c > 1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/mtdiff-tracking-down")
    p.add_argument("--outage", type=float, default=60.0, help="seconds the server is down")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--never", action="store_true", help="do not start the server again")
    p.add_argument("--reference", help="an uninterrupted smoke reproduction's --out; its "
                   "MLflow store must be the sqlite file mlflow.db beside it")
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ref = None
    if not args.never:
        if args.reference:
            r = Path(args.reference).resolve()
            ref = (r, f"sqlite:///{r.parent / 'mlflow.db'}")
        else:
            ref = reference(work)
    results = [drill(work / f"{'never' if args.never else 'outage'}-{i}", args.outage,
                     args.never, ref, args.timeout) for i in range(args.repeat)]
    print(f"{sum(results)} of {len(results)} drills passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
