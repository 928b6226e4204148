"""SAC: the agent's maths and checkpoints (seconds), and SAC collection on a local Ray
through the real CLI (smoke, kill + resume, MLflow)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdiff.collect.sac import Actor, ReplayBuffer, SACAgent, SACHyper, TwinQ
from mtdiff.config import ConfigError, SACConfig, apply_overrides, get_preset

REPO = Path(__file__).resolve().parents[1]
OBS, ACT = 39, 4


def _filled_buffer(n: int = 600, batch: int = 32, seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = ReplayBuffer(1000, OBS, ACT, batch, torch.device("cpu"))
    buf.add_many(rng.normal(size=(n, OBS)).astype(np.float32),
                 rng.uniform(-1, 1, (n, ACT)).astype(np.float32), rng.random(n).astype(np.float32),
                 rng.normal(size=(n, OBS)).astype(np.float32), np.zeros(n, np.float32))
    return buf


def test_twin_q_is_two_independent_mlps():
    """The stacked-weight critic equals two plain Linear-ReLU MLPs with its weights."""
    q = TwinQ(OBS, ACT, 16, torch.Generator().manual_seed(0))
    obs, act = torch.randn(5, OBS), torch.randn(5, ACT)
    x = torch.cat([obs, act], -1)
    for i in range(2):
        h = torch.relu(x @ q.w1[i] + q.b1[i])
        h = torch.relu(h @ q.w2[i] + q.b2[i])
        torch.testing.assert_close(q(obs, act)[i], (h @ q.w3[i] + q.b3[i]).squeeze(-1))


def test_actor_log_prob_matches_tanh_transformed_normal():
    """log pi(a|s) of the squashed Gaussian against torch.distributions (CleanRL's 1e-6)."""
    actor = Actor(OBS, ACT, 32, torch.Generator().manual_seed(0))
    obs = torch.randn(64, OBS)
    gen = torch.Generator().manual_seed(1)
    a, logp = actor.sample(obs, gen)
    mean, log_std = actor.dist(obs)
    assert (log_std >= -5).all() and (log_std <= 2).all() and a.abs().max() < 1
    base = torch.distributions.Normal(mean, log_std.exp())
    x = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    ref = (base.log_prob(x) - torch.log(1 - a.square() + 1e-6)).sum(-1)
    torch.testing.assert_close(logp, ref, rtol=1e-3, atol=1e-3)


def test_update_moves_losses_and_targets_by_tau():
    agent = SACAgent(OBS, ACT, SACHyper(hidden=32, batch_size=32), seed=0, device="cpu")
    buf = _filled_buffer()
    before_q = agent.q.w3.detach().clone()
    before_t = agent.q_target.w3.detach().clone()
    out = agent.update(buf)
    assert set(out) == {"q_loss", "pi_loss", "alpha_loss", "alpha"}
    assert all(torch.isfinite(v) for v in out.values())
    after_q = agent.q.w3.detach()
    # Polyak with tau: Q' <- Q' + tau (Q_new - Q')
    torch.testing.assert_close(agent.q_target.w3, before_t + 0.005 * (after_q - before_t))
    assert not torch.equal(after_q, before_q)
    assert agent.target_entropy == -ACT


def test_checkpoint_round_trip_is_exact(tmp_path):
    """Networks, targets, optimiser, temperature and generator all restore (weights_only)."""
    buf = _filled_buffer()
    a = SACAgent(OBS, ACT, SACHyper(hidden=32, batch_size=32), seed=0, device="cpu")
    for _ in range(3):
        a.update(buf)
    torch.save(a.state_dict(), tmp_path / "agent.pt")
    b = SACAgent(OBS, ACT, SACHyper(hidden=32, batch_size=32), seed=99, device="cpu")
    b.load_state_dict(torch.load(tmp_path / "agent.pt", weights_only=True))
    for _ in range(3):
        la, lb = a.update(buf), b.update(buf)
        assert la["q_loss"] == lb["q_loss"]
    np.testing.assert_array_equal(a.act(np.ones(OBS, np.float32)), b.act(np.ones(OBS, np.float32)))
    assert math.isclose(a.log_alpha.item(), b.log_alpha.item())


def test_replay_ring_keeps_the_latest_rows():
    buf = ReplayBuffer(5, 1, 1, 2, torch.device("cpu"))
    col = np.arange(7, dtype=np.float32)[:, None]
    buf.add_many(col, col, col[:, 0], col, np.zeros(7, np.float32))
    assert buf.size == 5 and buf.pos == 2
    assert sorted(buf.data[:, 0].tolist()) == [2, 3, 4, 5, 6]
    buf.add(np.array([9.0], np.float32), np.array([0.0], np.float32), 0.0,
            np.array([0.0], np.float32), False)
    assert buf.data[2, 0] == 9 and buf.pos == 3


def test_sac_config_validates_and_enters_the_hash():
    with pytest.raises(ConfigError, match="SACConfig.backend"):
        SACConfig(backend="sb3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gamma"):
        SACConfig(gamma=1.0)
    scripted = get_preset("smoke")
    assert (apply_overrides(scripted, ["sac.lr=1e-3"]).collection_hash("metaworld")
            == scripted.collection_hash("metaworld"))  # scripted data ignores SAC settings
    sac = apply_overrides(scripted, ["metaworld.source=sac"])
    assert (apply_overrides(sac, ["sac.lr=1e-3"]).collection_hash("metaworld")
            != sac.collection_hash("metaworld"))


# ----------------------------------------------------------------------------------------
# Collection on a local Ray, through the real CLI
# ----------------------------------------------------------------------------------------


def _collect(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pipelines/collect.py"), "--suite",
                           "metaworld", "--source", "sac", "--preset", "smoke", "--no-progress",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.mark.integration
@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_smoke_sac_collection_two_tasks_tracked(tmp_path):
    """2 tasks x 2,000 transitions on a local Ray: valid dataset, exact counts, every
    episode in order, MLflow child runs with curves and the plot."""
    from mlflow.tracking import MlflowClient

    from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset

    out = tmp_path / "mw"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = _collect("--out", str(out), "--track", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert validate_dataset(out) == []
    cfg = get_preset("smoke")
    man = read_manifest(out)
    assert man["source"] == "sac" and man["details"]["sac"]["backend"] == "lean"
    assert sorted(man["tasks"]) == ["push-v3", "reach-v3"]
    ds = load_dataset(out)
    for task in ds.tasks.values():
        assert len(task) == cfg.metaworld.transitions_per_task == 2_000
        assert task.num_episodes == 20 and task.truncated.sum() == 20  # 100-step episodes
        assert np.abs(task.actions).max() <= 1.0
    client = MlflowClient(uri)
    parent = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id],
                                "tags.stage = 'collect-metaworld'")[0]
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.data.tags["task"] for c in children) == ["push-v3", "reach-v3"]
    hist = client.get_metric_history(children[0].info.run_id, "eval_success")
    assert [m.step for m in hist] == [1000, 2000]
    assert "sac_curves.png" in [a.path for a in client.list_artifacts(parent.info.run_id)]


