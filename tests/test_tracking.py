"""MLflow run states: failures end FAILED, runs a killed process left RUNNING are closed
by the next run of the same output folder, one writer per output folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtdiff import tracking
from mtdiff.config import apply_overrides, get_preset

HOLDER = """
import sys, time, mlflow
from mtdiff import tracking
from mtdiff.config import apply_overrides, get_preset
cfg = apply_overrides(get_preset("smoke"), [f"tracking.uri={sys.argv[1]}"])
tracking.setup(cfg)
with tracking.claim_output(sys.argv[2]):
    with tracking.run(cfg, "train", output=sys.argv[2]) as r:
        print(r.info.run_id, flush=True)
        time.sleep(600)
"""


def _cfg(tmp_path: Path):
    return apply_overrides(get_preset("smoke"), [f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"])


def _client(cfg):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=cfg.tracking.resolved_uri())


def test_a_failing_stage_ends_its_run_failed(tmp_path):
    cfg = _cfg(tmp_path)
    tracking.setup(cfg)
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.stage_run(cfg, "train", name="x", output=tmp_path / "out") as spec:
            raise RuntimeError("boom")
    run = _client(cfg).get_run(spec["run_id"])
    assert run.info.status == "FAILED"
    with tracking.stage_run(cfg, "train", name="y", output=tmp_path / "out") as spec:
        pass
    assert _client(cfg).get_run(spec["run_id"]).info.status == "FINISHED"


def test_runs_left_running_by_a_killed_process_are_closed_by_the_next_run(tmp_path):
    cfg = _cfg(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, cfg.tracking.uri, str(out)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    run_id = proc.stdout.readline().strip()
    assert run_id
    try:
        # while it lives, nobody else may write the folder
        with pytest.raises(tracking.OutputBusyError, match=f"{out} is in use by .*pid"):
            with tracking.claim_output(out):
                pass
        assert _client(cfg).get_run(run_id).info.status == "RUNNING"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9: no chance to close its run
        proc.wait()
    assert _client(cfg).get_run(run_id).info.status == "RUNNING"  # the lie
    t0 = time.time()
    with tracking.stage_run(cfg, "train", name="rerun", output=out) as spec:
        pass
    assert time.time() - t0 < 30
    assert _client(cfg).get_run(run_id).info.status == "KILLED"
    assert _client(cfg).get_run(spec["run_id"]).info.status == "FINISHED"


def test_code_version_without_git_comes_from_the_stamp_file_or_the_sources(tmp_path,
                                                                            monkeypatch):
    monkeypatch.delenv("MTDIFF_CODE_VERSION", raising=False)
    assert tracking.code_version() not in ("", "unknown")
    monkeypatch.setenv("MTDIFF_CODE_VERSION", "abc123")
    assert tracking.code_version() == "abc123"  # what the driver stamps on its jobs
