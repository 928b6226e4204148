"""Maze2D collection (paper App. D): D4RL's waypoint expert on every training map.

One Ray task per map runs `mtdiff.envs.maze2d_expert.generate_episodes` (D4RL's generator: a
continuing trajectory toward random goal cells, cut into episodes) and writes it through
a resumable `TaskWriter`. Every map, training or unseen, also gets a prompt set cut from
expert episodes that head for the map's goal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtdiff.collect.plan import SuitePlan, TaskJob, prompt_windows, task_seed
from mtdiff.config import Config
from mtdiff.data.writer import TaskWriter

OBS_DIM, ACT_DIM = 4, 2


def _maze_job(job: TaskJob, cfg: Config, root: str) -> np.ndarray:
    """Write a map's episodes (skipping those already committed); return its prompts."""
    # (pulls in gymnasium, mujoco: imported on use; tests monkeypatch expert_episode here)
    from mtdiff.envs.maze2d_expert import expert_episode, generate_episodes

    maze = job.payload
    if job.rows:
        writer = TaskWriter(root, job.task, OBS_DIM, ACT_DIM, cfg.collect.shard_rows)
        if not writer.done:
            # The generator is one continuing, seeded trajectory: replaying it up to the
            # committed episode is cheap (a few thousand MuJoCo steps/s) and exact.
            skip = int(writer.index.state.get("episodes_done", 0))
            for i, ep in enumerate(generate_episodes(maze, cfg.maze2d,
                                                     num_episodes=cfg.maze2d.episodes_per_map,
                                                     seed=job.seed)):
                if i >= skip:
                    writer.add_episode(i, ep, state={"episodes_done": i + 1})
            writer.close()
    demos = [expert_episode(maze, seed=job.seed + 1 + i, max_steps=cfg.maze2d.eval_episode_steps)
             for i in range(cfg.collect.prompt_episodes)]
    return prompt_windows(demos, cfg, job.seed)


def plan_maze2d(cfg: Config) -> SuitePlan:
    """Jobs for the training maps (data + prompts) and the unseen maps (prompts only)."""
    # (pulls in gymnasium, mujoco: imported on use)
    from mtdiff.envs.maze2d import load_map

    m = cfg.maze2d
    maps = {name: load_map(name) for name in (*m.train_maps, *m.unseen_maps)}
    names = [mp.name for mp in maps.values()]
    if len(set(names)) != len(names):
        raise ValueError(f"two maps share a name in {names}; map files must have distinct names")
    jobs = []
    for spec, maze in maps.items():
        # (an upper bound for "goal" episodes, which end at G; it sizes the progress bar)
        rows = m.episodes_per_map * m.episode_steps if spec in m.train_maps else 0
        jobs.append(TaskJob(maze.name, _maze_job, maze, rows,
                            task_seed(cfg.collect.seed, maze.name)))
    details = {"maps": {mp.name: {"layout": list(mp.rows), "train": spec in m.train_maps,
                                  "source": str(Path(spec)) if Path(spec).suffix else spec}
                        for spec, mp in maps.items()}}
    return SuitePlan("maze2d", "waypoint-expert", OBS_DIM, ACT_DIM, jobs, details)
