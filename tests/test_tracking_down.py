"""A tracking server that stops answering: MLflow calls retry for `tracking.retry_s`, and a
server gone for longer stops the graph with one line (the full drill, with a real
`mlflow server` stopped mid-run: drills/tracking_down.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtdiff.experiment.driver import tracking_watch
from mtdiff.tracking import retry_budget, retry_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "drills"))

from tracking_down import free_port, start_server, stop_server  # noqa: E402


def test_retry_budget_sets_mlflows_retries_to_cover_the_seconds(monkeypatch):
    for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
              "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(k, raising=False)
    n = retry_budget(300.0)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(n)
    assert retry_seconds(n) >= 300.0 > retry_seconds(n - 1)  # the fewest that cover it
    assert retry_budget(60.0) < n and retry_seconds(retry_budget(60.0)) >= 60.0
    assert retry_budget(1e9) == 10  # MLflow's own limit
    assert retry_budget(None) == 10  # None: what is set stays


def test_a_server_down_longer_than_the_budget_stops_the_graph_in_one_line():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    watch = tracking_watch(uri, retry_s=1.0, every=0.0)
    assert watch() is None  # answering
    server.close()
    assert watch() is None  # down, within its budget
    time.sleep(1.2)
    reason = watch()
    assert reason is not None and "\n" not in reason
    assert f"the tracking server {uri} has not answered for 1s" in reason
    assert "rerun the same command to resume" in reason
    assert tracking_watch("sqlite:////tmp/x.db", 1.0) is None  # files: nothing to watch


def test_a_server_back_within_the_budget_does_not_stop_anything():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # down from the start
    watch = tracking_watch(f"http://127.0.0.1:{port}", retry_s=2.0, every=0.0)
    assert watch() is None
    back = socket.socket()
    back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        back.bind(("127.0.0.1", port))
    except OSError:
        pytest.skip("the port was taken by another process meanwhile")
    back.listen()
    try:
        time.sleep(2.2)
        assert watch() is None  # it answered again: the clock restarted
    finally:
        back.close()


def test_mlflow_telemetry_is_off_where_mtdiff_tracks():
    """Its thread edits os.environ while requests iterates it: log calls failed with
    KeyError '_MLFLOW_TELEMETRY_SESSION_ID'."""
    import subprocess
    import sys

    code = ("import mtdiff.tracking, mlflow\n"
            "from mlflow.telemetry import get_telemetry_client\n"
            "from mlflow.telemetry.utils import is_telemetry_disabled\n"
            "print(is_telemetry_disabled(), get_telemetry_client() is None)\n")
    # as a user's shell has it: not under pytest or CI (MLflow turns telemetry off there)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI", "PYTEST_CURRENT_TEST",
                        "GITHUB_ACTIONS", "GITLAB_CI", "JENKINS_URL", "BUILDKITE")}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["True", "True"]


CHILD = """
import os, sys, time
import mlflow
from mtdiff import tracking
mlflow.set_tracking_uri(sys.argv[1])
tracking._quiet_system_metrics()  # as every run mtdiff opens
mlflow.start_run(log_system_metrics=True)  # MLflow's retries: a server just started
os.environ.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="2")
print("started", flush=True)
sys.stdin.readline()  # the server is stopped now
if sys.argv[2] == "abandon":
    tracking.abandon_runs()
print("error: the one line", file=sys.stderr, flush=True)
time.sleep(8)  # the sampler asks the dead server for its run (every 4 s)
"""


@pytest.mark.integration
@pytest.mark.parametrize("abandon", [True, False])
def test_after_the_servers_loss_the_one_line_stays_the_last(tmp_path, abandon):
    """A command stopping because its server is gone ends on its one line: MLflow's
    system-metrics sampler, which asks the dead server for its run, prints nothing after it
    (`tracking.abandon_runs`). Without it the sampler's warning follows the line. The
    sampler's interval is 4 s, so its first call comes after the server is stopped."""
    port = free_port()
    server = start_server(tmp_path, port)
    # Not the MLflow settings earlier tests left in this process (an experiment id of
    # another store): the child logs to this server alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL="4",
               MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING="1")
    child = subprocess.Popen([sys.executable, "-c", CHILD, f"http://127.0.0.1:{port}",
                              "abandon" if abandon else "keep"], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        started = child.stdout.readline().strip()
    finally:
        stop_server(server)
    assert started == "started", child.communicate(timeout=60)[1][-3000:]
    _, err = child.communicate("\n", timeout=120)
    lines = [x for x in err.splitlines() if x.strip()]
    assert "error: the one line" in lines
    if abandon:
        assert lines[-1] == "error: the one line", err[-2000:]
    else:  # what the drill saw: the sampler's warning after the line
        assert "Failed to get mlflow run" in lines[-1], err[-2000:]
