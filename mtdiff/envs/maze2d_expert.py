"""D4RL's Maze2D expert and data generator on our maps (paper App. D, App. G).

- `q_iteration`: value iteration on the grid toward a target cell (D4RL's
  ``q_iteration.py``: reward 1 for stepping onto the target, discount 0.99);
- `WaypointExpert`: the greedy grid policy gives the next cell; a PD controller
  ``p_gain * (waypoint - pos) + d_gain * vel`` (D4RL's gains 10 / -1) steers to its centre,
  and to the exact target point once inside the target cell;
- `generate_episodes`: D4RL's ``generate_maze2d_datasets.py`` loop: one continuing
  trajectory, a new random target cell every time the current one is reached, cut into
  fixed-length episodes;
- `expert_episode`: one episode from a random start to the map's goal G (prompts, and
  the expert's own success rate).

Episodes are dicts of numpy arrays keyed by `mtdiff.keys` (T = steps)::

    OBSERVATION (T, 4) float32   s_t = (x, y, vx, vy) before the action
    ACTION      (T, 2) float32   a_t, the executed (noisy, clipped) action
    REWARD      (T,)   float32   r_t = 1 if s_{t+1} is within goal_threshold of G
    TERMINATED  (T,)   bool      all False (Maze2D is continuing)
    TRUNCATED   (T,)   bool      True at the last step only
    SUCCESS     (T,)   bool      same flag as REWARD
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from mtdiff import keys
from mtdiff.config import Maze2DConfig
from mtdiff.envs.maze2d import Cell, Maze2DEnv, MazeMap, list_maps, load_map, make_env

# Extra key of `generate_episodes(with_targets=True)`: the expert's target (T, 2).
TARGET_KEY = "target"

# Grid moves in (di, dj): up, down, left, right (row 0 is the top of the map).
_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])


def q_iteration(maze_map: MazeMap, target: Cell, *, discount: float = 0.99,
                num_iters: int | None = None) -> np.ndarray:
    """Q-values of the 4 grid moves in every cell toward `target`, shape (n_rows, n_cols, 4).

    Deterministic grid MDP as in D4RL: a move into a wall stays put; reward 1 for a move
    that lands on `target`. Iterated to convergence (at most `num_iters`, default the
    number of cells, which always suffices: no shortest path is longer). Wall cells are 0.
    """
    if not maze_map.is_free(target):
        raise ValueError(f"target {target} is not a free cell of map {maze_map.name!r}")
    n_rows, n_cols = maze_map.shape
    free = np.zeros((n_rows, n_cols), dtype=bool)
    for c in maze_map.free:
        free[c] = True
    ii, jj = np.nonzero(free)  # (F,) free cells
    ni = ii[:, None] + _MOVES[None, :, 0]  # (F, 4) row of the cell each move lands in
    nj = jj[:, None] + _MOVES[None, :, 1]
    blocked = ~free[ni, nj]  # outer walls keep every index inside the grid
    ni = np.where(blocked, ii[:, None], ni)
    nj = np.where(blocked, jj[:, None], nj)
    reward = ((ni == target[0]) & (nj == target[1])).astype(np.float64)  # (F, 4)
    q = np.zeros((n_rows, n_cols, 4))
    v = np.zeros((n_rows, n_cols))
    for _ in range(num_iters or n_rows * n_cols):
        q_free = reward + discount * v[ni, nj]  # (F, 4) Bellman backup
        v_new = np.zeros_like(v)
        v_new[ii, jj] = q_free.max(axis=1)
        q[ii, jj] = q_free
        if np.array_equal(v_new, v):
            break
        v = v_new
    return q


class WaypointExpert:
    """D4RL's waypoint controller: grid Q-iteration for the route, PD control to follow it.

    Stateless per step: the waypoint is the centre of the greedy next cell from the cell
    the ball is in (D4RL plans the cell list once per target and walks it; the next cell
    from the current cell is the same route and recovers by itself when noise pushes the
    ball off it). In the target cell the waypoint is the exact target point.
    """

    def __init__(self, maze_map: MazeMap, p_gain: float = 10.0, d_gain: float = -1.0) -> None:
        self.maze_map = maze_map
        self.p_gain = float(p_gain)
        self.d_gain = float(d_gain)
        # target cell -> (n_rows, n_cols, 2) waypoint xy per cell; Q-iteration is the
        # hot path of collection (a new target every few dozen steps), so each target
        # cell is solved once per expert.
        self._tables: dict[Cell, dict[Cell, tuple[float, float]]] = {}
        self._target_xy: tuple[float, float] | None = None
        self._target_cell: Cell = maze_map.goal
        self._table: dict[Cell, tuple[float, float]] = {}
        self._last_cell: Cell = maze_map.goal
        n_rows, n_cols = maze_map.shape
        self._half_rows, self._half_cols = n_rows / 2, n_cols / 2
        self._free = frozenset(maze_map.free)

    @property
    def target_xy(self) -> np.ndarray | None:
        """The current target point (world xy), or None before `set_target`."""
        return None if self._target_xy is None else np.array(self._target_xy)

    @property
    def target_cell(self) -> Cell:
        """The cell containing the current target."""
        return self._target_cell

    def set_target(self, xy: Any) -> None:
        """Aim at world point `xy` (must lie in a free cell)."""
        cell = self.maze_map.xy_to_cell(xy)
        if not self.maze_map.is_free(cell):
            raise ValueError(f"target {tuple(xy)} lies in cell {cell}, which is not free in "
                             f"map {self.maze_map.name!r}")
        self._target_xy = (float(xy[0]), float(xy[1]))
        self._target_cell = cell
        if cell not in self._tables:
            self._tables[cell] = self._waypoint_table(cell)
        self._table = self._tables[cell]

    def _waypoint_table(self, target: Cell) -> dict[Cell, tuple[float, float]]:
        """Free cell -> centre (x, y) of the greedy next cell toward `target`."""
        q = q_iteration(self.maze_map, target)
        table = {}
        for cell in self.maze_map.free:
            move = _MOVES[int(np.argmax(q[cell]))]  # ties: the first move (argmax, as D4RL)
            x, y = self.maze_map.cell_to_xy((cell[0] + move[0], cell[1] + move[1]))
            table[cell] = (float(x), float(y))
        return table

    def act(self, obs: Any) -> np.ndarray:
        """PD action toward the next waypoint, float32 (2,) in [-1, 1]. `obs` = (x, y, vx, vy)."""
        if self._target_xy is None:
            raise RuntimeError("WaypointExpert.act before set_target: call set_target(xy)")
        x, y, vx, vy = float(obs[0]), float(obs[1]), float(obs[2]), float(obs[3])
        # Plain-float arithmetic: this runs once per environment step.
        cell = (math.floor(self._half_rows - y), math.floor(x + self._half_cols))
        if cell not in self._free:
            cell = self._last_cell  # contact softness: never trust a wall cell
        self._last_cell = cell
        if cell == self._target_cell:
            wx, wy = self._target_xy
        else:
            wx, wy = self._table[cell]
        ax = self.p_gain * (wx - x) + self.d_gain * vx
        ay = self.p_gain * (wy - y) + self.d_gain * vy
        return np.array((min(max(ax, -1.0), 1.0), min(max(ay, -1.0), 1.0)), dtype=np.float32)


def _episode_dict(obs: list[np.ndarray], act: list[np.ndarray], rew: list[float],
                  success: list[bool], *, terminated: bool = False) -> dict[str, np.ndarray]:
    """Stack per-step lists; the last step is flagged terminated (goal) or truncated."""
    n = len(obs)
    last = np.zeros(n, dtype=bool)
    last[-1] = True
    none = np.zeros(n, dtype=bool)
    return {
        keys.OBSERVATION: np.asarray(obs, dtype=np.float32).reshape(n, 4),
        keys.ACTION: np.asarray(act, dtype=np.float32).reshape(n, 2),
        keys.REWARD: np.asarray(rew, dtype=np.float32),
        keys.TERMINATED: last if terminated else none,
        keys.TRUNCATED: none if terminated else last,
        keys.SUCCESS: np.asarray(success, dtype=bool),
    }


def _noise(rng: np.random.Generator, std: float, steps: int) -> list[tuple[float, float]] | None:
    """A block of N(0, std) action noise, (steps,) pairs; None when std is 0.

    Drawn per episode rather than per step: one generator call instead of `steps`.
    """
    return None if std <= 0 else [(float(a), float(b)) for a, b in
                                  rng.normal(0.0, std, size=(steps, 2))]


def _noisy(action: np.ndarray, noise: tuple[float, float] | None) -> np.ndarray:
    """`action` + `noise`, clipped to [-1, 1], float32 (2,)."""
    if noise is None:
        return action
    return np.array((min(max(action[0] + noise[0], -1.0), 1.0),
                     min(max(action[1] + noise[1], -1.0), 1.0)), dtype=np.float32)


def generate_episodes(maze_map: MazeMap, cfg: Maze2DConfig, *, num_episodes: int, seed: int,
                      with_targets: bool = False) -> Iterator[dict[str, np.ndarray]]:
    """Yield `num_episodes` episodes of `cfg.episode_steps` from D4RL's generator.

    One continuing trajectory (the ball is never reset between episodes, so each episode
    starts where the previous one ended), from a random free cell. The target is the
    centre of a random free cell plus U(-0.1, 0.1) m per axis (D4RL's ``set_target``), or
    with probability `cfg.goal_prob` the centre of G (unless the ball is already at G:
    with goal_prob=1 the targets alternate G, random, G, ...); once the ball is within
    `cfg.goal_threshold` of it a new target is drawn. The action is the expert's plus
    N(0, `cfg.action_noise`), clipped. Rewards are w.r.t. G. Same seed, same episodes.

    `with_targets` adds ``TARGET_KEY`` (T, 2) float32, the expert's target at each step
    (D4RL's ``infos/goal``; for inspection, not a dataset column).
    """
    env = make_env(maze_map, max_episode_steps=None, goal_threshold=cfg.goal_threshold,
                   continuing=True)
    if cfg.episodes == "goal":
        yield from _goal_episodes(env, maze_map, cfg, num_episodes, seed, with_targets)
        return
    expert = WaypointExpert(maze_map, p_gain=cfg.p_gain, d_gain=cfg.d_gain)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    free = maze_map.free
    threshold_sq = cfg.goal_threshold**2
    goal = (float(maze_map.goal_xy[0]), float(maze_map.goal_xy[1]))

    def near(o: np.ndarray, xy: tuple[float, float]) -> bool:
        return float((o[0] - xy[0]) ** 2 + (o[1] - xy[1]) ** 2) <= threshold_sq

    def new_target(o: np.ndarray) -> tuple[float, float]:
        # Redraw while the drawn target is already reached, so no step is spent on it.
        # G is not eligible while the ball is at G (with goal_prob=1 the loop would never
        # end; the targets then alternate between G and random cells). The cap only
        # matters for degenerate two-cell maps where the ball can be near every cell.
        at_goal = near(o, goal)
        for _ in range(1000):
            if rng.random() < cfg.goal_prob and not at_goal:
                xy = goal
            else:
                cell = free[int(rng.integers(len(free)))]
                cx, cy = maze_map.cell_to_xy(cell) + rng.uniform(-0.1, 0.1, size=2)
                xy = (float(cx), float(cy))
            if not near(o, xy):
                break
        expert.set_target(xy)
        return xy

    target = new_target(obs)
    try:
        for _ in range(num_episodes):
            o_buf: list[np.ndarray] = []
            a_buf: list[np.ndarray] = []
            r_buf: list[float] = []
            s_buf: list[bool] = []
            t_buf: list[tuple[float, float]] = []
            noise = _noise(rng, cfg.action_noise, cfg.episode_steps)
            for t in range(cfg.episode_steps):
                action = _noisy(expert.act(obs), None if noise is None else noise[t])
                next_obs, reward, _, _, info = env.step(action)
                o_buf.append(obs)
                a_buf.append(action)
                r_buf.append(reward)
                s_buf.append(info["success"])
                t_buf.append(target)
                obs = next_obs
                if near(obs, target):
                    target = new_target(obs)
            episode = _episode_dict(o_buf, a_buf, r_buf, s_buf)
            if with_targets:
                episode[TARGET_KEY] = np.asarray(t_buf, dtype=np.float32)
            yield episode
    finally:
        env.close()


def _goal_episodes(env: Maze2DEnv, maze_map: MazeMap, cfg: Maze2DConfig, num_episodes: int,
                   seed: int, with_targets: bool) -> Iterator[dict[str, np.ndarray]]:
    """`cfg.episodes == "goal"`: episode i starts in a random free cell (seeded by i) and
    the expert heads for G; the episode ends (terminated) on arrival, or is truncated
    after `cfg.episode_steps` steps. No steps of sitting at G: in a small dataset they
    become a "stand still" mode that the planner falls into away from G (measured)."""
    try:
        for i in range(num_episodes):
            ep = expert_episode(maze_map, seed=seed * 1_000_003 + i, max_steps=cfg.episode_steps,
                                action_noise=cfg.action_noise, p_gain=cfg.p_gain,
                                d_gain=cfg.d_gain, stop_at_goal=True, env=env)
            if with_targets:
                ep[TARGET_KEY] = np.tile(np.asarray(maze_map.goal_xy, dtype=np.float32),
                                         (len(ep[keys.ACTION]), 1))
            yield ep
    finally:
        env.close()


def expert_episode(maze_map: MazeMap, *, seed: int, max_steps: int, action_noise: float = 0.0,
                   start_cell: Cell | None = None, goal_threshold: float = 0.5,
                   p_gain: float = 10.0, d_gain: float = -1.0, stop_at_goal: bool = False,
                   env: Maze2DEnv | None = None) -> dict[str, np.ndarray]:
    """One expert episode from a random start cell (or `start_cell`) to G's centre.

    Runs `max_steps` steps (the ball stays at G once there, collecting reward, as in
    D4RL's continuing maze2d; the last step is TRUNCATED), or, with `stop_at_goal`, ends
    at the first success (that step TERMINATED). Used for prompts (few-shot
    demonstrations) and to measure the expert. Building an environment costs ~75 ms,
    so callers making many episodes pass one `env` from `make_env(maze_map, ...)`;
    its own time limit and termination are ignored and `goal_threshold` is the env's.
    """
    own_env = env is None
    if env is None:
        env = make_env(maze_map, max_episode_steps=None, goal_threshold=goal_threshold,
                       continuing=True)
    elif env.maze_map != maze_map:
        raise ValueError(f"env is for map {env.maze_map.name!r}, not {maze_map.name!r}")
    expert = WaypointExpert(maze_map, p_gain=p_gain, d_gain=d_gain)
    expert.set_target(maze_map.goal_xy)
    rng = np.random.default_rng(seed)
    options = None if start_cell is None else {"start_cell": start_cell}
    obs, _ = env.reset(seed=seed, options=options)
    o_buf: list[np.ndarray] = []
    a_buf: list[np.ndarray] = []
    r_buf: list[float] = []
    s_buf: list[bool] = []
    try:
        noise = _noise(rng, action_noise, max_steps)
        for t in range(max_steps):
            action = _noisy(expert.act(obs), None if noise is None else noise[t])
            next_obs, reward, _, _, info = env.step(action)
            o_buf.append(obs)
            a_buf.append(action)
            r_buf.append(reward)
            s_buf.append(info["success"])
            obs = next_obs
            if stop_at_goal and info["success"]:
                return _episode_dict(o_buf, a_buf, r_buf, s_buf, terminated=True)
        return _episode_dict(o_buf, a_buf, r_buf, s_buf)
    finally:
        if own_env:
            env.close()


def measure_expert(maze_map: MazeMap, *, episodes: int, max_steps: int, seed: int = 0,
                   action_noise: float = 0.0, goal_threshold: float = 0.5,
                   p_gain: float = 10.0, d_gain: float = -1.0) -> dict[str, float]:
    """The expert's score on `maze_map` over `episodes` random starts (seeds seed, seed+1, ...).

    Returns ``success`` (fraction reaching G within `max_steps`), ``steps_to_goal_mean``
    and ``steps_to_goal_max`` (over successes), ``return_mean`` (sum of rewards: steps
    spent at G, D4RL maze2d's score before normalisation).
    """
    env = make_env(maze_map, max_episode_steps=None, goal_threshold=goal_threshold,
                   continuing=True)
    first, returns = [], []
    try:
        for k in range(episodes):
            ep = expert_episode(maze_map, seed=seed + k, max_steps=max_steps,
                                action_noise=action_noise, p_gain=p_gain, d_gain=d_gain,
                                env=env)
            hit = ep[keys.SUCCESS]
            first.append(int(np.argmax(hit)) + 1 if hit.any() else 0)
            returns.append(float(ep[keys.REWARD].sum()))
    finally:
        env.close()
    steps = np.array([f for f in first if f > 0] or [0])
    return {
        "success": float(np.mean(np.array(first) > 0)),
        "steps_to_goal_mean": float(steps.mean()),
        "steps_to_goal_max": float(steps.max()),
        "return_mean": float(np.mean(returns)),
    }


def _main(argv: list[str] | None = None) -> None:
    """``python -m mtdiff.envs.maze2d_expert``: the expert's success and collection speed."""
    import argparse
    import time

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--maps", default=",".join(list_maps()))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-steps", type=int, default=Maze2DConfig().eval_episode_steps)
    parser.add_argument("--action-noise", type=float, default=0.0)
    parser.add_argument("--collect-episodes", type=int, default=10,
                        help="episodes of Maze2DConfig().episode_steps timed per map")
    args = parser.parse_args(argv)
    cfg = Maze2DConfig(action_noise=args.action_noise)
    steps, seconds = 0, 0.0
    for name in args.maps.split(","):
        m = load_map(name)
        r = measure_expert(m, episodes=args.episodes, max_steps=args.max_steps,
                           action_noise=args.action_noise)
        t0 = time.perf_counter()
        for ep in generate_episodes(m, cfg, num_episodes=args.collect_episodes, seed=0):
            steps += len(ep[keys.REWARD])
        seconds += time.perf_counter() - t0
        print(f"{name:9s} success {r['success']:.3f} over {args.episodes} episodes of "
              f"{args.max_steps} steps; steps to G mean {r['steps_to_goal_mean']:.0f} max "
              f"{r['steps_to_goal_max']:.0f}; return {r['return_mean']:.1f}")
    print(f"collection: {steps} steps in {seconds:.2f} s = {steps / seconds:,.0f} env steps/s "
          f"(expert + noise + env, one process)")


if __name__ == "__main__":
    _main()
