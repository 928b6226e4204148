"""Token-auth drill: a two-node cluster that requires Ray's token refuses a submission
without it and runs the smoke reproduction with it.

    python drills/token_auth.py --work /tmp/token-auth [--plan-only]

1. A fresh token (Ray's own generator), given to both nodes as RAY_AUTH_TOKEN with
   RAY_AUTH_MODE=token: a head and a worker, 1 CPU each, their own temp dirs and ports
   (not the other drills': both can run at once).
2. `ray job submit` with no token (no RAY_AUTH_MODE, no RAY_AUTH_TOKEN, a HOME without
   ~/.ray/auth_token: the request reaches the cluster without one) and with a wrong one:
   each must be refused by the cluster (non-zero exit; the AuthenticationError line, e.g.
   "Unauthorized: Missing authentication token", is printed).
3. With the token: `ray job submit --working-dir . -- python pipelines/full_repro.py
   --preset smoke --out <abs>` must exit 0 with jobs on both nodes (`--plan-only`: the
   `--plan` submission instead, a minute rather than ~15).

Prints one line per step and exits non-zero if any failed. Only processes this script
started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "drills"))

from two_node_smoke import _check_nodes, ray_pids  # noqa: E402

PORT, DASH = "6391", "8276"
DASHBOARD = f"http://127.0.0.1:{DASH}"


def _run(cmd: list[str], env: dict[str, str], timeout: float = 300
         ) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _started(r: subprocess.CompletedProcess) -> None:
    if r.returncode != 0:
        raise SystemExit(f"ray start failed (exit {r.returncode}): "
                         f"{(r.stdout + r.stderr).strip()[-1500:]}")


def _refusal(text: str) -> str:
    """The line of Ray's output that says why it refused."""
    lines = text.splitlines()
    for line in lines:
        if line.startswith("ray.exceptions.AuthenticationError"):
            return line.strip()[:240]
    return (text.strip().splitlines() or ["(no output)"])[-1][:240]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/mtdiff-token-auth")
    p.add_argument("--plan-only", action="store_true")
    p.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    head_tmp, worker_tmp, db = work / "ray-head", work / "ray-worker", work / "mlflow.db"

    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    token = generate_new_authentication_token()
    base = {k: v for k, v in os.environ.items()
            if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")}
    base.update({"MLFLOW_TRACKING_URI": f"sqlite:///{db}",
                 "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}"})
    with_token = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    home = Path(tempfile.mkdtemp(prefix="no-token-home-", dir=work))  # no ~/.ray/auth_token
    no_token = {**base, "HOME": str(home)}  # a client that sends no token at all
    wrong = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * len(token)}
    ok = True
    try:
        _started(_run([str(BIN / "ray"), "start", "--head", "--port", PORT,
                       "--dashboard-port", DASH, "--temp-dir", str(head_tmp),
                       "--dashboard-agent-listen-port", "52387",
                       "--ray-client-server-port", "23002", "--num-cpus", "1",
                       "--node-ip-address", "127.0.0.1"], with_token))
        _started(_run([str(BIN / "ray"), "start", "--address", f"127.0.0.1:{PORT}",
                       "--temp-dir", str(worker_tmp), "--dashboard-agent-listen-port", "52388",
                       "--num-cpus", "1", "--node-ip-address", "127.0.0.1"], with_token))
        probe = ["python", "-c", "print('ran')"]
        for what, env in (("no token", no_token), ("a wrong token", wrong)):
            r = _run([str(BIN / "ray"), "job", "submit", "--address", DASHBOARD, "--", *probe],
                     env, timeout=300)
            refused = r.returncode != 0 and "ran" not in r.stdout.splitlines()
            print(f"submit with {what}: exit {r.returncode}, "
                  f"{'refused' if refused else 'NOT REFUSED'}: {_refusal(r.stdout + r.stderr)}",
                  flush=True)
            ok &= refused
        r = _run([str(BIN / "ray"), "job", "submit", "--address", DASHBOARD, "--", *probe],
                 with_token, timeout=300)
        print(f"submit with the token (a probe): exit {r.returncode}", flush=True)
        ok &= r.returncode == 0
        out = work / "repro-smoke"
        cmd = ["python", "pipelines/full_repro.py", "--preset", "smoke", "--out", str(out)]
        if args.plan_only:
            cmd.append("--plan")
        t0 = time.time()
        r = _run([str(BIN / "ray"), "job", "submit", "--address", DASHBOARD,
                  "--working-dir", ".", "--", *cmd], with_token, timeout=args.timeout)
        (work / "submit.log").write_text(r.stdout + r.stderr)
        print(f"submit the smoke graph{' --plan' if args.plan_only else ''} with the token: "
              f"exit {r.returncode} in {time.time() - t0:.0f}s (log {work / 'submit.log'})",
              flush=True)
        ok &= r.returncode == 0 and (args.plan_only or _check_nodes(db, out))
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


if __name__ == "__main__":
    sys.exit(main())
