"""Reliability drills through the real entry points: bad input fails fast with
one line and exit code 2, before any Ray work; damaged data is named as damaged; a local
Ray instance listens on loopback and its processes find it among others."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.killing import kill_group, pause_env, wait_for_pause

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    """The user error's single stderr line (exit code 2)."""
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


@pytest.fixture
def dataset(write_dataset) -> Path:
    return write_dataset(tasks=("a", "b"), episodes=4, T=20)


# ------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("script, args", [
    ("pipelines/train.py", ["--data", "DATA", "--out", "out"]),
    ("pipelines/collect.py", ["--suite", "maze2d", "--out", "out"]),
    ("pipelines/full_repro.py", ["--preset", "smoke", "--out", "out"]),
    ("sweeps/horizon_prompt.py", ["--data", "DATA", "--suite", "maze2d", "--out", "out"]),
    ("sweeps/task_count.py", ["--sets", "reach-v3", "--task", "reach-v3", "--out", "out"]),
])
@pytest.mark.parametrize("override", ["train.lr=inf", "train.lr=abc", "train.nothing=1"])
def test_config_errors_exit_2_with_one_line(script, args, override, dataset, tmp_path):
    args = [str(dataset) if a == "DATA" else a for a in args]
    r = _run(str(REPO / script), *args, "--set", override, cwd=tmp_path)
    assert _one_line_error(r).startswith("error: bad configuration: ")
    assert not (tmp_path / "out").exists()


def test_bad_sampler_setting_exits_2(tmp_path):
    r = _run(str(REPO / "sweeps/sampler_steps.py"), "--checkpoint", "x", "--suite", "maze2d",
             "--settings", "ddim-x", cwd=tmp_path)
    assert "is not SAMPLER-STEPS" in _one_line_error(r)


def test_empty_task_spec_is_an_error_not_the_presets_tasks(tmp_path):
    r = _run(str(REPO / "pipelines/collect.py"), "--suite", "metaworld", "--source",
             "scripted", "--preset", "smoke", "--tasks", "", "--out", "out", cwd=tmp_path)
    assert "MetaWorldConfig.tasks: empty task spec ''" in _one_line_error(r)
    assert not (tmp_path / "out").exists()


def test_bad_swept_value_fails_before_any_trial(maze_checkpoint, tmp_path):
    ckpt, _ = maze_checkpoint
    r = _run(str(REPO / "sweeps/guidance_temperature.py"), "--checkpoint", str(ckpt),
             "--suite", "maze2d", "--maps", "train-0", "--betas", "1.5", "--storage", "s",
             cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
                                "RAY_TMPDIR": str(tmp_path / "raytmp")})
    assert "temperature: must be in [0, 1]" in _one_line_error(r)
    assert not (tmp_path / "raytmp").exists()  # no Ray was started


# ------------------------------------------------------- unreachable tracking server

DEAD_URI = "http://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.mark.parametrize("script, args", [
    ("pipelines/train.py", ["--data", "DATA", "--out", "out", "--preset", "smoke"]),
    ("pipelines/full_repro.py", ["--out", "out"]),  # no --preset: before choose_preset's Ray
    ("pipelines/collect.py", ["--suite", "maze2d", "--out", "out", "--track"]),
    ("pipelines/evaluate.py", ["--checkpoint", "CKPT", "--suite", "maze2d", "--out", "out"]),
    ("sweeps/guidance_temperature.py", ["--checkpoint", "CKPT", "--suite", "maze2d",
                                        "--storage", "out"]),
    ("sweeps/horizon_prompt.py", ["--data", "DATA", "--suite", "maze2d", "--out", "out"]),
])
def test_unreachable_tracking_server_fails_fast_before_ray(script, args, maze_checkpoint,
                                                           dataset, tmp_path):
    """It hung 268 s in MLflow's retries, then printed a 113-line traceback."""
    ckpt, _ = maze_checkpoint
    args = [str(dataset) if a == "DATA" else str(ckpt) if a == "CKPT" else a for a in args]
    t0 = time.time()
    r = _run(str(REPO / script), *args, cwd=tmp_path,
             env={"MLFLOW_TRACKING_URI": DEAD_URI, "RAY_TMPDIR": str(tmp_path / "raytmp")})
    elapsed = time.time() - t0
    line = _one_line_error(r)
    assert f"the MLflow tracking server {DEAD_URI} cannot be reached" in line
    assert "MLFLOW_TRACKING_URI" in line and "mlflow server" in line  # the fixes
    assert elapsed < 15, elapsed
    assert not (tmp_path / "raytmp").exists()  # no Ray was started


