"""Basic-auth drill: an MLflow tracking server that asks for a user and password (MLflow's
basic-auth app) refuses a reproduction without them, in one line before any Ray work, and
records the smoke reproduction run with them.

    python drills/tracking_auth.py --work /abs/tracking-auth [--runs 1] [--refusals-only]

1. `mlflow server --app-name basic-auth` on 127.0.0.1 (a free port; its users in
   WORK/users.db, admin's password generated here), runs in WORK/mlflow.db.
2. `pipelines/full_repro.py --preset smoke` with no credentials and with a wrong password:
   each must exit 2 with one `error:` line, and leave no run on the server.
3. `--runs` times, with MLFLOW_TRACKING_USERNAME / _PASSWORD: the same command must exit 0;
   on the server its parent run is FINISHED, every job's run is a child of it, and no run is
   left RUNNING.

Prints one line per step and exits non-zero if any failed. Only the server this script
started is stopped (its process group).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_auth_server(root: Path, port: int, password: str, timeout_s: float = 180
                      ) -> subprocess.Popen:
    """A basic-auth `mlflow server` on 127.0.0.1:`port` with user admin / `password`, its
    stores under `root`; returns once it answers (its own process group: stop it with
    `stop_server`)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root}/users.db\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    log = open(root / "server.log", "a")  # noqa: SIM115 - the server's own output
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_server(proc)
                raise SystemExit("the basic-auth server did not start: "
                                 f"{(root / 'server.log').read_text()[-1500:]}") from None
            time.sleep(1)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server `start_auth_server` started (its whole process group)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def _repro(uri: str, out: Path, log: Path, **creds: str) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update({"MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "local"})
    env.update({f"MLFLOW_TRACKING_{k.upper()}": v for k, v in creds.items()})
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset",
                             "smoke", "--out", str(out)], cwd=REPO, env=env, stdout=f,
                            stderr=subprocess.STDOUT, timeout=3600).returncode
    return rc, time.monotonic() - t0


def _runs(uri: str, password: str) -> list:
    import mlflow

    os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin",
                       "MLFLOW_TRACKING_PASSWORD": password})
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mtdiff")
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=10_000)


def main() -> int:
    from mtdiff.runtime import free_port

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True, help="absolute folder for the server and runs")
    p.add_argument("--runs", type=int, default=1, help="smoke reproductions with the password")
    p.add_argument("--refusals-only", action="store_true", help="skip the reproductions")
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(18)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_auth_server(work / "server", port, password)
    failed = 0
    try:
        for what, creds in (("no credentials", {}),
                            ("a wrong password", {"username": "admin",
                                                  "password": "not-" + password})):
            log = work / f"refused-{what.split()[-1]}.log"
            rc, secs = _repro(uri, work / "refused-out", log, **creds)
            errors = [x for x in log.read_text().splitlines() if x.startswith("error: ")]
            ok = rc == 2 and len(errors) == 1 and "Traceback" not in log.read_text() \
                and not _runs(uri, password)
            failed += not ok
            print(f"{what}: exit {rc} after {secs:.0f}s, {errors[:1]}: "
                  f"{'OK' if ok else 'FAILED'}", flush=True)
        for i in range(0 if args.refusals_only else args.runs):
            out = work / f"out-{i}"
            rc, secs = _repro(uri, out, work / f"repro-{i}.log", username="admin",
                              password=password)
            runs = _runs(uri, password)
            mine = [r for r in runs if r.data.tags.get("output", "").startswith(str(out))
                    or r.data.tags.get("mlflow.parentRunId") in
                    {x.info.run_id for x in runs if x.data.tags.get("output") == str(out)}]
            parents = [r for r in runs if r.data.tags.get("stage") == "full_repro"
                       and r.data.tags.get("output") == str(out)]
            running = [r.info.run_name for r in runs if r.info.status == "RUNNING"]
            children = [r for r in runs if parents and
                        r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
            ok = (rc == 0 and len(parents) == 1 and parents[0].info.status == "FINISHED"
                  and len(children) > 0 and not running)
            failed += not ok
            print(f"with the password {i}: exit {rc} after {secs:.0f}s; parent "
                  f"{parents[0].info.status if parents else 'missing'}, {len(children)} job "
                  f"runs under it, {len(mine)} runs of this --out, {len(running)} RUNNING: "
                  f"{'OK' if ok else 'FAILED'}", flush=True)
    finally:
        stop_server(server)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
