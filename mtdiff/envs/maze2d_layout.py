"""Maze2D layout prompts (`data.prompt_kind = "layout"`): the map itself as the prompt.

The authors' Maze2D code prompts the planner with the map's layout instead of a
demonstration: walls and goal, one token per cell inside the outer wall (a map file is
all an unseen map needs). Here a token is the cell's features

    [wall, free, goal, row, col]      (LAYOUT_DIM = 5, float32)

one-hot cell kind, then the cell's row and column scaled to [-1, 1] over the inner grid,
so a token says where it is without relying on the model's position embedding. A map of
R x C cells (outer walls included) gives (R - 2)(C - 2) tokens, row-major: a prompt array
of shape (1, cells, LAYOUT_DIM), the same (P, J, width) shape a demonstration prompt set
has, with P = 1 (a layout has one "window"). All maps a checkpoint plans on must share
its training maps' shape: the number of tokens is part of the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from mtdiff.envs.maze2d import GOAL, WALL, MazeMap, parse_map

LAYOUT_DIM = 5


def layout_tokens(maze: MazeMap, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(cells, LAYOUT_DIM) tokens of the cells inside the outer wall, row-major.

    shape: the (rows, cols) the checkpoint was trained with; a map of another shape raises
    a `ValueError` that names both.
    """
    n_rows, n_cols = maze.shape
    if shape is not None and tuple(shape) != (n_rows, n_cols):
        raise ValueError(f"map {maze.name!r} is {n_rows}x{n_cols} cells but this checkpoint's "
                         f"layout prompts are {shape[0]}x{shape[1]} (its training maps'); draw "
                         f"the map on a {shape[0]}x{shape[1]} grid (outer walls included)")
    inner = [row[1:-1] for row in maze.rows[1:-1]]  # (R - 2) strings of C - 2 cells
    h, w = len(inner), len(inner[0])
    tok = np.zeros((h, w, LAYOUT_DIM), np.float32)
    for i, row in enumerate(inner):
        for j, ch in enumerate(row):
            tok[i, j, 0 if ch == WALL else 2 if ch == GOAL else 1] = 1.0
    tok[..., 3] = np.linspace(-1.0, 1.0, h)[:, None] if h > 1 else 0.0  # (h, 1) -> (h, w)
    tok[..., 4] = np.linspace(-1.0, 1.0, w)[None, :] if w > 1 else 0.0
    return tok.reshape(h * w, LAYOUT_DIM)  # (cells, 5)


def layout_prompt(maze: MazeMap, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The map's prompt set: (1, cells, LAYOUT_DIM)."""
    return layout_tokens(maze, shape)[None]


def layout_prompts(maps: Iterable[MazeMap]) -> dict[str, np.ndarray]:
    """Prompt sets of several maps (all of one shape), keyed by map name."""
    maps = list(maps)
    shapes = {m.shape for m in maps}
    if len(shapes) > 1:
        raise ValueError(f"layout prompts need maps of one shape; got {sorted(shapes)} for "
                         f"{[m.name for m in maps]}")
    return {m.name: layout_prompt(m) for m in maps}


def manifest_maps(manifest: dict[str, Any], names: Iterable[str]) -> list[MazeMap]:
    """The maps `names` of a Maze2D dataset, parsed from the layouts its manifest records."""
    recorded = manifest.get("details", {}).get("maps", {})
    missing = [n for n in names if n not in recorded]
    if missing:
        raise ValueError(f"the dataset's manifest records no layout for maps {missing}; "
                         "layout prompts need a Maze2D dataset collected by this project "
                         "(or set data.prompt_kind=demo)")
    return [parse_map("\n".join(recorded[n]["layout"]), name=n, source=f"manifest:{n}")
            for n in names]
