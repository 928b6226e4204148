"""Dataset format: round trip, validation failures with clear messages, resume, views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtdiff import keys
from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
from mtdiff.data.schema import DatasetError, transition_schema
from mtdiff.data.writer import INDEX, MANIFEST, TaskIndex, TaskWriter
from tests.conftest import make_episode


def _first_shard(root: Path, task: str = "a") -> Path:
    return root / read_manifest(root)["tasks"][task]["shards"][0]["file"]


def _rewrite_shard(root: Path, path: Path, table: pa.Table) -> None:
    """Replace a shard and make the manifest agree on its size (only its content is bad)."""
    pq.write_table(table, path)
    m = json.loads((root / MANIFEST).read_text())
    for entry in m["tasks"].values():
        for s in entry["shards"]:
            if root / s["file"] == path:
                s["bytes"] = path.stat().st_size
                s.pop("sha256")
    (root / MANIFEST).write_text(json.dumps(m))


def test_round_trip_values_and_stats(write_dataset, tmp_path):
    root = write_dataset(tasks=("a", "b"), episodes=6, T=20, shard_rows=50)
    ds = load_dataset(root)
    assert ds.task_names == ["a", "b"] and ds.obs_dim == 6 and ds.act_dim == 2
    a = ds.tasks["a"]
    assert len(a) == 120 and a.num_episodes == 6
    assert list(a.step[:21]) == list(range(20)) + [0]
    m = read_manifest(root)
    assert len(m["tasks"]["a"]["shards"]) == 2  # flushed at >= 50 rows: 3 whole episodes each
    allobs = np.concatenate([ds.tasks[t].observations for t in ds.task_names])
    np.testing.assert_allclose(ds.stats[keys.OBSERVATION]["mean"], allobs.mean(0), atol=1e-5)
    np.testing.assert_allclose(ds.stats[keys.OBSERVATION]["std"], allobs.std(0), atol=1e-4)
    assert validate_dataset(root) == []


def test_sub_optimal_view_is_first_half_of_episodes(write_dataset):
    root = write_dataset(episodes=7, T=10)
    sub = load_dataset(root, view="sub-optimal").tasks["a"]
    full = load_dataset(root).tasks["a"]
    assert sub.num_episodes == 3 and len(sub) == 30
    np.testing.assert_array_equal(sub.observations, full.observations[:30])


def test_truncated_shard_fails_clearly(write_dataset):
    root = write_dataset()
    shard = _first_shard(root)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"part-000000\.parquet.*truncated"):
        load_dataset(root)
    problems = validate_dataset(root)
    assert len(problems) == 1 and "truncated" in problems[0] and "'a'" in problems[0]


def test_corrupt_bytes_same_size_fail_checksum(write_dataset):
    root = write_dataset()
    shard = _first_shard(root)
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert any("checksum" in p or "corrupt" in p for p in validate_dataset(root))


def test_nan_in_shard_fails_clearly(write_dataset):
    root = write_dataset()
    shard = _first_shard(root)
    table = pq.read_table(shard)
    rew = table.column(keys.REWARD).to_numpy().copy()
    rew[7] = np.nan
    _rewrite_shard(root, shard, table.set_column(
        table.schema.get_field_index(keys.REWARD), pa.field(keys.REWARD, pa.float32(), False),
        pa.array(rew, pa.float32())))
    with pytest.raises(DatasetError, match=r"part-000000.*'reward' contains NaN.*row 7"):
        load_dataset(root)


def test_writer_rejects_nan_and_wrong_dims(tmp_path):
    rng = np.random.default_rng(0)
    w = TaskWriter(tmp_path, "a", 6, 2, 100)
    ep = make_episode(rng, 5)
    ep[keys.OBSERVATION][2, 1] = np.inf
    with pytest.raises(DatasetError, match="observation contains NaN or inf"):
        w.add_episode(0, ep)
    with pytest.raises(DatasetError, match=r"observation has shape \(5, 4\), expected \(5, 6\)"):
        w.add_episode(0, make_episode(rng, 5, obs_dim=4))
    with pytest.raises(DatasetError, match="dims obs=6 act=2.*obs=4"):
        TaskWriter(tmp_path, "a", 4, 2, 100)


def test_dimension_mismatch_in_shard_fails_clearly(write_dataset, tmp_path):
    root = write_dataset(obs_dim=6)
    other = write_dataset(obs_dim=5, name="other")
    shard = _first_shard(root)
    _rewrite_shard(root, shard, pq.read_table(_first_shard(other)))
    with pytest.raises(DatasetError, match=r"schema does not match.*obs_dim=6.*observation"):
        load_dataset(root)


def test_unknown_task_fails_with_suggestion(write_dataset):
    root = write_dataset(tasks=("reach-v3", "push-v3"))
    with pytest.raises(DatasetError, match=r"unknown task 'reach-v2' \(did you mean 'reach-v3'"):
        load_dataset(root, tasks=["reach-v2"])


def test_missing_manifest_and_missing_shard(write_dataset):
    root = write_dataset()
    _first_shard(root).unlink()
    with pytest.raises(DatasetError, match="missing"):
        load_dataset(root)
    (root / MANIFEST).unlink()
    with pytest.raises(DatasetError, match="incomplete.*rerun the same collect command"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(root / "nope")


def test_duplicated_rows_are_detected(write_dataset):
    root = write_dataset(episodes=6, T=20, shard_rows=40)
    m = read_manifest(root)
    shards = m["tasks"]["a"]["shards"]
    # A resume bug that writes shard 0 again after shard 1: (episode, step) repeats.
    shards.insert(2, dict(shards[0]))
    (root / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="row order broken.*written twice"):
        load_dataset(root)


def test_writer_resumes_after_kill_without_loss_or_duplicates(tmp_path):
    rng = np.random.default_rng(1)
    eps = [make_episode(rng, 10) for _ in range(10)]
    w = TaskWriter(tmp_path, "a", 6, 2, shard_rows=25)
    for i in range(7):
        w.add_episode(i, eps[i], state={"episodes_done": i + 1})
    # "Kill": the writer is dropped with 1 episode buffered; a crash also left an orphan
    # shard (renamed but never listed in the index) and a temp file.
    folder = tmp_path / "data" / "a"
    (folder / "part-000099.parquet").write_bytes(b"orphan")
    (folder / ".part-000002.parquet.123.tmp").write_bytes(b"half")
    del w
    w = TaskWriter(tmp_path, "a", 6, 2, shard_rows=25)
    assert not (folder / "part-000099.parquet").exists()
    assert not list(folder.glob("*.tmp"))
    done = w.index.state["episodes_done"]
    assert done == 6 and w.committed_rows == 60  # two shards of 3 whole episodes
    for i in range(done, 10):
        w.add_episode(i, eps[i], state={"episodes_done": i + 1})
    w.close()
    idx = TaskIndex.load(folder / INDEX)
    tables = [pq.read_table(folder / s["file"]) for s in idx.shards]
    t = pa.concat_tables(tables)
    pairs = list(zip(t.column(keys.EPISODE).to_pylist(), t.column(keys.STEP).to_pylist(),
                     strict=True))
    assert len(pairs) == 100 and len(set(pairs)) == 100
    got = np.stack(t.column(keys.OBSERVATION).to_pylist())
    np.testing.assert_array_equal(got, np.concatenate([e[keys.OBSERVATION] for e in eps]))


def test_writer_rejects_out_of_order_rows(tmp_path):
    rng = np.random.default_rng(2)
    w = TaskWriter(tmp_path, "a", 6, 2, 100)
    w.add_episode(3, make_episode(rng, 5))
    with pytest.raises(DatasetError, match="does not follow"):
        w.add_episode(2, make_episode(rng, 5))
    w.add_episode(3, make_episode(rng, 5), first_step=5)  # a continued piece is fine


def test_schema_is_explicit():
    s = transition_schema(39, 4)
    assert s.names == list(keys.TRANSITION_COLUMNS)
    assert s.field(keys.OBSERVATION).type.list_size == 39
    assert s.field(keys.ACTION).type.list_size == 4


def test_written_files_keep_the_users_umask(tmp_path):
    """Issue 15, item 8: atomic writes used mkstemp's 0600; a group-shared output folder
    needs the mode a plain open() gives under the user's umask."""
    import os
    import stat

    from mtdiff.data import io

    old = os.umask(0o027)
    try:
        io._UMASK.clear()
        p = io.atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
    finally:
        os.umask(old)
        io._UMASK.clear()
    p = io.atomic_write_json(tmp_path / "b.json", {"a": 1})
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~old
