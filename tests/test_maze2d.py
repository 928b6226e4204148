"""Maze2D: maps, the PointMaze environment, D4RL's waypoint expert and the generator."""

from __future__ import annotations

import warnings
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from mtdiff import keys
from mtdiff.config import Maze2DConfig
from mtdiff.envs.maze2d import (
    MazeMap,
    draw_maze,
    list_maps,
    load_map,
    make_env,
    parse_map,
)
from mtdiff.envs.maze2d_expert import (
    TARGET_KEY,
    WaypointExpert,
    expert_episode,
    generate_episodes,
    q_iteration,
)

SHIPPED = [f"train-{i}" for i in range(8)] + ["unseen-0", "unseen-1"]
GOOD = """\
#####
#OOO#
#O#G#
#####
"""


def _bfs(m: MazeMap, start: tuple[int, int]) -> dict[tuple[int, int], int]:
    dist = {start: 0}
    todo = deque([start])
    while todo:
        c = todo.popleft()
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (c[0] + di, c[1] + dj)
            if m.is_free(n) and n not in dist:
                dist[n] = dist[c] + 1
                todo.append(n)
    return dist


@pytest.fixture(scope="module")
def env():
    e = make_env("train-0", max_episode_steps=50, continuing=True)
    yield e
    e.close()


# --- maps ------------------------------------------------------------------------------


def test_shipped_maps_are_valid_distinct_and_medium_sized():
    assert list_maps() == sorted(SHIPPED)
    layouts = set()
    for name in SHIPPED:
        m = load_map(name)
        assert m.name == name
        assert m.shape == (8, 8)  # D4RL maze2d-medium's size
        assert m.rows[m.goal[0]][m.goal[1]] == "G"
        assert len(_bfs(m, m.goal)) == len(m.free)  # connected
        # No cell is further than 8 moves from G: the expert gets there in < 200 steps.
        assert max(_bfs(m, m.goal).values()) <= 8
        layouts.add(tuple(r.replace("G", "O") for r in m.rows))
    assert len(layouts) == len(SHIPPED)


def test_load_map_from_path(tmp_path: Path):
    path = tmp_path / "tiny.txt"
    path.write_text(GOOD)
    m = load_map(path)
    assert m.name == "tiny" and m.goal == (2, 3) and m.shape == (4, 5)
    assert m.free == ((1, 1), (1, 2), (1, 3), (2, 1), (2, 3))
    assert m.start_cells == ((1, 1), (1, 2), (1, 3), (2, 1))
    assert load_map(str(path)) == m


def test_unknown_map_name_lists_shipped_maps():
    with pytest.raises(ValueError, match="train-0"):
        load_map("no-such-map")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("#####\n#OOO#\n#O#O#\n#####\n", "no goal cell"),
        ("#####\n#GOO#\n#O#G#\n#####\n", "2 goal cells"),
        ("#####\n#OxO#\n#O#G#\n#####\n", "unknown character 'x' at row 1, column 2"),
        ("#####\n#OOO#\n#O#G##\n#####\n", "ragged rows: row 2"),
        ("#####\n#O#O#\n#O#G#\n#####\n", "cannot be reached from the goal"),
        ("#####\n#OOO#\nOO#G#\n#####\n", "not enclosed by walls"),
        ("#####\n", "1 rows"),
        ("###\n#G#\n###\n", "the goal is the only free cell"),
    ],
)
def test_bad_map_files_raise_with_file_problem_and_fix(tmp_path: Path, text: str, problem: str):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        load_map(path)
    msg = str(err.value)
    assert str(path) in msg and problem in msg and "Fix:" in msg


def test_cell_xy_round_trip_matches_pointmaze(env):
    m = env.maze_map
    maze = env._maze_env.maze  # gymnasium-robotics' own converter
    rng = np.random.default_rng(0)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            xy = m.cell_to_xy((i, j))
            np.testing.assert_allclose(xy, maze.cell_rowcol_to_xy(np.array([i, j])))
            for off in rng.uniform(-0.49, 0.49, size=(5, 2)):
                assert m.xy_to_cell(xy + off) == (i, j)
                assert tuple(maze.cell_xy_to_rowcol(xy + off)) == (i, j)
    # Row 0 is the top: y decreases with the row, x grows with the column.
    assert m.cell_to_xy((1, 1))[1] > m.cell_to_xy((2, 1))[1]
    assert m.cell_to_xy((1, 2))[0] > m.cell_to_xy((1, 1))[0]