def test_check_reachable(tmp_path, readonly_dir):
    """Each kind of store: a closed port, an unknown host, sqlite and file folders."""
    import socket

    from mtdiff.tracking.server import TrackingError, check_reachable

    with pytest.raises(TrackingError, match=r"127.0.0.1:9 cannot be reached \(Connection "
                                            r"refused\); start it"):
        check_reachable(DEAD_URI)
    with pytest.raises(TrackingError, match="cannot be reached"):
        check_reachable("http://no-such-host.invalid:5000", timeout_s=3)
    with socket.socket() as server:  # something listening: reachable
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_reachable(f"http://127.0.0.1:{server.getsockname()[1]}")
    check_reachable(f"sqlite:///{tmp_path}/new/m.db")  # the folder is created
    assert (tmp_path / "new").is_dir()
    check_reachable(f"file://{tmp_path}/mlruns")
    for uri in (f"sqlite:///{readonly_dir}/m.db", f"file://{readonly_dir}/mlruns",
                str(readonly_dir)):
        with pytest.raises(TrackingError, match=f"folder {readonly_dir}.* is not writable"):
            check_reachable(uri)
    check_reachable("databricks")  # not checked


def test_unwritable_sqlite_store_is_named(dataset, tmp_path, readonly_dir):
    r = _run(str(REPO / "pipelines/train.py"), "--data", str(dataset), "--out", "out",
             cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{readonly_dir}/m.db"})
    assert f"folder {readonly_dir} is not writable" in _one_line_error(r)


# ------------------------------------------------------------ read-only output folder


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nobody may write into (root too: the immutable attribute)."""
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        d.chmod(0o755)
        pytest.skip("running as root without chattr: no folder is read-only")
    try:
        yield d
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(d)], check=True)
        d.chmod(0o755)


@pytest.mark.parametrize("script, args", [
    ("pipelines/train.py", ["--data", "DATA", "--out", "RO"]),
    ("pipelines/collect.py", ["--suite", "maze2d", "--out", "RO/sub"]),
    ("pipelines/full_repro.py", ["--preset", "smoke", "--out", "RO", "--no-mlflow"]),
    ("pipelines/evaluate.py", ["--checkpoint", "CKPT", "--suite", "maze2d", "--out", "RO"]),
    ("pipelines/synthesize.py", ["--checkpoint", "CKPT", "--task", "x", "--num", "1",
                                 "--out", "RO/syn"]),
    ("pipelines/dataset.py", ["subset", "DATA", "--tasks", "a", "--out", "RO"]),
    ("sweeps/guidance_temperature.py", ["--checkpoint", "CKPT", "--suite", "maze2d",
                                        "--storage", "RO"]),
    ("sweeps/horizon_prompt.py", ["--data", "DATA", "--suite", "maze2d", "--out", "RO"]),
])
def test_readonly_output_folder_is_one_line(script, args, maze_checkpoint, dataset, tmp_path,
                                            readonly_dir):
    """It gave 16-81-line tracebacks."""
    ckpt, _ = maze_checkpoint
    subst = {"DATA": str(dataset), "CKPT": str(ckpt)}
    args = [subst.get(a, a.replace("RO", str(readonly_dir))) for a in args]
    r = _run(str(REPO / script), *args, cwd=tmp_path,
             env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
                  "RAY_TMPDIR": str(tmp_path / "raytmp")})
    assert f"{readonly_dir}" in _one_line_error(r) and "cannot write there" in r.stderr
    assert not (tmp_path / "raytmp").exists()


# ------------------------------------------------------------------ damaged shard


def test_damaged_shard_fails_training_before_ray(dataset, tmp_path):
    """Flipped bytes mid-shard: named as a checksum mismatch of that file (it was reported
    as NaN from a diverged collector, three times, after Ray started)."""
    import mlflow

    from mtdiff.data.reader import read_manifest

    shard = dataset / read_manifest(dataset)["tasks"]["b"]["shards"][1]["file"]
    data = bytearray(shard.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 8] = bytes(b ^ 0xFF for b in data[mid: mid + 8])
    shard.write_bytes(bytes(data))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t0 = time.time()
    r = _run(str(REPO / "pipelines/train.py"), "--data", str(dataset), "--out", "out",
             "--preset", "smoke", cwd=tmp_path,
             env={"MLFLOW_TRACKING_URI": uri, "RAY_TMPDIR": str(tmp_path / "raytmp")})
    line = _one_line_error(r)
    assert str(shard) in line and "checksum mismatch" in line and "damaged" in line
    assert time.time() - t0 < 30
    assert not (tmp_path / "raytmp").exists()  # no Ray was started
    assert not list((tmp_path / "out").iterdir())  # no run folder
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("mtdiff")
    assert exp is None or not client.search_runs([exp.experiment_id])  # no run recorded


def test_verify_checksums_names_the_file(dataset):
    from mtdiff.data.reader import read_manifest, verify_checksums
    from mtdiff.data.schema import DatasetError

    verify_checksums(dataset)
    shard = dataset / read_manifest(dataset)["tasks"]["a"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))  # same size, new mtime: checked again
    with pytest.raises(DatasetError, match=f"{shard}: checksum mismatch"):
        verify_checksums(dataset)


# ------------------------------------------------------------- local Ray instances


def _listeners(root: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of process `root` and
    its descendants (Ray's workers are the raylet's children, in groups of their own)."""
    import psutil

    procs = {root: "driver"}
    for child in psutil.Process(root).children(recursive=True):
        try:
            procs[child.pid] = child.name()
        except psutil.NoSuchProcess:
            continue
    return [(c.laddr.ip, c.laddr.port, procs[c.pid])
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in procs]


def _train_cmd(data: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, str(REPO / "pipelines/train.py"), "--data", str(data), "--out",
            str(out), "--preset", "smoke", "--no-mlflow", "--set", f"train.steps={steps}",
            "--set", "train.checkpoint_every=10", "--set", "data.history=2"]


@pytest.mark.integration
def test_local_ray_listens_on_loopback_only(dataset, tmp_path):
    """GCS, raylet, agents, Train controller and workers: nothing on 0.0.0.0 / *."""
    flag = tmp_path / "paused"
    proc = subprocess.Popen(_train_cmd(dataset, tmp_path / "out", 40), cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=pause_env("checkpoint_step", 10, flag))
    try:
        wait_for_pause(proc, flag, timeout=400)
        found = _listeners(proc.pid)
    finally:
        kill_group(proc)
    names = {n for _, _, n in found}
    # the whole instance was seen: its servers and the paused training worker
    assert {"gcs_server", "raylet"} <= names and any("RayTrainWorker" in n for n in names), found
    exposed = [x for x in found if x[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    # One exception, not Ray's: torch.distributed's rendezvous store (TCPStore), which Ray
    # Train's process-group set-up starts in the rank-0 worker, listens on every address;
    # torch 2.13 binds it to no given host (only to a pre-bound socket, which Ray Train
    # does not pass). It is the wildcard listener of the training worker, and only one. The
    # worker's process title names the method it is running ("ray::RayTrainWorker.poll_status").
    store = [x for x in exposed
             if x[2].startswith("ray::RayTrainWorker") and x[0] in ("::", "0.0.0.0")]
    assert len(store) <= 1, store
    assert [x for x in exposed if x not in store] == []


@pytest.fixture
def other_ray_instance() -> Iterator[str]:
    """Another Ray instance on this machine (`ray start --head`), stopped by its process
    group at the end (never `ray stop`: other people's instances live here too)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Unix socket paths are limited
    ray_cli = Path(sys.executable).with_name("ray")
    log = Path(tmp) / "start.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(ray_cli), "start", "--head", f"--port={port}",
                                 f"--temp-dir={tmp}", "--num-cpus=1",
                                 "--include-dashboard=false"],
                                start_new_session=True, stdout=f, stderr=subprocess.STDOUT)
    try:
        assert proc.wait(timeout=300) == 0, f"ray start failed: {log.read_text()[-3000:]}"
        yield f"127.0.0.1:{port}"
    finally:
        kill_group(proc)  # GCS, raylet, ... stay in the group of `ray start`
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.integration
def test_training_beside_another_ray_instance_finds_its_own(other_ray_instance, dataset,
                                                            tmp_path):
    """Train V2's placement-group cleaner logged "Found multiple active Ray instances" in
    every training when another instance ran on the machine."""
    r = subprocess.run(_train_cmd(dataset, tmp_path / "out", 40), cwd=tmp_path,
                       capture_output=True, text=True, timeout=400,
                       env={**os.environ, "RAY_ADDRESS": "local"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "multiple active Ray instances" not in out, out[-3000:]
    assert "PlacementGroupCleaner" not in out or "Traceback" not in out


def test_evaluation_job_records_key_on_what_decides_a_result(maze_checkpoint, tmp_path):
    """A finished job is taken again only for the same checkpoint, sampler settings, target
    and job; `clear` removes them (the evaluation's JSON holds every job then)."""
    from dataclasses import replace

    from mtdiff.config import DiffusionConfig
    from mtdiff.eval.stage import JobRecords
    from mtdiff.eval.suites import EvalJob

    ckpt, _ = maze_checkpoint
    job = EvalJob("maze2d", "train-0", 0, 2, 5, extra={"group": "train", "prompt": "own"})
    d = DiffusionConfig()
    records = JobRecords(tmp_path / "jobs", ckpt, 0, d, 1.0)
    records.put(job, {"task": "train-0", "success": [1, 0]})
    assert records.get(job) == {"task": "train-0", "success": [1, 0]}
    assert JobRecords(tmp_path / "jobs", ckpt, 0, d, 1.0).get(job) is not None  # a rerun
    for other in (JobRecords(tmp_path / "jobs", ckpt, 5, d, 1.0),  # another step
                  JobRecords(tmp_path / "jobs", ckpt, 0, replace(d, guidance=2.0), 1.0),
                  JobRecords(tmp_path / "jobs", ckpt, 0, d, 0.9)):
        assert other.get(job) is None
    for other_job in (replace(job, seed=1), replace(job, episodes=3),
                      replace(job, prompt_task="unseen-0")):
        assert records.get(other_job) is None
    records.clear()
    assert records.get(job) is None and not (tmp_path / "jobs").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_killed_evaluation_reruns_only_its_unfinished_jobs(maze_checkpoint, tmp_path):
    """Kill drill: `evaluate.py` killed (SIGKILL, driver and its Ray) after its first job's
    result is on disk; the same command again runs the other jobs only and writes every
    job once, the finished one's result as it was recorded."""
    import json

    ckpt, _ = maze_checkpoint
    out = tmp_path / "eval"
    cmd = [sys.executable, str(REPO / "pipelines/evaluate.py"), "--checkpoint", str(ckpt),
           "--suite", "maze2d", "--episodes", "1", "--seeds", "0", "--max-steps", "5",
           "--no-mlflow", "--out", str(out)]  # train-0, unseen-0 and its wrong prompt
    flag = tmp_path / "paused"
    proc = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=pause_env("eval_jobs", 1, flag))
    try:
        wait_for_pause(proc, flag, timeout=300)
    finally:
        kill_group(proc)
    assert not (out / "eval-maze2d.json").exists()
    (kept,) = (out / ".eval-maze2d-jobs").glob("*.json")
    first = json.loads(kept.read_text())
    r = _run(*cmd[1:], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 3 jobs finished by an interrupted run" in r.stdout
    res = json.loads((out / "eval-maze2d.json").read_text())
    assert res["summary"]["reused_jobs"] == 1
    eps = res["episodes"]
    assert sorted((e["task"], e["prompt"]) for e in eps) == [
        ("train-0", "own"), ("unseen-0", "own"), ("unseen-0", "wrong")]
    same = [e for e in eps if (e["task"], e["prompt"]) == (first["task"], first["prompt"])]
    assert same == [{k: v for k, v in first.items() if k != "paths"}]  # taken, not rerun
    assert not (out / ".eval-maze2d-jobs").exists()


def test_a_ray_address_where_nothing_answers_is_one_line_exit_2(tmp_path):
    """Left to Ray, the connect retries for minutes, printing native warnings."""
    from mtdiff.runtime import free_port

    address = f"127.0.0.1:{free_port()}"  # free: nothing listens there
    t0 = time.time()
    r = _run(str(REPO / "pipelines/full_repro.py"), "--preset", "smoke", "--no-mlflow",
             "--out", str(tmp_path / "out"), cwd=tmp_path, env={"RAY_ADDRESS": address})
    line = _one_line_error(r)
    assert line.startswith(f"error: RAY_ADDRESS={address}: no Ray cluster answers there")
    assert "unset RAY_ADDRESS" in line and time.time() - t0 < 60
    assert not (tmp_path / "out").exists()
