"""TD3-BC on a tiny real dataset: transitions, losses, actions, checkpoints, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtdiff.collect.scripted import rollout_scripted
from mtdiff.config import OfflineConfig
from mtdiff.data.reader import TaskData, load_dataset
from mtdiff.data.transitions import Transitions, concat, from_dataset, from_task
from mtdiff.data.writer import TaskWriter, finalize_dataset
from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM
from mtdiff.offline.evaluate import evaluate_policy
from mtdiff.offline.run import run_td3bc
from mtdiff.offline.td3bc import TD3BC

torch.set_num_threads(1)
TINY = OfflineConfig(hidden=64, batch_size=64, steps=20, eval_every=10, eval_episodes=2,
                     eval_envs=2)


@pytest.fixture(scope="module")
def reach(tmp_path_factory: pytest.TempPathFactory) -> Transitions:
    """4 noisy scripted reach-v3 episodes of 100 steps, through the real writer and reader."""
    root = tmp_path_factory.mktemp("reach")
    w = TaskWriter(root, "reach-v3", OBS_DIM, ACT_DIM, shard_rows=150)
    for e, ep in enumerate(rollout_scripted("reach-v3", num_episodes=4, noise_std=0.3, seed=0,
                                            max_episode_steps=100)):
        w.add_episode(e, ep)
    w.close()
    finalize_dataset(root, suite="metaworld", source="scripted", tasks=["reach-v3"], config={},
                     config_hash="test")
    return from_dataset(load_dataset(root))


def test_transitions_pair_rows_within_episodes(reach: Transitions) -> None:
    # 4 episodes x 100 rows; each episode's truncated last row has no s' and is dropped.
    assert len(reach) == 4 * 99
    assert (reach.rows % 100 != 99).all()
    np.testing.assert_array_equal(reach.observations[1:99], reach.next_observations[:98])
    assert not np.array_equal(reach.next_observations[98], reach.observations[99])  # episode cut
    assert reach.terminals.sum() == 0
    # A terminal last row is kept (its s' is never used); an unfinished one is dropped.
    T = 5
    td = TaskData("t", np.arange(2 * T * 2, dtype=np.float32).reshape(2 * T, 2),
                  np.zeros((2 * T, 1), np.float32), np.ones(2 * T, np.float32),
                  np.r_[np.zeros(T - 1, bool), True, np.zeros(T, bool)], np.zeros(2 * T, bool),
                  np.zeros(2 * T, bool), np.repeat([0, 1], T), np.tile(np.arange(T), 2))
    tr = from_task(td)
    assert len(tr) == 2 * T - 1 and tr.terminals.sum() == 1 and tr.rows[T - 1] == T - 1
    assert len(concat([tr, tr])) == 2 * len(tr)


def test_td3bc_losses_finite_and_decreasing(reach: Transitions) -> None:
    agent = TD3BC(OBS_DIM, ACT_DIM, TINY, seed=0)
    agent.fit_normalizer(reach.observations)
    logs = agent.train(reach, 400, log_every=100)
    assert len(logs) == 4 and agent.step == 400
    assert all(np.isfinite(v) for log in logs for v in log.values())
    # Measured: critic 125 -> 1.5 and BC 0.147 -> 0.122 over these windows.
    assert logs[-1]["critic_loss"] < 0.1 * logs[0]["critic_loss"]
    assert logs[-1]["bc_loss"] < logs[0]["bc_loss"]
    assert logs[-1]["lambda"] > 0


def test_actor_output_in_unit_box(reach: Transitions) -> None:
    agent = TD3BC(OBS_DIM, ACT_DIM, TINY, seed=0)
    agent.fit_normalizer(reach.observations)
    wild = np.random.default_rng(0).normal(0, 1e3, (256, OBS_DIM)).astype(np.float32)
    for obs in (reach.observations, wild):
        a = agent.act(obs)
        assert a.shape == (len(obs), ACT_DIM) and a.dtype == np.float32
        assert np.abs(a).max() <= 1.0


def test_checkpoint_round_trip_resumes_exactly(reach: Transitions, tmp_path) -> None:
    agent = TD3BC(OBS_DIM, ACT_DIM, TINY, seed=3)
    agent.fit_normalizer(reach.observations)
    agent.train(reach, 31, log_every=100)
    path = agent.save(tmp_path / "td3bc.pt")
    loaded = TD3BC.load(path)  # torch.load(weights_only=True) inside
    assert loaded.step == 31 and loaded.cfg == agent.cfg
    np.testing.assert_array_equal(loaded.act(reach.observations), agent.act(reach.observations))
    # Weights, optimisers, targets, normaliser and the RNG all restored: identical update.
    i = np.random.default_rng(0).integers(len(reach), size=64)  # not from either agent's RNG
    batch = {k: torch.as_tensor(v[i]) for k, v in (
        ("obs", reach.observations), ("act", reach.actions), ("rew", reach.rewards),
        ("next_obs", reach.next_observations), ("done", reach.terminals))}
    assert agent.update(batch) == loaded.update(batch)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == 1 and raw["config"]["alpha"] == 2.5


def test_evaluate_policy_batched(reach: Transitions) -> None:
    calls: list[int] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        calls.append(len(obs))
        return np.zeros((len(obs), ACT_DIM), np.float32)

    res = evaluate_policy(policy, "reach-v3", episodes=3, num_envs=2, max_episode_steps=15)
    assert res.episodes == 3 and res.successes.shape == (3,) and res.returns.shape == (3,)
    assert 0.0 <= res.success_rate <= 1.0 and res.mean_return > 0
    assert calls[:15] == [2] * 15 and calls[15:] == [1] * 15  # one call per step per wave
    again = evaluate_policy(policy, "reach-v3", episodes=3, num_envs=2, max_episode_steps=15)
    np.testing.assert_array_equal(res.returns, again.returns)  # same seed, same goals


def test_run_td3bc_logs_to_active_mlflow_run(reach: Transitions, tmp_path) -> None:
    mlflow = pytest.importorskip("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Artifacts under tmp_path too, not ./mlruns in the directory pytest runs from.
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "offline-test", artifact_location=(tmp_path / "artifacts").as_uri()))
    with mlflow.start_run() as run:
        res = run_td3bc(reach, "reach-v3", TINY, max_episode_steps=10,
                        checkpoint=tmp_path / "agent.pt", metric_prefix="td3bc/rad/",
                        log_every=5)
    assert [p["step"] for p in res.curve] == [10.0, 20.0]
    assert 0.0 <= res.success_rate <= 1.0 and res.checkpoint is not None
    client = mlflow.tracking.MlflowClient()
    hist = client.get_metric_history(run.info.run_id, "td3bc/rad/eval/success_rate")
    assert [m.step for m in hist] == [10, 20]
    assert [m.step for m in client.get_metric_history(run.info.run_id,
                                                      "td3bc/rad/critic_loss")] == [5, 10, 15, 20]
    # Without an active run nothing is logged and nothing fails.
    assert run_td3bc(reach, "reach-v3", TINY, max_episode_steps=5).curve[-1]["step"] == 20


def test_intermediate_evaluations_use_fewer_episodes_the_last_keeps_its_count(
        reach: Transitions, monkeypatch: pytest.MonkeyPatch) -> None:
    import mtdiff.offline.run as run_mod

    asked: list[int] = []

    def counting(*args, episodes: int, **kw):
        asked.append(episodes)
        return evaluate_policy(*args, episodes=episodes, **kw)

    monkeypatch.setattr(run_mod, "evaluate_policy", counting)
    cfg = OfflineConfig(hidden=64, batch_size=64, steps=30, eval_every=10, eval_episodes=3,
                        eval_episodes_intermediate=1, eval_envs=2)
    res = run_td3bc(reach, "reach-v3", cfg, max_episode_steps=5)
    assert asked == [1, 1, 3]  # steps 10 and 20: the curve; step 30: the result
    assert [p["episodes"] for p in res.curve] == [1.0, 1.0, 3.0]
    asked.clear()  # never more than the last evaluation's count
    run_td3bc(reach, "reach-v3", TINY, max_episode_steps=5)
    assert asked == [2, 2]