# --- environment -----------------------------------------------------------------------


def test_env_spaces_and_shapes(env):
    obs, info = env.reset(seed=0)
    assert obs.shape == (4,) and obs.dtype == np.float32
    assert env.observation_space.shape == (4,)
    assert env.action_space.shape == (2,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.dt == pytest.approx(0.01)
    assert info["start_cell"] != env.maze_map.goal
    obs, reward, terminated, truncated, info = env.step(np.zeros(2, dtype=np.float32))
    assert obs.shape == (4,) and obs.dtype == np.float32
    assert isinstance(reward, float) and not terminated and not truncated


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    e = make_env("unseen-1", max_episode_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the infinite observation bounds are intended
        check_env(e, skip_render_check=True)
    e.close()


def test_reward_is_one_exactly_within_threshold_of_goal():
    m = load_map("train-2")
    e = make_env(m, max_episode_steps=10, goal_threshold=0.3, continuing=False)
    g = m.goal_xy
    for offset, expect in [((0.0, 0.0), 1.0), ((0.2, 0.0), 1.0), ((0.0, -0.28), 1.0),
                           ((0.35, 0.0), 0.0), ((0.0, 0.4), 0.0)]:
        obs, info = e.reset(seed=0, options={"start_xy": g + np.array(offset)})
        np.testing.assert_allclose(obs[:2], g + np.array(offset), atol=1e-6)
        assert info["success"] == bool(expect)
        _, reward, terminated, _, info = e.step(np.zeros(2))  # at rest: does not move
        assert reward == expect and info["success"] == bool(expect)
        assert terminated == bool(expect)  # continuing=False ends on success
    e.close()


def test_continuing_env_never_terminates_and_truncates_on_time(env):
    env.reset(seed=0, options={"start_xy": env.maze_map.goal_xy})
    for t in range(50):
        _, reward, terminated, truncated, _ = env.step(np.zeros(2))
        assert reward == 1.0 and not terminated
        assert truncated == (t == 49)


def test_reset_start_cell_and_random_starts(env):
    m = env.maze_map
    obs, info = env.reset(seed=1, options={"start_cell": (1, 1)})
    assert info["start_cell"] == (1, 1)
    assert np.all(np.abs(obs[:2] - m.cell_to_xy((1, 1))) <= 0.25 + 1e-6)  # PointMaze noise
    assert np.all(obs[2:] == 0)
    starts = {env.reset(seed=s)[1]["start_cell"] for s in range(200)}
    assert m.goal not in starts and len(starts) > len(m.free) // 2
    with pytest.raises(ValueError, match="wall"):
        env.reset(options={"start_cell": (0, 0)})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"goal_cell": (1, 1)})


def _rollout(e, seed: int, n: int = 200) -> np.ndarray:
    obs, _ = e.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs]
    for _ in range(n):
        out.append(e.step(rng.uniform(-1, 1, size=2))[0])
    return np.stack(out)


def test_seeded_rollouts_repeat(env):
    other = make_env("train-0", max_episode_steps=None)
    np.testing.assert_array_equal(_rollout(env, 7), _rollout(other, 7))
    assert not np.array_equal(_rollout(env, 7), _rollout(env, 8))
    other.close()


def test_fast_step_is_bitwise_pointmaze_physics():
    # Our step skips PointEnv.step's Python overhead; the physics must stay identical,
    # wall contacts included (random forces bang the ball into walls).
    a, b = make_env("train-5", max_episode_steps=None), make_env("train-5", max_episode_steps=None)
    a.reset(seed=3)
    b.reset(seed=3)
    point_env = b._maze_env.point_env
    rng = np.random.default_rng(0)
    for _ in range(600):
        action = rng.uniform(-1.5, 1.5, size=2)
        obs_a = a.step(action)[0]
        obs_b = point_env.step(action)[0]
        np.testing.assert_array_equal(obs_a, obs_b.astype(np.float32))
    a.close()
    b.close()


# --- expert ----------------------------------------------------------------------------


