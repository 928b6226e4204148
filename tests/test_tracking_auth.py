"""A tracking server that asks for a user and password (MLflow's basic-auth app, a real
`mlflow server --app-name basic-auth`): a client without credentials, or with wrong ones,
is refused in one line before any Ray work; with them, a training logs its run and the
metrics its Ray Train worker sends. (A local Ray's workers inherit the driver's environment;
on a cluster `runtime.init_ray` passes the credentials to them.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtdiff.runtime import free_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "drills"))

from tracking_auth import start_auth_server, stop_server  # noqa: E402

PASSWORD = "drill-password-1234"  # the app wants 12 characters or more


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    port = free_port()
    proc = start_auth_server(tmp_path_factory.mktemp("auth"), port, PASSWORD)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_server(proc)


def _train(data: Path, out: Path, uri: str, **creds: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update({f"MLFLOW_TRACKING_{k.upper()}": v for k, v in creds.items()})
    return subprocess.run(
        [sys.executable, str(REPO / "pipelines/train.py"), "--model", "mtdiff-p", "--data",
         str(data), "--out", str(out), "--preset", "smoke", "--set", f"tracking.uri={uri}",
         "--set", "train.steps=4", "--set", "train.checkpoint_every=2", "--set",
         "train.log_every=2", "--set", "data.history=2"],
        env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.integration
def test_a_client_without_the_password_is_refused_in_one_line(auth_server, write_dataset,
                                                              tmp_path):
    data = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    for creds, says in (({}, "asks for a user and password (401 Unauthorized); set "
                             "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"),
                        ({"username": "admin", "password": "not-the-password"},
                         "refused user 'admin' (401 Unauthorized: wrong password")):
        t0 = time.monotonic()
        r = _train(data, tmp_path / "out", auth_server, **creds)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert [x for x in lines if x.startswith("error: ")] == lines[-1:]
        assert lines[-1].startswith(f"error: the MLflow tracking server {auth_server} {says}")
        assert time.monotonic() - t0 < 60 and not list((tmp_path / "out").glob("*/"))


@pytest.mark.integration
def test_with_the_password_a_training_and_its_worker_log_their_run(auth_server,
                                                                   write_dataset, tmp_path):
    import mlflow

    data = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    r = _train(data, tmp_path / "out", auth_server, username="admin", password=PASSWORD)
    assert r.returncode == 0, r.stderr[-3000:]
    os.environ.update({"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD})
    try:
        client = mlflow.MlflowClient(tracking_uri=auth_server)
        exp = client.get_experiment_by_name("mtdiff")
        (run,) = client.search_runs([exp.experiment_id], "tags.stage = 'train'")
        assert run.info.status == "FINISHED"
        # logged by the Ray Train worker, a process the driver's environment reached
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [2, 4]
    finally:
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(k, None)
