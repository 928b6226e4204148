"""Lost-node drill: a worker node of a two-node cluster dies while a submitted smoke
reproduction runs on it; the run must finish as if nothing happened.

    python drills/lost_node.py --work /tmp/lost-node --moments collect train evaluate \\
        [--repeat 1] [--seed 0] [--reference DIR]

The cluster is the guide's two nodes on one machine: a head and a worker, 1 CPU each, each
with its own --temp-dir, token auth on (`RAY_AUTH_MODE=token`). For each moment (the kind
of job that must be running on the worker node when it dies):

1. `ray job submit --working-dir . -- python pipelines/full_repro.py --preset smoke --out
   <abs>` starts the graph.
2. As soon as a job of that kind has an MLflow run RUNNING on the worker node (its
   `ray_node_id` tag), wait a few seconds (seeded), then SIGKILL every process whose command
   line names the worker's temp dir (its raylet, object store, workers).
3. The submission must exit 0 (Ray retries the lost tasks on the head, the graph its lost
   jobs), within `--timeout`.
4. Its outputs must equal an uninterrupted reference run's (`kill_drills.fingerprint`:
   dataset rows and shard checksums, checkpoint steps, record and table keys), no MLflow
   run may be left RUNNING and no job may have two FINISHED runs.
5. The worker is started again and the same command submitted once more: every job must
   be skipped (only the report runs).

The reference is one uninterrupted local smoke reproduction (`--reference DIR` reuses one
made earlier). Prints one line per drill and exits non-zero if any failed. Only processes
this script started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "drills"))

from kill_drills import fingerprint, finished_twice, running_runs  # noqa: E402
from two_node_smoke import ray_pids  # noqa: E402

DASHBOARD = "http://127.0.0.1:8275"


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # The nodes inherit this environment (`ray start`): the job's `python` is this venv's.
    # A loaded machine registers a node slowly: `ray start` gives up after 10 s by default.
    env.update({"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "RAY_raylet_start_wait_time_s": "120"})
    return env


def start_head(tmp: Path, env: dict[str, str], cpus: int = 1) -> None:
    subprocess.run([str(BIN / "ray"), "start", "--head", "--port", "6390", "--dashboard-port",
                    "8275", "--temp-dir", str(tmp), "--dashboard-agent-listen-port", "52385",
                    "--ray-client-server-port", "23001", "--num-cpus", str(cpus),
                    "--node-ip-address", "127.0.0.1"], env=env, check=True,
                   capture_output=True, timeout=300)


def start_worker(tmp: Path, env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "ray"), "start", "--address", "127.0.0.1:6390", "--temp-dir",
                    str(tmp), "--dashboard-agent-listen-port", "52386", "--num-cpus", "1",
                    "--node-ip-address", "127.0.0.1"], env=env, check=True,
                   capture_output=True, timeout=300)


def kill_node(tmp: Path, sig: int = signal.SIGKILL) -> int:
    """Signal every process of the node whose temp dir is `tmp`; how many there were."""
    pids = ray_pids(tmp)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return len(pids)


# Ray's Unix sockets live under a node's temp dir, and a socket path may not pass 107 bytes:
# the longest a drill makes is <work>/evaluate-S-I/ray-worker/session_<date_time_us_pid>/
# sockets/plasma_store.
_SOCKET_TAIL = ("/evaluate-0-0/ray-worker/session_2026-12-07_04-24-59_871521_123456/sockets/"
                "plasma_store")


def work_dir(p: argparse.ArgumentParser, work: str) -> Path:
    """`--work` made absolute, or one `p.error` line when Ray's sockets would not fit."""
    path = Path(work).resolve()
    room = 107 - len(_SOCKET_TAIL)
    if len(str(path)) > room:
        p.error(f"--work {path} is {len(str(path))} characters; Ray's socket paths under it "
                f"would pass 107 bytes: use a folder of at most {room} characters")
    path.mkdir(parents=True, exist_ok=True)
    return path


def stop_nodes(*tmps: Path) -> None:
    """Stop the nodes whose temp dirs are `tmps`: SIGTERM, then SIGKILL what is left."""
    for tmp in tmps:
        kill_node(tmp, signal.SIGTERM)
    time.sleep(5)
    for tmp in tmps:
        kill_node(tmp)


def dump_state(path: Path, env: dict[str, str]) -> None:
    """What the cluster holds, for a run that hung: `ray status`, the placement groups, the
    live actors and the unfinished tasks (read before the nodes are stopped)."""
    cmds = [["status", "--address", "127.0.0.1:6390"],
            ["list", "placement-groups", "--address", DASHBOARD, "--detail"],
            ["list", "actors", "--address", DASHBOARD, "--filter", "state=ALIVE"],
            ["list", "tasks", "--address", DASHBOARD, "--filter", "state!=FINISHED",
             "--limit", "200"]]
    with open(path, "w") as f:
        for c in cmds:
            r = subprocess.run([str(BIN / "ray"), *c], env=env, capture_output=True, text=True,
                               timeout=120)
            f.write(f"$ ray {' '.join(c)}\n{r.stdout}{r.stderr}\n")