def test_q_iteration_greedy_route_is_a_shortest_path():
    m = load_map("train-3")
    moves = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    for target in [m.goal, (1, 1), (6, 6)]:
        q = q_iteration(m, target)
        dist = _bfs(m, target)
        for cell in m.free:
            c, n = cell, 0
            while c != target:
                move = moves[int(np.argmax(q[c]))]
                c = (c[0] + move[0], c[1] + move[1])
                assert m.is_free(c)
                n += 1
            assert n == dist[cell]


def test_expert_rejects_wall_targets_and_act_before_target():
    m = load_map("train-0")
    expert = WaypointExpert(m)
    with pytest.raises(RuntimeError, match="set_target"):
        expert.act(np.zeros(4))
    with pytest.raises(ValueError, match="not free"):
        expert.set_target(m.cell_to_xy((0, 0)))
    expert.set_target(m.goal_xy)
    action = expert.act(np.array([*m.cell_to_xy((1, 1)), 0.0, 0.0]))
    assert action.shape == (2,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1)


@pytest.mark.parametrize("name", SHIPPED)
def test_expert_reaches_goal_from_random_starts(name: str):
    m = load_map(name)
    e = make_env(m, max_episode_steps=None, continuing=True)
    for seed in range(8):
        ep = expert_episode(m, seed=seed, max_steps=200, env=e)
        assert ep[keys.SUCCESS].any(), f"{name} seed {seed}: G not reached in 200 steps"
        # Once at G the expert stays there (PD on G's centre).
        first = int(np.argmax(ep[keys.SUCCESS]))
        assert ep[keys.SUCCESS][first:].all()
    e.close()


def test_expert_episode_format_and_stop_at_goal():
    m = load_map("unseen-0")
    ep = expert_episode(m, seed=0, max_steps=150)
    assert ep[keys.OBSERVATION].shape == (150, 4) and ep[keys.ACTION].shape == (150, 2)
    assert ep[keys.TRUNCATED].tolist() == [False] * 149 + [True]
    assert not ep[keys.TERMINATED].any()
    np.testing.assert_array_equal(ep[keys.REWARD], ep[keys.SUCCESS].astype(np.float32))
    short = expert_episode(m, seed=0, max_steps=150, stop_at_goal=True)
    n = len(short[keys.REWARD])
    assert short[keys.SUCCESS][-1] and not short[keys.SUCCESS][:-1].any()
    assert short[keys.TERMINATED][-1] and not short[keys.TRUNCATED].any()
    np.testing.assert_array_equal(short[keys.OBSERVATION], ep[keys.OBSERVATION][:n])
    noisy = expert_episode(m, seed=0, max_steps=150, action_noise=0.3)
    assert not np.array_equal(noisy[keys.ACTION], ep[keys.ACTION])
    assert np.all(np.abs(noisy[keys.ACTION]) <= 1)


# --- generator -------------------------------------------------------------------------


def test_generate_episodes_format_and_targets_reached_repeatedly():
    cfg = Maze2DConfig(episode_steps=300, action_noise=0.1)
    m = load_map("train-1")
    eps = list(generate_episodes(m, cfg, num_episodes=3, seed=0, with_targets=True))
    assert len(eps) == 3
    for ep in eps:
        assert ep[keys.OBSERVATION].shape == (300, 4) and ep[keys.OBSERVATION].dtype == np.float32
        assert ep[keys.ACTION].shape == (300, 2) and ep[keys.ACTION].dtype == np.float32
        assert ep[keys.REWARD].shape == (300,) and ep[keys.REWARD].dtype == np.float32
        for k in (keys.TERMINATED, keys.TRUNCATED, keys.SUCCESS):
            assert ep[k].shape == (300,) and ep[k].dtype == np.bool_
        assert not ep[keys.TERMINATED].any()
        assert ep[keys.TRUNCATED].tolist() == [False] * 299 + [True]
        np.testing.assert_array_equal(ep[keys.REWARD], ep[keys.SUCCESS].astype(np.float32))
        assert np.all(np.abs(ep[keys.ACTION]) <= 1)
        # The ball is inside the maze and each target sits in a free cell.
        assert all(m.is_free(m.xy_to_cell(xy)) for xy in ep[keys.OBSERVATION][:, :2])
        assert all(m.is_free(m.xy_to_cell(xy)) for xy in ep[TARGET_KEY])
    # One continuing trajectory: an episode starts one step from where the last ended.
    for a, b in zip(eps, eps[1:], strict=False):
        assert np.abs(a[keys.OBSERVATION][-1, :2] - b[keys.OBSERVATION][0, :2]).max() < 0.06
    # Targets get reached (within 0.5) and replaced, many times.
    targets = np.concatenate([ep[TARGET_KEY] for ep in eps])
    switches = np.nonzero(np.any(np.diff(targets, axis=0) != 0, axis=1))[0]
    assert len(switches) >= 5  # ~one target per 100-150 steps
    pos = np.concatenate([ep[keys.OBSERVATION][:, :2] for ep in eps])
    # At a switch, the next observation is within the threshold of the old target.
    dist = np.linalg.norm(pos[switches + 1] - targets[switches], axis=1)
    assert np.all(dist <= cfg.goal_threshold + 1e-5)


