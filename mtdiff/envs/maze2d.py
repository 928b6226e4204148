"""Maze2D (paper §4, App. D): text maps, a PointMaze environment, and a picture of a maze.

A map is a text file, one row per line: ``#`` wall, ``O`` free, ``G`` the map's goal
cell (exactly one, itself free). Cells are ``(i, j)`` = (row, column), row 0 at the top,
as in gymnasium-robotics. The world frame is PointMaze's: the maze is centred on the
origin, one cell is 1 m, x grows with the column and y *decreases* with the row::

    x = (j + 0.5) - n_cols / 2        y = n_rows / 2 - (i + 0.5)

(D4RL's maze2d used x = i, y = j; the frames are not interchangeable.)

The environment is gymnasium-robotics' ``PointMaze`` physics with D4RL maze2d's
interface: the observation is ``(x, y, vx, vy)`` (no goal in it), the action a force in
[-1, 1]^2, and the reward is sparse: 1 within ``goal_threshold`` of the centre of G.

The waypoint expert and the dataset generator live in `mtdiff.envs.maze2d_expert` (which
builds on this module).
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import mujoco
import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Cell = tuple[int, int]

MAPS_DIR = Path(__file__).parent / "maps"
WALL, FREE, GOAL = "#", "O", "G"

# PointMaze physics constants (gymnasium_robotics/envs/maze/point.py): the ball's
# velocity is clipped to +-5 m/s *before* each MuJoCo step, so an observed speed can
# reach ~5.24 m/s (one step of acceleration on top of the clip).
_VEL_CLIP = 5.0


# ----------------------------------------------------------------------------------------
# Maps
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MazeMap:
    """A parsed, validated maze. Frozen and hashable (used as a cache key)."""

    name: str
    rows: tuple[str, ...]  # the text, one string per row
    goal: Cell  # the cell marked G
    free: tuple[Cell, ...]  # every non-wall cell (G included), row-major order

    @property
    def shape(self) -> tuple[int, int]:
        """(n_rows, n_cols) of the grid, outer walls included."""
        return len(self.rows), len(self.rows[0])

    @property
    def goal_xy(self) -> np.ndarray:
        """World (x, y) of the centre of G, shape (2,)."""
        return self.cell_to_xy(self.goal)

    @property
    def start_cells(self) -> tuple[Cell, ...]:
        """Free cells other than G: where random starts are drawn."""
        return tuple(c for c in self.free if c != self.goal)

    def is_free(self, cell: Cell) -> bool:
        """True if `cell` is inside the grid and not a wall."""
        i, j = cell
        n_rows, n_cols = self.shape
        return 0 <= i < n_rows and 0 <= j < n_cols and self.rows[i][j] != WALL

    def cell_to_xy(self, cell: Cell) -> np.ndarray:
        """World (x, y) of a cell's centre (PointMaze's `cell_rowcol_to_xy`), shape (2,)."""
        n_rows, n_cols = self.shape
        return np.array([cell[1] + 0.5 - n_cols / 2, n_rows / 2 - cell[0] - 0.5])

    def xy_to_cell(self, xy: Any) -> Cell:
        """The cell containing world point `xy` (PointMaze's `cell_xy_to_rowcol`)."""
        n_rows, n_cols = self.shape
        return int(np.floor(n_rows / 2 - xy[1])), int(np.floor(xy[0] + n_cols / 2))

    def gym_map(self) -> list[list[int]]:
        """The grid in gymnasium-robotics' encoding: 1 wall, 0 free."""
        return [[1 if ch == WALL else 0 for ch in row] for row in self.rows]


def list_maps() -> list[str]:
    """Names of the maps shipped in ``mtdiff/envs/maps`` (e.g. ``"train-3"``), sorted."""
    return sorted(p.stem for p in MAPS_DIR.glob("*.txt"))


def load_map(name_or_path: str | os.PathLike[str]) -> MazeMap:
    """Load a shipped map by name (``"train-3"``) or a map text file by path.

    Raises `ValueError` naming the file and the problem when the map is malformed.
    """
    text_name = os.fspath(name_or_path)
    shipped = MAPS_DIR / f"{text_name}.txt"
    if shipped.is_file() and os.sep not in text_name and "/" not in text_name:
        path = shipped
    else:
        path = Path(text_name)
        if not path.is_file():
            raise ValueError(
                f"maze map {text_name!r}: no shipped map of that name and no such file. "
                f"Shipped maps: {list_maps()}; or pass the path of a text file "
                f"('{WALL}' wall, '{FREE}' free, '{GOAL}' goal)."
            )
    return parse_map(path.read_text(), name=path.stem, source=str(path))


def parse_map(text: str, *, name: str, source: str = "<string>") -> MazeMap:
    """Parse and validate map text; `source` names the file in error messages."""

    def fail(problem: str, fix: str) -> ValueError:
        return ValueError(f"maze map {source}: {problem}. Fix: {fix}.")

    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:  # tolerate blank lines around the grid only
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < 3:
        raise fail(f"{len(lines)} rows", "draw at least 3 rows: a free row between two walls")
    legend = f"use only '{WALL}' (wall), '{FREE}' (free) and '{GOAL}' (goal)"
    for i, line in enumerate(lines):
        for j, ch in enumerate(line):
            if ch not in (WALL, FREE, GOAL):
                raise fail(f"unknown character {ch!r} at row {i}, column {j}", legend)
    widths = sorted({len(line) for line in lines})
    if len(widths) > 1:
        bad = next(i for i, line in enumerate(lines) if len(line) != len(lines[0]))
        raise fail(f"ragged rows: row {bad} has {len(lines[bad])} characters, row 0 has "
                   f"{len(lines[0])}", "give every row the same number of characters")
    goals = [(i, j) for i, line in enumerate(lines) for j, ch in enumerate(line) if ch == GOAL]
    if not goals:
        raise fail(f"no goal cell '{GOAL}'", f"mark exactly one free cell with '{GOAL}'")
    if len(goals) > 1:
        raise fail(f"{len(goals)} goal cells {goals}", f"keep exactly one '{GOAL}'")
    n_rows, n_cols = len(lines), len(lines[0])
    for i, line in enumerate(lines):
        for j, ch in enumerate(line):
            on_border = i in (0, n_rows - 1) or j in (0, n_cols - 1)
            if on_border and ch != WALL:
                raise fail(f"not enclosed by walls: cell ({i}, {j}) on the border is {ch!r}",
                           f"make the first and last row and column all '{WALL}'")
    free = tuple((i, j) for i, line in enumerate(lines) for j, ch in enumerate(line)
                 if ch != WALL)
    if len(free) < 2:
        raise fail("the goal is the only free cell", f"add free cells '{FREE}' to start from")
    reached = _reachable(lines, goals[0])
    if len(reached) != len(free):
        cut_off = sorted(set(free) - reached)
        raise fail(f"free cells {cut_off} cannot be reached from the goal {goals[0]}",
                   "open a path to them or turn them into walls")
    return MazeMap(name=name, rows=tuple(lines), goal=goals[0], free=free)


def _reachable(lines: list[str], start: Cell) -> set[Cell]:
    """Free cells 4-connected to `start` (breadth-first search)."""
    seen = {start}
    todo = deque([start])
    while todo:
        i, j = todo.popleft()
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            n = (i + di, j + dj)
            if (0 <= n[0] < len(lines) and 0 <= n[1] < len(lines[0])
                    and lines[n[0]][n[1]] != WALL and n not in seen):
                seen.add(n)
                todo.append(n)
    return seen


# ----------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------


class Maze2DEnv(gym.Env):
    """PointMaze physics on a `MazeMap`, with D4RL maze2d's observation and reward.

    - observation: float32 (4,) = (x, y, vx, vy), world frame, no goal;
    - action: float32 (2,) force in [-1, 1] (clipped), x and y;
    - reward: 1.0 when within `goal_threshold` of the centre of G, else 0.0;
      ``info["success"]`` is the same flag;
    - terminated: on success if ``continuing=False``; never if ``continuing=True``
      (D4RL maze2d is continuing: the reward keeps coming while the ball stays at G);
    - truncated: after `max_episode_steps` steps (never when it is None).

    ``reset(options=...)`` accepts ``start_cell=(i, j)`` (PointMaze's uniform +-0.25 m
    noise is added, as for random starts) or ``start_xy=(x, y)`` (exact, no noise).
    Without either, the start is a random free cell other than G.
    """

    metadata = {"render_modes": ["human", "rgb_array", "depth_array"], "render_fps": 100}

    def __init__(self, maze_map: MazeMap, *, max_episode_steps: int | None,
                 goal_threshold: float = 0.5, continuing: bool = False,
                 render_mode: str | None = None) -> None:
        import gymnasium_robotics

        if max_episode_steps is not None and max_episode_steps <= 0:
            raise ValueError(f"max_episode_steps must be > 0 or None, got {max_episode_steps}")
        if goal_threshold <= 0:
            raise ValueError(f"goal_threshold must be > 0, got {goal_threshold}")
        gym.register_envs(gymnasium_robotics)
        # PointMaze's own goal logic is bypassed: continuing_task=True and
        # reset_target=False keep it from terminating or moving its goal; our reward
        # is measured from the exact centre of G, not from its noisy goal.
        self._maze_env = gym.make(
            "PointMaze_UMaze-v3", maze_map=maze_map.gym_map(), continuing_task=True,
            reset_target=False, render_mode=render_mode, disable_env_checker=True,
        ).unwrapped
        # PointMaze writes its MJCF to a fresh /tmp file per instance and never deletes
        # it; the model is already compiled, so remove it to not litter /tmp.
        with contextlib.suppress(OSError):
            os.remove(self._maze_env.tmp_xml_file_path)
        point_env = self._maze_env.point_env
        self._model, self._data = point_env.model, point_env.data
        self._n_substeps = point_env.frame_skip  # 1: one env step = 0.01 s (100 Hz)
        self.maze_map = maze_map
        self.max_episode_steps = max_episode_steps
        self.goal_threshold = float(goal_threshold)
        self.continuing = continuing
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._goal_x, self._goal_y = (float(v) for v in maze_map.goal_xy)
        self._threshold_sq = self.goal_threshold**2
        self._steps = 0

    @property
    def dt(self) -> float:
        """Seconds of simulated time per `step` (0.01 for PointMaze)."""
        return float(self._model.opt.timestep) * self._n_substeps

    def _obs(self) -> np.ndarray:
        d = self._data
        return np.array((d.qpos[0], d.qpos[1], d.qvel[0], d.qvel[1]), dtype=np.float32)

    def _at_goal(self) -> bool:
        dx = float(self._data.qpos[0]) - self._goal_x
        dy = float(self._data.qpos[1]) - self._goal_y
        return dx * dx + dy * dy <= self._threshold_sq

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (see the class docstring for `options`)."""
        super().reset(seed=seed)
        options = dict(options or {})
        start_xy = options.pop("start_xy", None)
        start_cell = options.pop("start_cell", None)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; "
                             "use 'start_cell' or 'start_xy'")
        if start_cell is None:
            starts = self.maze_map.start_cells
            start_cell = starts[int(self.np_random.integers(len(starts)))]
        start_cell = (int(start_cell[0]), int(start_cell[1]))
        if not self.maze_map.is_free(start_cell):
            raise ValueError(f"start_cell {start_cell} is a wall or outside map "
                             f"{self.maze_map.name!r}; free cells: {self.maze_map.free}")
        # PointMaze's reset draws the +-0.25 position noise from its own generator, seeded
        # here with the same seed, so one `seed` fixes the whole episode.
        self._maze_env.reset(seed=seed, options={"reset_cell": np.array(start_cell),
                                                 "goal_cell": np.array(self.maze_map.goal)})
        self._maze_env.goal = self.maze_map.goal_xy  # the red target site shows G itself
        self._maze_env.update_target_site_pos()
        if start_xy is not None:
            self._data.qpos[:2] = np.asarray(start_xy, dtype=np.float64)
            self._data.qvel[:] = 0.0
            mujoco.mj_forward(self._model, self._data)
        self._steps = 0
        return self._obs(), {"success": self._at_goal(), "start_cell": start_cell}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """One 0.01 s physics step; returns (obs, reward, terminated, truncated, info)."""
        # PointEnv.step (clip action, clip velocity via set_state, mj_step) without its
        # per-step Python overhead (array copies, shape checks, dict building). The
        # mj_forward that set_state does is kept: it seeds the contact solver's warm
        # start, and without it wall contacts differ at 1e-15 and then chaotically; with
        # it the trajectories are bitwise PointMaze's (tests check this).
        # Scalar min/max instead of np.clip: same values, a third of the step's cost.
        d = self._data
        vx, vy = float(d.qvel[0]), float(d.qvel[1])
        if not (-_VEL_CLIP <= vx <= _VEL_CLIP and -_VEL_CLIP <= vy <= _VEL_CLIP):
            d.qvel[0] = min(max(vx, -_VEL_CLIP), _VEL_CLIP)
            d.qvel[1] = min(max(vy, -_VEL_CLIP), _VEL_CLIP)
        mujoco.mj_forward(self._model, d)
        d.ctrl[0] = min(max(float(action[0]), -1.0), 1.0)
        d.ctrl[1] = min(max(float(action[1]), -1.0), 1.0)
        mujoco.mj_step(self._model, d, nstep=self._n_substeps)
        self._steps += 1
        success = self._at_goal()
        terminated = success and not self.continuing
        truncated = self.max_episode_steps is not None and self._steps >= self.max_episode_steps
        if self.render_mode == "human":
            self.render()
        return self._obs(), float(success), terminated, truncated, {"success": success}

    def render(self) -> Any:
        """Render through PointMaze's MuJoCo renderer (needs `render_mode`)."""
        return self._maze_env.render()

    def close(self) -> None:
        """Release the renderer."""
        self._maze_env.point_env.close()


def make_env(maze_map: MazeMap | str, *, max_episode_steps: int | None,
             goal_threshold: float = 0.5, continuing: bool = False,
             render_mode: str | None = None) -> Maze2DEnv:
    """A Maze2D environment on `maze_map` (a `MazeMap`, a shipped name or a file path).

    See `Maze2DEnv` for the observation, action, reward and reset options.
    ``max_episode_steps=None`` never truncates (for one long continuing collection run).
    """
    if not isinstance(maze_map, MazeMap):
        maze_map = load_map(maze_map)
    return Maze2DEnv(maze_map, max_episode_steps=max_episode_steps,
                     goal_threshold=goal_threshold, continuing=continuing,
                     render_mode=render_mode)


# ----------------------------------------------------------------------------------------
# Pictures
# ----------------------------------------------------------------------------------------


def draw_maze(ax: Axes, maze_map: MazeMap, paths: list[np.ndarray] | None = None, *,
              goal_threshold: float | None = 0.5) -> Axes:
    """Draw `maze_map` on `ax` in world coordinates (paper Fig. 4 / 8 style).

    Walls are filled unit squares, G a red square with the success circle of radius
    `goal_threshold` (None: no circle); each of `paths` ((T, 2) or (T, >=2) arrays, x
    and y first) is a line from a dot (start) to its end.
    """
    from matplotlib.patches import Circle, Rectangle

    n_rows, n_cols = maze_map.shape
    for i, row in enumerate(maze_map.rows):
        for j, ch in enumerate(row):
            if ch == WALL:
                x, y = maze_map.cell_to_xy((i, j))
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, facecolor="0.35",
                                       edgecolor="0.35", linewidth=0.5))
    gx, gy = maze_map.goal_xy
    if goal_threshold is not None:
        ax.add_patch(Circle((gx, gy), goal_threshold, facecolor="tab:red", alpha=0.15))
    ax.plot([gx], [gy], marker="s", markersize=9, color="tab:red", linestyle="none")
    for path in paths or []:
        xy = np.asarray(path)[:, :2]
        (line,) = ax.plot(xy[:, 0], xy[:, 1], linewidth=1.5)
        ax.plot(xy[:1, 0], xy[:1, 1], marker="o", color=line.get_color())
    ax.set_xlim(-n_cols / 2, n_cols / 2)
    ax.set_ylim(-n_rows / 2, n_rows / 2)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(maze_map.name)
    return ax
