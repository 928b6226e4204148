"""Collection, dataset and environment rates for `benchmarks/calibrate.py`: the Maze2D and
Meta-World collection jobs (which also write the datasets the other parts use), subset
writes and loads, and evaluation environments' steps and making."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from calibrate_common import Calibrator, Clock, timed  # benchmarks/, beside this script

from mtdiff.config import apply_overrides, get_preset


def collect_maze(c: Calibrator) -> Path:
    """One Maze2D map of goal episodes through the collection job; its rate and the mean
    episode length (the local preset's settings)."""
    from mtdiff.collect.maze2d import _maze_job, plan_maze2d
    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("local"), ["maze2d.train_maps=train-0",
                                                "maze2d.unseen_maps=unseen-0",
                                                "maze2d.episodes_per_map=60"])
    root = c.tmp / "maze"
    plan = plan_maze2d(cfg)
    with Clock() as clk:
        prompts = {j.task: _maze_job(j, cfg, str(root)) for j in plan.jobs}
    secs = clk.busy
    with Clock() as clk:
        write_prompts(root, prompts, plan.obs_dim, plan.act_dim)
        man = finalize_dataset(root, suite="maze2d", source="calibration", tasks=["train-0"],
                               config={}, config_hash="calibration")
    c.put("finalize_s", clk.busy + 0.5, "s",
          "prompts + manifest of a 1-map Maze2D dataset, + 0.5 s for a summary plot")
    rows = read_manifest(root)["tasks"]["train-0"]["transitions"]
    episodes = man["tasks"]["train-0"]["episodes"]
    prompt_steps = 2 * cfg.collect.prompt_episodes * rows / episodes  # 2 maps' demos
    c.put("maze2d_collect_steps_per_s", (rows + prompt_steps) / secs, "steps/s",
          f"local preset's goal episodes, {episodes} episodes of map train-0 + prompts")
    c.put("maze2d_goal_episode_steps", rows / episodes, "steps",
          f"mean length of {episodes} local-preset goal episodes (noise 0.2) on train-0")
    return root


def collect_metaworld(c: Calibrator, rows: int = 2500) -> Path:
    """reach-v3 through the scripted collection job (the local preset's settings)."""
    from mtdiff.collect.metaworld import _scripted_job, plan_metaworld
    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("local"), ["metaworld.tasks=reach-v3",
                                                f"metaworld.transitions_per_task={rows}"])
    root = c.tmp / "mw"
    plan = plan_metaworld(cfg)
    job = next(j for j in plan.jobs if j.task == "reach-v3")
    with Clock() as clk:
        prompts = {"reach-v3": _scripted_job(job, cfg, str(root))}
    secs = clk.busy
    write_prompts(root, prompts, plan.obs_dim, plan.act_dim)
    finalize_dataset(root, suite="metaworld", source="scripted", tasks=["reach-v3"],
                     config={}, config_hash="calibration")
    steps = job.rows + cfg.collect.prompt_episodes * cfg.metaworld.episode_steps
    c.put("metaworld_scripted_steps_per_s", steps / secs, "steps/s",
          f"scripted reach-v3, {job.rows} rows + {cfg.collect.prompt_episodes} prompt demos")
    return root


def data_rates(c: Calibrator) -> Path:
    """A random 10-task dataset (the training points' data); subset write and load rates."""
    from mtdiff.data.random_data import write_random_dataset
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.subset import write_subset

    root = c.tmp / "random10"
    write_random_dataset(root, tasks=10, episodes=8, episode_len=500, obs_dim=39, act_dim=4)
    rows = 10 * 8 * 500
    secs = timed(lambda: load_dataset(root), min_s=1.0, warmup=1)
    c.put("load_rows_per_s", rows / secs, "rows/s", f"load_dataset of {rows} rows (10 tasks)")
    tasks = [f"task-{i:02d}" for i in range(5)]
    n = [0]

    def write() -> None:
        n[0] += 1
        write_subset(root, c.tmp / f"subset-{n[0]}", tasks)

    secs = timed(write, min_s=1.0, warmup=0)
    c.put("write_rows_per_s", rows / 2 / secs, "rows/s",
          f"write_subset of 5 tasks ({rows // 2} rows: read, write, statistics)")
    return root


def envs(c: Calibrator, maze: Path, mw: Path) -> None:
    """Evaluation env steps/s and env making, through the reference (zero-action) jobs."""
    from mtdiff.eval.reference import ZeroPolicy
    from mtdiff.eval.suites import EvalJob, make_envs, run_policy_job

    cfg = get_preset("local")
    for suite, task, steps in (("maze2d", "train-0", 100), ("metaworld", "reach-v3", 100),
                               ("cheetah-vel", "cheetah-vel-0", 100),
                               ("ant-dir", "ant-dir-0", 100)):
        n = 6
        job = EvalJob(suite, task, 0, n, steps, stop_on_success=False)
        with Clock() as clk:
            made, name = make_envs(job)
        make = clk.busy / n
        obs_act = made[0].observation_space.shape[0] + made[0].action_space.shape[0]
        policy = ZeroPolicy(made[0].action_space, {name: np.zeros((4, 20, obs_act), np.float32)},
                            20)
        with Clock() as clk:
            res = run_policy_job(job, policy, cfg, made, name)
        secs = clk.busy
        c.put(f"env_make_s.{suite}", make, "s", f"make_envs of {n} {task} envs / {n}")
        c.put(f"env_steps_per_s.{suite}", res["env_steps"] / secs, "steps/s",
              f"run_policy_job, zero action, {n} {task} envs x {steps} steps")
