"""Meta-World MT50-rand: task sets, the env factory and the scripted experts (~15 s)."""

from __future__ import annotations

import numpy as np
import pytest

from mtdiff import keys
from mtdiff.collect.scripted import expert_demos, rollout_scripted, scripted_policy
from mtdiff.envs.metaworld import (
    ACT_DIM,
    ALL_TASKS,
    OBS_DIM,
    TASK_SETS,
    make_env,
    resolve_tasks,
)

metaworld = pytest.importorskip("metaworld")

PAPER_UNSEEN = {"box-close-v3", "hand-insert-v3", "bin-picking-v3"}  # paper Table 2

# ----------------------------------------------------------------------------------------
# Task names and sets
# ----------------------------------------------------------------------------------------


def test_task_lists_match_installed_metaworld() -> None:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS, ML45_V3, MT10_V3
    from metaworld.policies import ENV_POLICY_MAP

    assert ALL_TASKS == tuple(ALL_V3_ENVIRONMENTS)
    assert TASK_SETS["MT10"] == tuple(MT10_V3)
    assert set(TASK_SETS["heldout-5"]) == set(ML45_V3["test"])  # Meta-World's ML45 split
    assert set(ENV_POLICY_MAP) == set(ALL_TASKS)


@pytest.mark.parametrize("name,size", [
    ("MT10", 10), ("MT50", 50), ("tasks-10", 10), ("tasks-20", 20), ("tasks-30", 30),
    ("tasks-45", 45), ("train-45", 45), ("heldout-5", 5), ("all", 50),
])
def test_named_sets_resolve_with_their_sizes(name: str, size: int) -> None:
    tasks = resolve_tasks(name)
    assert len(tasks) == len(set(tasks)) == size
    assert set(tasks) <= set(ALL_TASKS)
    assert resolve_tasks(name.lower()) == tasks  # set names are case-insensitive


def test_ablation_sets_are_nested_and_train_heldout_split() -> None:
    sizes = [set(resolve_tasks(f"tasks-{n}")) for n in (10, 20, 30, 45)]
    assert all(a < b for a, b in zip(sizes, sizes[1:], strict=False))
    train, heldout = resolve_tasks("train-45"), resolve_tasks("heldout-5")
    assert resolve_tasks("tasks-45") == train
    assert not set(train) & set(heldout)
    assert set(train) | set(heldout) == set(ALL_TASKS)
    assert PAPER_UNSEEN <= set(heldout)
    # The paper's seen-task evaluations (Table 2, Fig. 6/7) need these in every ablation set.
    assert {"coffee-push-v3", "disassemble-v3", "dial-turn-v3", "sweep-into-v3"} <= sizes[0]


def test_comma_lists_keep_order_and_drop_duplicates() -> None:
    assert resolve_tasks(" push-v3, reach-v3 ,push-v3") == ["push-v3", "reach-v3"]
    mixed = resolve_tasks("heldout-5,reach-v3")
    assert mixed == [*TASK_SETS["heldout-5"], "reach-v3"]


def test_unknown_task_error_names_it_and_suggests() -> None:
    with pytest.raises(ValueError) as err:
        resolve_tasks("reach-v3,pick-plase-v3")
    msg = str(err.value)
    assert "'pick-plase-v3'" in msg and "pick-place-v3" in msg  # the name and a close match
    for set_name in TASK_SETS:
        assert set_name in msg
    with pytest.raises(ValueError, match="empty"):
        resolve_tasks(" , ")
    with pytest.raises(ValueError, match="one Meta-World task"):
        make_env("MT10", seed=0)


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


