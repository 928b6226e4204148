"""The return R the planner conditions on, and the target evaluation asks for: reachable
from every state of a goal-terminated (Maze2D) episode."""

from __future__ import annotations

import numpy as np
import pytest

from mtdiff.config import ConfigError, DataConfig, apply_overrides, get_preset
from mtdiff.data.reader import TaskData
from mtdiff.data.windows import (
    default_return_scale,
    normalized_returns,
    resolve_target,
    return_info,
)
from tests.conftest import untrained_checkpoint


def _goal_task(lengths: list[int], reached: list[bool]) -> TaskData:
    """Maze2D-like goal episodes: reward 1 on the step that reaches G, which ends the
    episode (terminated); an episode that never gets there is truncated at its cap."""
    rew, term, trunc, ep, step = [], [], [], [], []
    for i, (n, ok) in enumerate(zip(lengths, reached, strict=True)):
        last = np.arange(n) == n - 1
        rew.append(last * float(ok))
        term.append(last & ok)
        trunc.append(last & (not ok))
        ep.append(np.full(n, i))
        step.append(np.arange(n))
    n = sum(lengths)
    return TaskData("t", np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32),
                    np.concatenate(rew).astype(np.float32), np.concatenate(term),
                    np.concatenate(trunc), np.concatenate(term),
                    np.concatenate(ep).astype(np.int64), np.concatenate(step).astype(np.int32))


def test_goal_episode_return_is_one_at_every_state_of_a_success():
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(20, 150, size=60)] + [200, 200]
    reached = [True] * 60 + [False, False]  # two episodes run out of time at the cap
    task = _goal_task(lengths, reached)
    assert default_return_scale("maze2d", [task]) == "episode"
    R = normalized_returns(task, 0.99, "episode")
    success_rows = np.repeat(reached, lengths)
    assert (R[success_rows] == 1.0).all()  # the target, from every state that reached G
    assert (R[~success_rows] == 0.0).all()  # ... and R still tells a failure apart
    # The discounted reward-to-go (the default elsewhere) is ~0.99^(steps to G): the
    # target's neighbourhood only next to G.
    old = normalized_returns(task, 0.99, "time-max")
    assert np.mean(old[success_rows] >= 0.99) < 0.1
    info = return_info("episode", 0.99, R)
    assert info["min"] <= resolve_target(info, None) == 1.0 <= info["max"]
    assert info["discount"] == 1.0  # the whole-episode return is undiscounted


def test_default_scale_is_time_max_where_episodes_do_not_end_at_a_goal():
    cut = _goal_task([50, 60], [False, False])  # D4RL-style: cut, never terminated
    fell = _goal_task([50, 60], [True, True])  # terminated, but Ant-dir's falls are no goal
    assert default_return_scale("maze2d", [cut]) == "time-max"
    assert default_return_scale("ant-dir", [fell]) == "time-max"
    assert default_return_scale("metaworld", [cut]) == "time-max"


def test_task_max_of_alike_rows_is_the_target_not_zero():
    """All episodes reach G: every undiscounted reward-to-go is 1, all of them the best."""
    task = _goal_task([30, 40, 50], [True, True, True])
    np.testing.assert_array_equal(normalized_returns(task, 1.0, "task-max"), 1.0)


def test_return_scale_option_default_and_error():
    assert DataConfig().return_scale is None  # the data's default
    cfg = apply_overrides(get_preset("smoke"), ["data.return_scale=time-max"])
    assert cfg.data.return_scale == "time-max"  # the old Maze2D default stays selectable
    with pytest.raises(ConfigError, match="return_scale"):
        DataConfig(return_scale="whole")  # type: ignore[arg-type]


@pytest.fixture
def goal_maze(tmp_path):
    """A real Maze2D collection of goal-terminated expert episodes (local's kind, small)
    and an untrained MTDiff-P checkpoint over it."""
    from mtdiff.collect.maze2d import _maze_job, plan_maze2d

    cfg = apply_overrides(get_preset("smoke"), [
        "maze2d.train_maps=train-0", "maze2d.unseen_maps=unseen-0", "maze2d.episodes=goal",
        "maze2d.episodes_per_map=12", "maze2d.action_noise=0.2"])
    data = tmp_path / "data"
    prompts = {j.task: _maze_job(j, cfg, str(data)) for j in plan_maze2d(cfg).jobs}
    ckpt = untrained_checkpoint(cfg, data, prompts, (4, 2), suite="maze2d", source="test",
                                tasks=["train-0"], out=tmp_path / "ckpt")
    return cfg, data, ckpt


def _reached_rows(task: TaskData) -> np.ndarray:
    """(N,) bool: the row's episode ended at the goal (terminated)."""
    starts = task.episode_starts
    ends = np.r_[starts[1:], len(task)]
    return np.repeat(task.terminated[ends - 1], ends - starts)


def test_maze2d_goal_data_reaches_the_evaluation_target_from_every_state(goal_maze):
    from mtdiff.data.reader import load_dataset
    from mtdiff.eval.planner import load_planner
    from mtdiff.train.core import build_setup

    cfg, data, ckpt = goal_maze
    reached = _reached_rows(load_dataset(data).tasks["train-0"])
    assert reached.mean() > 0.5  # most episodes reach G (the expert, with noise)
    R = build_setup(cfg, data).sampler.ret  # (N,) the returns training conditions on
    # Every state of an episode that reached G may ask for the target (R >= 0.99); with
    # the discounted reward-to-go, ~1% of the rows could.
    assert (R[reached] >= 0.99).all()
    assert np.mean(R >= 0.99) >= reached.mean()
    info = load_planner(ckpt).returns  # what evaluation reads from the checkpoint
    assert info["scale"] == "episode"
    assert info["min"] <= resolve_target(info, cfg.eval.target_return) <= info["max"]
