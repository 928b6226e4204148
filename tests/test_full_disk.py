"""A disk that fills during a run: one line naming the disk, exit 1, nothing half-written,
and the same command resumes once there is room. The drill itself: drills/full_disk.py.
Checkpoint writes killed halfway: tests/test_checkpoint_kills.py."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mtdiff.artifacts import load_checkpoint
from mtdiff.cli import disk_full_error, disk_full_message
from mtdiff.commands import guarded
from mtdiff.data.io import atomic_write_parquet
from mtdiff.layout import RAY_SNAPSHOT
from mtdiff.train.checkpoints import write_checkpoint
from tests.conftest import fresh_ray
from tests.faults import REPO, _latest, _state, _train


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Callable[[int], Path]]:
    """Factory: a tmpfs of `size` bytes mounted under tmp_path (unmounted afterwards);
    skips the test where mounting is not permitted (not root, no CAP_SYS_ADMIN)."""
    mounts: list[Path] = []

    def _mount(size: int) -> Path:
        at = tmp_path / f"disk{len(mounts)}"
        at.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                        f"{r.stderr.strip()}")
        mounts.append(at)
        return at

    yield _mount
    for at in mounts:
        if subprocess.run(["umount", str(at)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(at)], capture_output=True)


def _remount(at: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(at)], check=True)


def test_a_write_that_fills_the_disk_names_the_file_and_leaves_nothing(small_disk):
    disk = small_disk(16 * 1024)
    table = pa.table({"x": np.random.default_rng(0).random(200_000)})
    with pytest.raises(OSError) as e:
        atomic_write_parquet(disk / "data" / "part-000000.parquet", table)
    assert e.value.errno == errno.ENOSPC
    assert e.value.filename == str(disk / "data" / "part-000000.parquet")
    assert _files(disk) == []  # no temporary file, no half shard


def test_a_checkpoint_that_fills_the_disk_is_an_out_of_space_error(small_disk):
    """torch.save(path) on a full disk raised "RuntimeError: unexpected pos 576 vs 534":
    neither the cause nor the file was named."""
    from mtdiff.cli import writable_dir

    disk = small_disk(160 * 1024)
    write_checkpoint(disk / "run" / "checkpoint_1", **_state(10, n=4096))  # 32 KiB fits
    with pytest.raises(OSError) as e:
        write_checkpoint(disk / "run" / "checkpoint_2", **_state(20, n=200_000))
    assert e.value.errno == errno.ENOSPC
    assert e.value.filename == str(disk / "run" / "checkpoint_2" / "checkpoint.pt")
    assert _files(disk) == ["run/checkpoint_1/checkpoint.pt"]
    assert _latest(disk / "run")[1] == 10
    msg = disk_full_message(e.value)  # not under an output folder: no flag to change
    assert re.fullmatch(rf"disk full: No space left on device writing "
                        rf"{re.escape(e.value.filename)} \(filesystem {re.escape(str(disk))}: "
                        r"[\d.]+ (B|KiB) free of 160\.0 KiB\); free space there, then rerun "
                        r"the same command to resume", msg), msg
    writable_dir(disk / "run", "--storage")  # the command's output folder
    msg = disk_full_message(e.value)
    assert msg.endswith("; free space there or choose another --storage, then rerun the "
                        "same command to resume")


def test_out_of_space_is_found_behind_the_wrappers_it_arrives_in():
    """How a full disk reaches a command's main: Ray task errors (`.cause`), the
    collection driver's re-raise, Ray Train's worker-group and controller errors, an
    error that crossed a process as text (shutil.copytree's), a chain."""
    import shutil

    import ray.exceptions
    from ray.train import ControllerError, WorkerGroupError

    full = OSError(errno.ENOSPC, "No space left on device")
    task = ray.exceptions.RayTaskError("f", "Traceback ...", full).as_instanceof_cause()
    try:
        raise RuntimeError("collection of task 'a' failed") from task.cause
    except RuntimeError as e:
        reraised = e
    for exc in (task, reraised, WorkerGroupError("rank 0 failed", {0: full}),
                ControllerError(full), shutil.Error([("a", "b", str(full))]),
                OSError(errno.EDQUOT, "Disk quota exceeded")):
        found = disk_full_error(exc)
        assert found is not None and found.errno in (errno.ENOSPC, errno.EDQUOT), exc
    for exc in (OSError(errno.EACCES, "Permission denied"), RuntimeError("unexpected pos"),
                WorkerGroupError("rank 0 failed", {0: ValueError("nan")})):
        assert disk_full_error(exc) is None


@pytest.mark.integration
def test_a_ray_task_that_fills_the_disk_is_one_line_exit_1(small_disk, capsys):
    """An out-of-space error raised inside a Ray worker reaches the command as a
    RayTaskError: `guarded` turns it into one line naming the file's disk, exit 1."""
    import ray

    disk = small_disk(16 * 1024)

    def write(path: str) -> None:
        atomic_write_parquet(path, pa.table({"x": np.arange(300_000, dtype=np.float64)}))

    fresh_ray(num_cpus=1, include_dashboard=False)
    try:
        ref = ray.remote(write).remote(str(disk / "part-000000.parquet"))
        code = guarded(lambda argv: ray.get(ref))
    finally:
        ray.shutdown()
    err = capsys.readouterr().err.strip().splitlines()  # (Ray's own INFO lines first)
    assert code == 1
    assert err[-1].startswith("error: disk full: No space left on device writing "
                              f"{disk}/part-000000.parquet (filesystem {disk}: "), err
    assert sum(x.startswith("error: ") for x in err) == 1
    assert not [x for x in err if x.startswith("Traceback")]
    assert _files(disk) == []


def test_a_command_that_fills_the_disk_says_so_in_one_line_then_resumes(write_dataset,
                                                                        small_disk, tmp_path):
    """`pipelines/dataset.py subset` onto a small disk (no Ray: seconds): exit 1, one line
    naming the disk and --out, not a traceback; with space again the same command finishes
    with the same dataset as on a big disk."""
    data = write_dataset(tasks=("a", "b"), episodes=6, T=40, shard_rows=40)
    disk = small_disk(8 * 1024)
    cmd = [sys.executable, str(REPO / "pipelines/dataset.py"), "subset", str(data),
           "--tasks", "a", "b", "--out"]
    r = subprocess.run([*cmd, str(disk / "sub")], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith(f"error: disk full: No space left on device writing under "
                               f"{disk}/sub (filesystem {disk}: ")
    assert lines[0].endswith("free space there or choose another --out, then rerun the same "
                             "command to resume")
    assert not (disk / "sub" / "manifest.json").exists()
    _remount(disk, 4 * 1024 * 1024)
    again = subprocess.run([*cmd, str(disk / "sub")], capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    ref = subprocess.run([*cmd, str(tmp_path / "ref")], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]

    def shards(root: Path) -> dict:
        m = json.loads((root / "manifest.json").read_text())
        return {t: (v["transitions"], [s["sha256"] for s in v["shards"]])
                for t, v in m["tasks"].items()}

    assert shards(disk / "sub") == shards(tmp_path / "ref")
    assert not [p for p in (disk / "sub").rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
@pytest.mark.integration
def test_a_collection_that_fills_the_disk_resumes_to_the_same_dataset(small_disk, tmp_path):
    """The Ray path end to end: a Maze2D smoke collection (one Ray task per map) onto a
    32 KiB disk fails in one line (exit 1) with nothing half-written; enlarged, the same
    command finishes with the dataset an uninterrupted collection writes."""
    from mtdiff.data.reader import validate_dataset

    disk = small_disk(32 * 1024)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}

    def collect(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "pipelines/collect.py"), "--suite",
                               "maze2d", "--preset", "smoke", "--out", str(out),
                               "--no-progress"], capture_output=True, text=True, timeout=600,
                              cwd=tmp_path, env=env)

    r = collect(disk / "data")
    assert r.returncode == 1, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: disk full: ") and f"(filesystem {disk}:" in last, last
    assert not [x for x in r.stderr.splitlines() if x.startswith("Traceback")]
    assert not (disk / "data" / "manifest.json").exists()
    assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]
    _remount(disk, 1024 * 1024)
    assert collect(disk / "data").returncode == 0
    assert collect(tmp_path / "ref").returncode == 0
    assert validate_dataset(disk / "data") == []

    def shards(root: Path) -> dict:
        m = json.loads((root / "manifest.json").read_text())
        return {t: (v["transitions"], [s["sha256"] for s in v["shards"]])
                for t, v in m["tasks"].items()}

    assert shards(disk / "data") == shards(tmp_path / "ref")


@pytest.mark.slow
@pytest.mark.integration
def test_a_training_that_fills_the_disk_leaves_no_partial_checkpoint_and_resumes(
        write_dataset, small_disk, tmp_path):
    """Ray Train on a 1.5 MiB --out (a smoke checkpoint is ~1 MiB): the copy of the second
    checkpoint fills it. One line, exit 1; Ray's cut-short copies (one per retry of the
    worker group) were left behind and held the space: now removed. With room again the
    same command resumes from the checkpoint that was complete and finishes."""
    data = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    disk = small_disk(1536 * 1024)
    cmd = _train(data, disk / "train", 20)
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 1, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: disk full: No space left on device writing under "
                           f"{disk}/train (filesystem {disk}: "), last
    assert not [x for x in r.stderr.splitlines() if x.startswith("Traceback")]
    steps = [int(load_checkpoint(f.parent)["step"])  # every one left loads
             for f in (disk / "train").rglob("checkpoint.pt")]
    for snap in (disk / "train").rglob(RAY_SNAPSHOT):
        json.loads(snap.read_text())
    assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]
    _remount(disk, 16 * 1024 * 1024)
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]
    if steps:
        assert f"from step {max(steps)}" in again.stdout, again.stdout[-2000:]
    final = load_checkpoint(again.stdout.strip().splitlines()[-1].split("checkpoint: ")[1])
    assert final["step"] == 20