def test_env_spaces_shapes_dtypes_and_truncation() -> None:
    env = make_env("reach-v3", seed=0, max_episode_steps=7)
    assert env.observation_space.shape == (OBS_DIM,) == (39,)
    assert env.action_space.shape == (ACT_DIM,) == (4,)
    assert env.observation_space.dtype == np.float32
    obs, info = env.reset()
    assert obs.shape == (39,) and obs.dtype == np.float32 and obs in env.observation_space
    assert 0 <= info["goal_index"] < 50
    truncs = []
    for _ in range(7):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.dtype == np.float32 and isinstance(reward, float) and not terminated
        assert "success" in info
        truncs.append(truncated)
    assert truncs == [False] * 6 + [True]
    # Longer than Meta-World's own 500-step horizon is allowed (it would raise otherwise).
    long_env = make_env("reach-v3", seed=0, max_episode_steps=501)
    assert long_env.unwrapped.max_path_length == 501


def _goal_sequence(seed: int, n: int) -> tuple[list[int], np.ndarray]:
    env = make_env("push-v3", seed=seed)
    resets = [env.reset() for _ in range(n)]
    return [info["goal_index"] for _, info in resets], np.stack([o for o, _ in resets])


def test_goal_varies_across_resets_and_is_repeatable_per_seed() -> None:
    goals, obs = _goal_sequence(seed=3, n=6)
    assert len(set(goals)) > 1
    assert len({tuple(o[-3:]) for o in obs}) > 1  # the goal is observed (last 3 dims)
    goals_again, obs_again = _goal_sequence(seed=3, n=6)
    assert goals == goals_again and np.array_equal(obs, obs_again)
    assert _goal_sequence(seed=4, n=6)[0] != goals
    # reset(seed=...) restarts the sequence; options pick a goal explicitly.
    env = make_env("push-v3", seed=99)
    assert env.reset(seed=3)[1]["goal_index"] == goals[0]
    assert env.reset(options={"goal_index": 11})[1]["goal_index"] == 11


# ----------------------------------------------------------------------------------------
# Scripted experts
# ----------------------------------------------------------------------------------------


def test_scripted_policy_lookup() -> None:
    assert type(scripted_policy("reach-v3")).__name__ == "SawyerReachV3Policy"
    with pytest.raises(ValueError, match="reach-v3"):
        scripted_policy("reach-v2")


@pytest.mark.parametrize("task", ["reach-v3", "push-v3"])
def test_noise_free_expert_succeeds(task: str) -> None:
    for ep in expert_demos(task, num_episodes=2, seed=0):  # 500 steps, as Meta-World
        assert ep[keys.SUCCESS].any()


def test_episode_dict_format() -> None:
    (ep,) = rollout_scripted("reach-v3", num_episodes=1, noise_std=0.3, seed=1,
                             max_episode_steps=40)
    expected = {
        keys.OBSERVATION: ((40, 39), np.float32), keys.ACTION: ((40, 4), np.float32),
        keys.REWARD: ((40,), np.float32), keys.TERMINATED: ((40,), np.bool_),
        keys.TRUNCATED: ((40,), np.bool_), keys.SUCCESS: ((40,), np.bool_),
    }
    assert set(ep) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert ep[key].shape == shape and ep[key].dtype == dtype, key
    assert np.all(np.abs(ep[keys.ACTION]) <= 1.0)
    assert not ep[keys.TERMINATED].any()
    assert ep[keys.TRUNCATED].tolist() == [False] * 39 + [True]


def test_noise_changes_actions_and_rollouts_are_deterministic() -> None:
    def run(noise: float, seed: int) -> dict[str, np.ndarray]:
        return next(rollout_scripted("reach-v3", num_episodes=1, noise_std=noise, seed=seed,
                                     max_episode_steps=30))

    clean, noisy = run(0.0, 5), run(0.3, 5)
    # Same seed, same goal: the first observation agrees, the actions do not.
    assert np.array_equal(clean[keys.OBSERVATION][0], noisy[keys.OBSERVATION][0])
    assert not np.allclose(clean[keys.ACTION], noisy[keys.ACTION])
    again = run(0.3, 5)
    for key in noisy:
        assert np.array_equal(noisy[key], again[key]), key
    with pytest.raises(ValueError, match="noise_std"):
        run(-0.1, 5)
