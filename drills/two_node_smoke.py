"""A smoke reproduction on a two-node Ray cluster simulated on this machine.

    python drills/two_node_smoke.py --work /tmp/two-node

Starts a head (`ray start --head`, its own --temp-dir and ports, 1 CPU) and a worker node
(`ray start --address`, another --temp-dir, 1 CPU), then, as a user of such a cluster:

1. `ray job submit --working-dir . -- python pipelines/full_repro.py --preset smoke
   --out <abs>` — must finish; its MLflow jobs must show both node ids, with at least
   one training job on the worker node;
2. the same with a relative `--out` — must be refused with a one-line error (or run
   correctly), never split its outputs over the nodes' private copies;
3. a sweep whose trials train (`sweeps/task_count.py`, smoke-sized) — must finish.

Prints the wall time of each and stops only the Ray processes it started (by PID, never
a bare `ray stop`). Token authentication: a local `ray.init()` has saved
`~/.ray/auth_token` on this machine, so the head requires a token and every client here
runs with `RAY_AUTH_MODE=token` (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd: list[str], env: dict[str, str], timeout: float = 3600, cwd: Path = REPO
       ) -> subprocess.CompletedProcess:
    """Run a command, capture its output."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def ray_pids(temp_dir: Path) -> set[int]:
    """PIDs of processes whose command line names `temp_dir` (the node we started)."""
    out = subprocess.run(["pgrep", "-f", str(temp_dir)], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def submit(args: list[str], env: dict[str, str], address: str) -> tuple[int, float, str]:
    """`ray job submit` and wait; (exit code, seconds, output)."""
    t0 = time.time()
    r = sh([str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
            "--", *args], env, timeout=3600)
    return r.returncode, time.time() - t0, r.stdout + r.stderr


def main() -> int:
    """Cluster up, three submissions, checks, cluster down."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/mtdiff-two-node")
    p.add_argument("--steps", default="1,2,3", help="which of the three submissions to run")
    args = p.parse_args()
    steps = {int(s) for s in args.steps.split(",")}
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    head_tmp, worker_tmp = work / "ray-head", work / "ray-worker"
    db = work / "mlflow.db"
    # The nodes inherit this environment (`ray start`), so every job driver and worker
    # logs to the same MLflow store.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({"RAY_AUTH_MODE": "token", "MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    dash = "http://127.0.0.1:8275"
    ok = True
    try:
        r = sh([str(BIN / "ray"), "start", "--head", "--port", "6390", "--dashboard-port",
                "8275", "--temp-dir", str(head_tmp), "--dashboard-agent-listen-port", "52385",
                "--ray-client-server-port", "23001", "--num-cpus", "1",
                "--node-ip-address", "127.0.0.1"], env, timeout=300)
        print(r.stdout[-500:], r.stderr[-500:])
        r = sh([str(BIN / "ray"), "start", "--address", "127.0.0.1:6390", "--temp-dir",
                str(worker_tmp), "--dashboard-agent-listen-port", "52386", "--num-cpus", "1",
                "--node-ip-address", "127.0.0.1"], env, timeout=300)
        print(r.stdout[-500:], r.stderr[-500:])
        out = work / "repro-smoke"
        if 1 in steps:
            rc, secs, log = submit(["python", "pipelines/full_repro.py", "--preset", "smoke",
                                    "--out", str(out)], env, dash)
            (work / "submit-abs.log").write_text(log)
            print(f"1. absolute --out: exit {rc} in {secs:.0f}s (log: {work / 'submit-abs.log'})")
            ok &= rc == 0 and _check_nodes(db, out)
        if 2 in steps:
            rc, secs, log = submit(["python", "pipelines/full_repro.py", "--preset", "smoke",
                                    "--out", "runs/rel"], env, dash)
            (work / "submit-rel.log").write_text(log)
            refused = "error: --out runs/rel is relative" in log
            print(f"2. relative --out: exit {rc} in {secs:.0f}s; refused with one line: {refused}")
            ok &= refused
        if 3 in steps:
            rc, secs, log = submit(["python", "sweeps/task_count.py", "--preset", "smoke",
                                    "--sets", "reach-v3", "reach-v3,push-v3", "--task", "reach-v3",
                                    "--out", str(work / "task-count")], env, dash)
            (work / "submit-sweep.log").write_text(log)
            print(f"3. task-count sweep: exit {rc} in {secs:.0f}s")
            ok &= rc == 0
    finally:
        for tmp in (worker_tmp, head_tmp):
            for pid in ray_pids(tmp):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        time.sleep(5)
        for tmp in (worker_tmp, head_tmp):
            for pid in ray_pids(tmp):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    print("all checks passed" if ok else "some checks failed")
    return 0 if ok else 1


def _check_nodes(db: Path, out: Path) -> bool:
    """Both nodes ran jobs, at least one training job on the worker node."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("mtdiff")
    runs = client.search_runs([exp.experiment_id], max_results=1000,
                              filter_string=f"tags.output = '{out}'")
    jobs = [r for r in runs if r.data.tags.get("job")]
    nodes = {r.data.tags.get("ray_node_id") for r in jobs}
    graph = json.loads((out / "graph.json").read_text())
    driver_node = {j["node"] for j in graph["jobs"] if j["name"] == "report"}
    train_nodes = {r.data.tags.get("ray_node_id") for r in jobs
                   if r.data.tags.get("stage") == "train"}
    running = [r for r in runs if r.info.status == "RUNNING"]
    print(f"   jobs on {len(nodes)} node(s): " + ", ".join(
        f"{n[:8]}: {sum(r.data.tags.get('ray_node_id') == n for r in jobs)} jobs" for n in nodes)
        + f"; trainings on {len(train_nodes)} node(s); RUNNING runs: {len(running)}")
    return len(nodes) == 2 and len(train_nodes) == 2 and not running and bool(driver_node)


if __name__ == "__main__":
    sys.exit(main())
