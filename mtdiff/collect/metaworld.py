"""Meta-World collection: one Ray task per task of MT50-rand.

Sources (``MetaWorldConfig.source``):

- ``scripted``: Meta-World's scripted experts with Gaussian action noise, the episodes
  split evenly over ``scripted_noise`` levels (mixed quality, fast).
- ``sac``: a SAC agent trained from scratch per task with its whole replay buffer kept
  (paper App. G).

Each episode has its own seed, so a resumed task regenerates nothing: it continues at
the first episode not yet committed. Prompts come from noise-free expert episodes, for
the collected tasks and for the held-out ones (for evaluation and synthesis).
"""

from __future__ import annotations

import numpy as np

from mtdiff.collect.pipeline import SuitePlan, TaskJob, prompt_windows, task_seed
from mtdiff.config import Config
from mtdiff.data.writer import TaskWriter


def _noise_for_episode(i: int, n_episodes: int, levels: tuple[float, ...]) -> float:
    """Episodes 0..n-1 split into len(levels) contiguous blocks, one noise level each."""
    return levels[min(i * len(levels) // n_episodes, len(levels) - 1)]


def _scripted_job(job: TaskJob, cfg: Config, root: str) -> np.ndarray:
    from mtdiff.collect.scripted import expert_demos, rollout_scripted
    from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM

    mw = cfg.metaworld
    if job.rows:
        n_eps = -(-mw.transitions_per_task // mw.episode_steps)  # ceil
        writer = TaskWriter(root, job.task, OBS_DIM, ACT_DIM, cfg.collect.shard_rows)
        if not writer.done:
            for i in range(int(writer.index.state.get("episodes_done", 0)), n_eps):
                ep = next(rollout_scripted(
                    job.task, num_episodes=1, seed=job.seed + 1000 + i,
                    noise_std=_noise_for_episode(i, n_eps, mw.scripted_noise),
                    max_episode_steps=mw.episode_steps))
                writer.add_episode(i, ep, state={"episodes_done": i + 1})
            writer.close()
    demos = list(expert_demos(job.task, num_episodes=cfg.collect.prompt_episodes,
                              seed=job.seed, max_episode_steps=mw.episode_steps))
    return prompt_windows(demos, cfg, job.seed)


def plan_metaworld(cfg: Config) -> SuitePlan:
    """Jobs for the configured tasks (data + prompts) and the held-out tasks (prompts)."""
    from mtdiff.envs.metaworld import ACT_DIM, HELDOUT_TASKS, OBS_DIM, resolve_tasks

    mw = cfg.metaworld
    tasks = resolve_tasks(mw.tasks)
    if mw.source == "sac":
        raise ValueError("Meta-World SAC collection is not available in this version; use "
                         "--source scripted (or --set metaworld.source=scripted)")
    n_eps = -(-mw.transitions_per_task // mw.episode_steps)
    jobs = [TaskJob(t, _scripted_job, None, n_eps * mw.episode_steps,
                    task_seed(cfg.collect.seed, t)) for t in tasks]
    jobs += [TaskJob(t, _scripted_job, None, 0, task_seed(cfg.collect.seed, t))
             for t in HELDOUT_TASKS if t not in tasks]
    details = {"tasks": tasks, "heldout_prompt_tasks": [t for t in HELDOUT_TASKS
                                                         if t not in tasks],
               "episodes_per_task": n_eps, "noise_levels": list(mw.scripted_noise)}
    return SuitePlan("metaworld", mw.source, OBS_DIM, ACT_DIM, jobs, details)
