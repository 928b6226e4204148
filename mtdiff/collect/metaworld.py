"""Meta-World collection: one Ray task per task of MT50-rand.

Sources (``MetaWorldConfig.source``):

- ``scripted``: Meta-World's scripted experts, written in time order like a learning
  agent's replay buffer (worst first): uniform random actions for the first
  ``scripted_random`` of the episodes, then Gaussian action noise over the
  ``scripted_noise`` levels in order (mixed quality, fast).
- ``sac``: a SAC agent trained from scratch per task with its whole replay buffer kept
  (paper App. G): every transition it experiences, random warm-up included, in order.
  Backends (``sac.backend``): ``lean`` (`mtdiff.collect.sac`) or ``rllib``
  (`mtdiff.collect.sac_rllib`); both write the same dataset through
`mtdiff.collect.sac_run.SACTaskRun`.

Each scripted episode has its own seed, so a resumed task regenerates nothing: it
continues at the first episode not yet committed. A SAC task resumes from the checkpoint
committed with its last shard (see `SACTaskRun`). Prompts come from noise-free expert
episodes, for the collected tasks and for the held-out ones (for evaluation and
synthesis).
"""

from __future__ import annotations

import numpy as np

from mtdiff.collect.plan import SuitePlan, TaskJob, prompt_windows, task_seed
from mtdiff.config import Config, to_dict
from mtdiff.data.writer import TaskWriter
from mtdiff.runtime import set_torch_threads


def _noise_for_episode(i: int, n_episodes: int, levels: tuple[float, ...],
                      random_fraction: float = 0.0) -> float | None:
    """Episode i's action noise std, None for a uniform-random episode.

    The first round(random_fraction * n) episodes are random (a learning agent's warm-up);
    the others are split into len(levels) contiguous blocks, one level each, in order.
    """
    n_random = min(round(random_fraction * n_episodes), n_episodes - 1)
    if i < n_random:
        return None
    j, n = i - n_random, n_episodes - n_random
    return levels[min(j * len(levels) // n, len(levels) - 1)]


def _prompts(job: TaskJob, cfg: Config) -> np.ndarray:
    """The task's prompt windows, cut from noise-free scripted expert episodes."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.collect.scripted import expert_demos

    demos = list(expert_demos(job.task, num_episodes=cfg.collect.prompt_episodes,
                              seed=job.seed, max_episode_steps=cfg.metaworld.episode_steps))
    return prompt_windows(demos, cfg, job.seed)


def _scripted_job(job: TaskJob, cfg: Config, root: str) -> np.ndarray:
    # (pulls in gymnasium: imported on use)
    from mtdiff.collect.scripted import rollout_scripted
    from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM

    mw = cfg.metaworld
    if job.rows:
        n_eps = -(-mw.transitions_per_task // mw.episode_steps)  # ceil
        writer = TaskWriter(root, job.task, OBS_DIM, ACT_DIM, cfg.collect.shard_rows)
        if not writer.done:
            for i in range(int(writer.index.state.get("episodes_done", 0)), n_eps):
                noise = _noise_for_episode(i, n_eps, mw.scripted_noise, mw.scripted_random)
                ep = next(rollout_scripted(
                    job.task, num_episodes=1, seed=job.seed + 1000 + i,
                    noise_std=0.0 if noise is None else noise, random_actions=noise is None,
                    max_episode_steps=mw.episode_steps))
                writer.add_episode(i, ep, state={"episodes_done": i + 1})
            writer.close()
    return _prompts(job, cfg)


def _sac_job(job: TaskJob, cfg: Config, root: str) -> np.ndarray:
    if job.rows:
        # A task given several CPUs uses them for its matmuls (Ray's default is 1 each).
        set_torch_threads(int(cfg.collect.num_cpus_per_task))
        if cfg.sac.backend == "rllib":
            # (pulls in gymnasium: imported on use)
            from mtdiff.collect.sac_rllib import collect_task_rllib as collect
        else:
            # (pulls in torch: imported on use)
            from mtdiff.collect.sac import collect_task_lean as collect
        collect(job.task, cfg, root, job.seed)
    return _prompts(job, cfg)


def plan_metaworld(cfg: Config) -> SuitePlan:
    """Jobs for the configured tasks (data + prompts) and the held-out tasks (prompts)."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.metaworld import ACT_DIM, HELDOUT_TASKS, OBS_DIM, resolve_tasks

    mw = cfg.metaworld
    tasks = resolve_tasks(mw.tasks)
    n_eps = -(-mw.transitions_per_task // mw.episode_steps)
    if mw.source == "sac":
        # SAC writes exactly `transitions_per_task` rows (the last episode is cut short
        # when the budget is not a whole number of episodes).
        fn, rows = _sac_job, mw.transitions_per_task
        extra = {"sac": to_dict(cfg.sac)}
    else:
        fn, rows = _scripted_job, n_eps * mw.episode_steps
        extra = {"episodes_per_task": n_eps, "noise_levels": list(mw.scripted_noise),
                 "random_fraction": mw.scripted_random}
    jobs = [TaskJob(t, fn, None, rows, task_seed(cfg.collect.seed, t)) for t in tasks]
    jobs += [TaskJob(t, fn, None, 0, task_seed(cfg.collect.seed, t))
             for t in HELDOUT_TASKS if t not in tasks]
    details = {"tasks": tasks, "heldout_prompt_tasks": [t for t in HELDOUT_TASKS
                                                         if t not in tasks], **extra}
    return SuitePlan("metaworld", mw.source, OBS_DIM, ACT_DIM, jobs, details)


# ----------------------------------------------------------------------------------------
# SAC: one task's run (shared by both backends)
# ----------------------------------------------------------------------------------------