def worker_node_id(env: dict[str, str]) -> str:
    """The node id of the alive non-head node."""
    r = subprocess.run([str(BIN / "ray"), "list", "nodes", "--address", DASHBOARD, "--format",
                        "json", "--filter", "state=ALIVE"], env=env, capture_output=True,
                       text=True, timeout=120)
    nodes = json.loads(r.stdout)
    return next(n["node_id"] for n in nodes if not n.get("is_head_node"))


def running_on(db: Path, node: str, kind: str, out: Path) -> str | None:
    """The job of `kind` with an MLflow run RUNNING on `node` for `out`, if any."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("mtdiff")
    if exp is None:
        return None
    for r in client.search_runs([exp.experiment_id], max_results=500,
                                filter_string="attributes.status = 'RUNNING'"):
        t = r.data.tags
        if t.get("stage") == kind and t.get("ray_node_id") == node and \
                t.get("output", str(out)) == str(out):
            return t.get("job")
    return None


def submit(out: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    f = open(log, "ab")  # noqa: SIM115 - the child writes to it until it ends
    return subprocess.Popen(
        [str(BIN / "ray"), "job", "submit", "--address", DASHBOARD, "--working-dir", ".", "--",
         "python", "pipelines/full_repro.py", "--preset", "smoke", "--out", str(out)],
        cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT)


def reference(work: Path) -> Path:
    out = work / "reference" / "repro"
    if (out / "report" / "results.json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RAY_ADDRESS": "local",
           "MLFLOW_TRACKING_URI": f"sqlite:///{out.parent / 'mlflow.db'}"}
    subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
                    "--out", str(out)], env=env, check=True, cwd=out.parent,
                   stdout=open(out.parent / "log.txt", "wb"), stderr=subprocess.STDOUT)
    return out


def drill(work: Path, kind: str, ref_fp: dict, rng: random.Random, timeout: float) -> bool:
    """One drill (module docstring); prints its line."""
    head_tmp, worker_tmp = work / "ray-head", work / "ray-worker"
    db, out, log = work / "mlflow.db", work / "repro", work / "submit.log"
    env = _env(db)
    t0 = time.time()
    try:
        start_head(head_tmp, env)
        start_worker(worker_tmp, env)
        node = worker_node_id(env)
        proc = submit(out, env, log)
        job, killed_at, n = None, None, 0
        while proc.poll() is None and time.time() - t0 < timeout:
            if job is None:
                job = running_on(db, node, kind, out)
                if job is not None:
                    time.sleep(rng.uniform(2.0, 10.0))
                    killed_at = time.time() - t0
                    n = kill_node(worker_tmp)
            time.sleep(1.0)
        if proc.poll() is None:
            dump_state(work / "hung.txt", env)
            proc.kill()
            print(f"{kind}: TIMEOUT after {timeout:.0f}s (killed {job or 'nothing'}); "
                  f"log {log}, the cluster's state {work / 'hung.txt'}")
            return False
        rc, secs = proc.returncode, time.time() - t0
        if job is None:
            print(f"{kind}: no {kind} job ran on the worker node; exit {rc} in {secs:.0f}s "
                  f"(no drill)")
            return False
        same = fingerprint(out) == ref_fp
        left, twice = running_runs(db), finished_twice(db)
        # The worker again, and the same command: everything is skipped.
        start_worker(worker_tmp, env)
        again = submit(out, env, work / "resubmit.log")
        again.wait(timeout=timeout)
        text = (work / "resubmit.log").read_text(errors="replace")
        line = next((x for x in text.splitlines() if x.startswith("[repro]") and " jobs: " in x),
                    "")
        skipped = again.returncode == 0 and " 1 done" in line and " 0 failed" in line
        ok = rc == 0 and same and not left and not twice and skipped
        print(f"{kind}: killed the worker ({n} processes) at {killed_at:.0f}s while {job} ran "
              f"on it; exit {rc} in {secs:.0f}s; outputs {'equal' if same else 'DIFFER'}; "
              f"RUNNING runs {len(left)}; done twice {twice or 'none'}; resubmitted with the "
              f"worker back: {line.removeprefix('[repro] ') or 'no summary line'} -> "
              f"{'ok' if ok else 'FAILED'}", flush=True)
        return ok
    finally:
        stop_nodes(worker_tmp, head_tmp)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/lost-node")
    p.add_argument("--moments", nargs="+", default=["collect", "train", "evaluate"],
                   choices=["collect", "train", "evaluate"])
    p.add_argument("--repeat", type=int, default=1, help="drills per moment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="an uninterrupted smoke reproduction's --out to reuse")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per submission")
    args = p.parse_args()
    work = work_dir(p, args.work)
    ref = Path(args.reference).resolve() if args.reference else reference(work)
    ref_fp = fingerprint(ref)
    rng = random.Random(args.seed)
    results = []
    for i in range(args.repeat):
        for kind in args.moments:
            results.append(drill(work / f"{kind}-{args.seed}-{i}", kind, ref_fp, rng,
                                 args.timeout))
    print(f"{sum(results)} of {len(results)} drills passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