@pytest.mark.integration
@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_killed_sac_collection_resumes_exactly(tmp_path):
    """SIGKILL the driver's process group after a committed shard, rerun the same
    command: the rows equal an uninterrupted run's, none lost, none twice."""
    from mtdiff.collect.plan import task_seed
    from mtdiff.collect.sac import collect_task_lean
    from mtdiff.data.reader import load_dataset, validate_dataset
    from mtdiff.data.writer import INDEX, TaskIndex
    from tests.killing import kill_group, pause_env, wait_for_pause

    sets = ["metaworld.transitions_per_task=2000", "collect.shard_rows=500"]
    args = ["--tasks", "reach-v3", *[a for s in sets for a in ("--set", s)]]
    killed = tmp_path / "killed"
    flag = tmp_path / "paused"
    # Stops for good when the second shard is about to be committed: its rows, and the
    # agent checkpoint already written for it, die with the process.
    proc = subprocess.Popen([sys.executable, str(REPO / "pipelines/collect.py"), "--suite",
                             "metaworld", "--source", "sac", "--preset", "smoke",
                             "--no-progress", *args, "--out", str(killed)], cwd=tmp_path,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=pause_env("shards", 1, flag))
    index = killed / "data" / "reach-v3" / INDEX
    wait_for_pause(proc, flag, timeout=180)
    kill_group(proc)
    partial = TaskIndex.load(index)
    assert len(partial.shards) == 1 and 500 <= partial.rows < 2000 and not partial.done
    assert (index.parent / "sac-ckpt-000001").is_dir()  # written, never committed
    assert partial.state["ckpt"] == f"sac-ckpt-{len(partial.shards) - 1:06d}"
    r = _collect(*args, "--out", str(killed), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # The uninterrupted reference: the same task, seed and config, in this process.
    cfg = apply_overrides(get_preset("smoke"), ["metaworld.source=sac", *sets])
    clean = tmp_path / "clean"
    collect_task_lean("reach-v3", cfg, str(clean), task_seed(cfg.collect.seed, "reach-v3"))
    a = load_dataset(killed).tasks["reach-v3"]
    b = _task_rows(clean, "reach-v3")
    assert len(a) == len(b["reward"]) == 2000
    assert len(set(zip(a.episode.tolist(), a.step.tolist(), strict=True))) == 2000
    # Same rows as the uninterrupted run: the agent, its generator and the replay
    # buffer were restored exactly, and episodes restart from their own seeds.
    np.testing.assert_array_equal(a.observations, b["observation"])
    np.testing.assert_array_equal(a.actions, b["action"])
    np.testing.assert_array_equal(a.episode, b["episode"])
    assert validate_dataset(killed) == []
    ckpts = sorted(p.name for p in (killed / "data" / "reach-v3").glob("sac-ckpt-*"))
    assert ckpts == ["sac-ckpt-000003"]  # older ones deleted; the final agent kept


def _task_rows(root: Path, task: str) -> dict[str, np.ndarray]:
    """A task's committed rows (no manifest needed), concatenated in order."""
    import pyarrow.parquet as pq

    from mtdiff.data.schema import table_to_arrays
    from mtdiff.data.writer import INDEX, TaskIndex, task_dir

    folder = task_dir(root, task)
    parts = [table_to_arrays(pq.read_table(folder / s["file"]))
             for s in TaskIndex.load(folder / INDEX).shards]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.integration
@pytest.mark.slow
def test_rllib_backend_writes_the_same_format(tmp_path):
    """RLlib's SAC through the same CLI: one task, 300 transitions, a valid dataset."""
    from mtdiff.data.reader import load_dataset, validate_dataset

    out = tmp_path / "rl"
    r = _collect("--tasks", "reach-v3", "--set", "sac.backend=rllib", "--set",
                 "metaworld.transitions_per_task=300", "--set", "collect.shard_rows=200",
                 "--out", str(out), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert validate_dataset(out) == []
    task = load_dataset(out).tasks["reach-v3"]
    assert len(task) == 300 and task.num_episodes == 3 and task.truncated.sum() == 3
