"""Head-restart drill: the head's Ray is killed and started again under a running smoke
reproduction; the driver must end with one line, and the same command must then resume.

    python drills/head_restart.py --work /tmp/head-restart [--repeat 3] [--seed 0] \\
        [--reference DIR]

The cluster is one node, a head started with `ray start --head` (2 CPUs, its own temp dir,
the guide's ports, token auth on). Not the guide's two nodes: on one machine, `ray start
--head` refuses a port that a live node's processes still name as their GCS address, so the
head could not come back beside the worker; on a real cluster the workers are on other
machines. The driver runs as on a `ray up` head: `python pipelines/full_repro.py --preset
smoke --out <abs>` with `RAY_ADDRESS` naming the cluster.

1. Once the graph has finished a seeded 2 to 6 jobs, every process whose command line names
   the head's temp dir (GCS, raylet, dashboard, its workers) is SIGKILLed, and `ray start
   --head` runs again on the same port (a new cluster ID).
2. The driver must exit 1 within `--timeout`, its stderr ending in the one line
   `error: the Ray cluster at ... restarted under this run ...`, with no native stack trace
   in its output (Ray's trace goes to the file that line names).
3. The same command is run once more: it must exit 0 with the jobs finished before the
   restart skipped, outputs equal to an uninterrupted reference run's
   (`kill_drills.fingerprint`), no MLflow run left RUNNING and no job with two FINISHED
   runs.

Prints one line per drill and exits non-zero if any failed. Only processes this script
started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "drills"))

from kill_drills import fingerprint, finished_twice, running_runs  # noqa: E402
from lost_node import (  # noqa: E402
    _env,
    kill_node,
    reference,
    start_head,
    stop_nodes,
    work_dir,
)
from two_node_smoke import ray_pids  # noqa: E402

ADDRESS = "127.0.0.1:6390"
RESTART_LINE = re.compile(r"^error: the Ray cluster at \S+ restarted under this run")


def _driver(out: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    f = open(log, "ab")  # noqa: SIM115 - the child writes to it until it ends
    return subprocess.Popen(
        [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke", "--out",
         str(out)], cwd=out.parent, env={**env, "RAY_ADDRESS": ADDRESS}, stdout=f,
        stderr=subprocess.STDOUT, start_new_session=True)


def _restart_head(tmp: Path, env: dict[str, str]) -> None:
    """`ray start --head` again on the same ports once the killed processes are gone (a
    port a dying process still holds fails the start: retried, at most 3 times)."""
    deadline = time.time() + 60
    while ray_pids(tmp) and time.time() < deadline:
        time.sleep(0.5)
    for attempt in range(3):
        try:
            start_head(tmp, env, cpus=2)
            return
        except subprocess.CalledProcessError as e:
            if attempt == 2:
                raise RuntimeError(f"ray start --head failed 3 times: "
                                   f"{(e.stdout or b'')[-1500:]!r} {(e.stderr or b'')[-1500:]!r}"
                                   ) from e
            kill_node(tmp)  # what the failed start left
            time.sleep(5)


def _finished(out: Path) -> int:
    return len(list((out / "jobs").glob("*.json"))) if (out / "jobs").exists() else 0


def _summary(log: Path) -> str:
    text = log.read_text(errors="replace")
    return next((x for x in reversed(text.splitlines())
                 if x.startswith("[repro]") and " jobs: " in x), "")


def drill(work: Path, ref_fp: dict, rng: random.Random, timeout: float) -> bool:
    """One drill (module docstring); prints its line."""
    head_tmp = work / "ray-head"
    db, out = work / "mlflow.db", work / "repro"
    first, second = work / "driver.log", work / "rerun.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = _env(db)
    after = rng.randint(2, 6)
    t0 = time.time()
    proc = None
    try:
        _restart_head(head_tmp, env)  # the first start, with the same retries
        proc = _driver(out, env, first)
        while proc.poll() is None and _finished(out) < after and time.time() - t0 < timeout:
            time.sleep(0.5)
        if proc.poll() is not None or _finished(out) < after:
            print(f"after {after} jobs: the driver ended (exit {proc.poll()}) or timed out "
                  f"before the restart; log {first}")
            return False
        done_before, killed_at = _finished(out), time.time() - t0
        n = kill_node(head_tmp)
        _restart_head(head_tmp, env)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            print(f"after {after} jobs: the driver still ran {timeout:.0f}s after the restart;"
                  f" log {first}")
            return False
        ended = time.time() - t0 - killed_at
        lines = first.read_text(errors="replace").rstrip().splitlines()
        last = lines[-1] if lines else ""
        native = sum("StackTrace" in x or "_raylet.so" in x for x in lines)
        one_line = rc == 1 and bool(RESTART_LINE.match(last)) and native == 0
        again = _driver(out, env, second)
        rc2 = again.wait(timeout=timeout)
        summary = _summary(second).removeprefix("[repro] ")
        skipped = re.search(r"(\d+) skipped", summary)
        resumed = rc2 == 0 and skipped is not None and int(skipped.group(1)) >= done_before
        same = fingerprint(out) == ref_fp
        left, twice = running_runs(db), finished_twice(db)
        ok = one_line and resumed and same and not left and not twice
        print(f"after {after} jobs: killed the head ({n} processes) at {killed_at:.0f}s with "
              f"{done_before} jobs done; driver exit {rc} {ended:.0f}s later, last line "
              f"{'ok' if RESTART_LINE.match(last) else repr(last[-160:])}, native trace lines "
              f"{native}; rerun exit {rc2}: {summary or 'no summary line'}; "
              f"outputs {'equal' if same else 'DIFFER'}; RUNNING runs {len(left)}; done "
              f"twice {twice or 'none'} -> {'ok' if ok else 'FAILED'}", flush=True)
        return ok
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        stop_nodes(head_tmp)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/head-restart")
    p.add_argument("--repeat", type=int, default=3, help="drills")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", help="an uninterrupted smoke reproduction's --out to reuse")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = p.parse_args()
    work = work_dir(p, args.work)
    ref = Path(args.reference).resolve() if args.reference else reference(work)
    ref_fp = fingerprint(ref)
    rng = random.Random(args.seed)
    results = [drill(work / f"run-{args.seed}-{i}", ref_fp, rng, args.timeout)
               for i in range(args.repeat)]
    print(f"{sum(results)} of {len(results)} drills passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