def test_generate_episodes_is_deterministic_and_goal_prob_one_targets_g():
    m = load_map("train-4")
    cfg = Maze2DConfig(episode_steps=200, action_noise=0.2)
    a = list(generate_episodes(m, cfg, num_episodes=2, seed=5))
    b = list(generate_episodes(m, cfg, num_episodes=2, seed=5))
    c = list(generate_episodes(m, cfg, num_episodes=2, seed=6))
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a[0][keys.OBSERVATION], c[0][keys.OBSERVATION])
    # goal_prob=1: G first, then (G being reached) alternately a random cell and G.
    only_g = Maze2DConfig(episode_steps=600, goal_prob=1.0)
    (ep,) = generate_episodes(m, only_g, num_episodes=1, seed=0, with_targets=True)
    t = ep[TARGET_KEY]
    starts = np.concatenate([[0], 1 + np.nonzero(np.any(np.diff(t, axis=0) != 0, axis=1))[0]])
    is_g = np.all(np.abs(t[starts] - m.goal_xy) < 1e-6, axis=1)
    assert len(starts) >= 4 and is_g[0::2].all() and not is_g[1::2].any()
    base = list(generate_episodes(m, Maze2DConfig(episode_steps=600), num_episodes=1, seed=0))
    assert ep[keys.REWARD].sum() > base[0][keys.REWARD].sum()


# --- pictures and API ------------------------------------------------------------------


def test_draw_maze_draws_walls_goal_and_paths():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = load_map("unseen-1")
    fig, ax = plt.subplots()
    path = np.stack([np.linspace(-2, 2, 10), np.zeros(10)], axis=1)
    draw_maze(ax, m, paths=[path, path + 0.1])
    n_walls = sum(row.count("#") for row in m.rows)
    assert len(ax.patches) == n_walls + 1  # walls + the goal circle
    assert len(ax.lines) == 1 + 2 * 2  # goal marker + (line, start dot) per path
    plt.close(fig)


def test_parse_map_tolerates_surrounding_blank_lines():
    m = parse_map("\n\n" + GOOD + "\n\n", name="x")
    assert m.shape == (4, 5)


def test_goal_episodes_start_anywhere_and_reach_g():
    m = load_map("train-2")
    cfg = Maze2DConfig(episodes="goal", episode_steps=200, action_noise=0.1)
    eps = list(generate_episodes(m, cfg, num_episodes=6, seed=3, with_targets=True))
    again = list(generate_episodes(m, cfg, num_episodes=6, seed=3))
    np.testing.assert_array_equal(eps[4][keys.OBSERVATION], again[4][keys.OBSERVATION])
    starts = {tuple(np.round(ep[keys.OBSERVATION][0, :2], 1)) for ep in eps}
    assert len(starts) >= 4  # a new random start every episode
    for ep in eps:  # each ends on arrival at G: success and termination on its last step only
        assert len(ep[keys.ACTION]) < 200
        assert ep[keys.SUCCESS][-1] and not ep[keys.SUCCESS][:-1].any()
        assert ep[keys.TERMINATED][-1] and not ep[keys.TRUNCATED].any()
    assert all(np.allclose(ep[TARGET_KEY], m.goal_xy) for ep in eps)
    with pytest.raises(ValueError, match="episodes"):
        Maze2DConfig(episodes="random")
