"""Cheetah-vel / Ant-dir collection (App. H, Table 5): one Ray task per task, SAC in each.

Every task, training or held-out, gets its own SAC agent trained from scratch by the lean
backend (`mtdiff.collect.sac.collect_task_lean`, resumable like Meta-World's). Then:

- a training task's data is, by `<suite section>.dataset`:
  ``"expert"`` (default): `expert_episodes` episodes of the final policy with sampled
  actions, written to ``<out>/data/<task>/`` (Prompt-DT's per-task "expert" datasets, which
  the paper trained on); the SAC run's own buffer stays in ``<out>/sac/data/<task>/``.
  ``"buffer"``: the SAC run's whole replay buffer, written straight to
  ``<out>/data/<task>/`` (App. G's Meta-World recipe);
- a held-out task's SAC run (``heldout_transitions`` steps, in ``<out>/sac/``) only serves
  its prompts; it starts from scratch, or (``heldout_init="nearest"``) from the final
  agent of the training task with the closest goal, which it then waits for;
- every task's prompts are cut from `collect.prompt_episodes` episodes of its final policy
  acting deterministically, i.e. the end of its SAC run (not the best evaluation round).

Every episode is seeded by (task seed, purpose, episode index) and the agent's sampling
generator is reseeded per expert episode, so a resumed collection writes the same rows.
SAC's evaluation curve per task (return against env steps) is committed with its shards
and logged to MLflow by `log_sac_curves`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mtdiff import tracking
from mtdiff.collect.plan import SuitePlan, TaskJob, prompt_windows, task_seed
from mtdiff.collect.sac_env import SACEnv
from mtdiff.collect.sac_run import EpisodeRecorder, SACTaskRun, derive_seed, sac_histories
from mtdiff.config import Config, to_dict
from mtdiff.data.writer import TaskWriter
from mtdiff.runtime import set_torch_threads
from mtdiff.tracking.remote import live_children, tag_runs

if TYPE_CHECKING:
    from mtdiff.collect.sac import SACAgent

SAC_DIR = "sac"  # <out>/sac/: the SAC runs whose buffer is not the dataset
_EXPERT, _PROMPT = 2, 3  # seed purposes (derive_seed(task seed, purpose, episode))


@dataclass(frozen=True)
class MujocoJob:
    """A task job's payload: its suite, whether it is a training or held-out task, and the
    training task whose final agent a held-out run starts from (None: from scratch)."""

    suite: str
    role: Literal["train", "heldout"]
    init_from: str | None = None


def nearest_task(task: str, candidates: list[str]) -> str:
    """The candidate whose goal is closest to `task`'s: |v - v'| for velocities, the angle
    between directions (wrapping at 2 pi) for Ant-dir; ties go to the first listed."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.mujoco_tasks import get_suite, suite_of

    spec = get_suite(suite_of(task))
    g = spec.goals[spec.index(task)]

    def dist(other: str) -> float:
        d = abs(spec.goals[spec.index(other)] - g)
        return min(d, 2 * np.pi - d) if spec.goal == "direction" else d

    return min(candidates, key=dist)


def sac_env_for(cfg: Config, suite: str, role: str) -> SACEnv:
    """The SAC collector's view of a suite's task (budget by role)."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.mujoco_tasks import get_suite

    spec, sc = get_suite(suite), cfg.suite_section(suite)
    total = sc.transitions_per_task if role == "train" else sc.heldout_transitions
    return SACEnv(suite, spec.obs_dim, spec.act_dim, sc.episode_steps, total)


def sac_root(root: str | Path, cfg: Config, suite: str, role: str) -> Path:
    """Where a task's SAC run writes: the dataset itself (training task, "buffer") or
    ``<root>/sac``."""
    if role == "train" and cfg.suite_section(suite).dataset == "buffer":
        return Path(root)
    return Path(root) / SAC_DIR


def plan_mujoco(cfg: Config, suite: str) -> SuitePlan:
    """Jobs for the section's training tasks (data + prompts) and held-out tasks (prompts)."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.mujoco_tasks import get_suite, resolve_tasks

    if cfg.sac.backend != "lean":
        raise ValueError(f"{suite} is collected by the lean SAC only; drop "
                         f"--set sac.backend={cfg.sac.backend}")
    spec, sc = get_suite(suite), cfg.suite_section(suite)
    tasks = resolve_tasks(sc.tasks, suite=suite)
    heldout = [t for t in resolve_tasks(sc.heldout_tasks, suite=suite) if t not in tasks] \
        if sc.heldout_tasks.strip() else []
    # Upper bound for "expert" (an Ant episode ends early when it falls).
    rows = sc.transitions_per_task if sc.dataset == "buffer" else \
        sc.expert_episodes * sc.episode_steps
    jobs = [TaskJob(t, _task_job, MujocoJob(suite, "train"), rows,
                    task_seed(cfg.collect.seed, t)) for t in tasks]
    for t in heldout:
        src = nearest_task(t, tasks) if sc.heldout_init == "nearest" else None
        jobs.append(TaskJob(t, _task_job, MujocoJob(suite, "heldout", src), 0,
                            task_seed(cfg.collect.seed, t), after=(src,) if src else ()))
    details = {"tasks": tasks, "heldout_prompt_tasks": heldout, "dataset": sc.dataset,
               "heldout_init": {j.task: j.payload.init_from for j in jobs
                                if j.payload.role == "heldout"},
               "goal": spec.goal, "goals": {t: spec.goals[spec.index(t)] for t in
                                            [*tasks, *heldout]},
               "success_defined": False, "sac_dir": SAC_DIR, "sac": to_dict(cfg.sac)}
    return SuitePlan(suite, "sac", spec.obs_dim, spec.act_dim, jobs, details)


def _task_job(job: TaskJob, cfg: Config, root: str) -> np.ndarray:
    """One task (inside a Ray task): SAC run, expert data (training, "expert"), prompts."""
    # (pulls in torch: imported on use)
    from mtdiff.collect.sac import collect_task_lean

    set_torch_threads(int(cfg.collect.num_cpus_per_task))
    p: MujocoJob = job.payload
    env = sac_env_for(cfg, p.suite, p.role)
    at = sac_root(root, cfg, p.suite, p.role)
    init = None
    if p.init_from is not None:  # the training task's run is complete (`TaskJob.after`)
        init = final_agent(p.init_from, cfg, sac_root(root, cfg, p.suite, "train"),
                           task_seed(cfg.collect.seed, p.init_from),
                           sac_env_for(cfg, p.suite, "train")).state_dict()
    collect_task_lean(job.task, cfg, str(at), job.seed, env, init_state=init,
                      learning_starts=0 if init is not None else None)
    agent = final_agent(job.task, cfg, at, job.seed, env)
    if p.role == "train" and cfg.suite_section(p.suite).dataset == "expert":
        _write_expert_data(job, cfg, root, agent, env)
    demos = [policy_episode(agent, env, job.task, derive_seed(job.seed, _PROMPT, k),
                            deterministic=True) for k in range(cfg.collect.prompt_episodes)]
    return prompt_windows(demos, cfg, job.seed)


def final_agent(task: str, cfg: Config, at: Path, seed: int, env: SACEnv) -> SACAgent:
    """The agent of a finished SAC run (its last committed checkpoint, weights only)."""
    import torch

    from mtdiff.collect.sac import make_agent

    run = SACTaskRun(task, cfg, str(at), seed, env=env)
    if not run.done or run.ckpt_dir is None:
        raise RuntimeError(f"{run.dir}: the SAC run of {task!r} is not complete; rerun the "
                           "collection to finish it")
    agent = make_agent(cfg, env.obs_dim, env.act_dim, seed)
    agent.load_state_dict(torch.load(run.ckpt_dir / "agent.pt", weights_only=True,
                                     map_location=agent.device))
    return agent


def policy_episode(agent: SACAgent, env: SACEnv, task: str, seed: int, *,
                   deterministic: bool) -> dict[str, np.ndarray]:
    """One episode of the agent's policy (tanh(mean) or sampled), seeded by `seed`."""
    e = env.make(task, seed)
    if not deterministic:
        agent.gen.manual_seed(seed)  # the sampled actions, repeatable per episode
    rec = EpisodeRecorder(env.episode_steps, env.obs_dim, env.act_dim)
    obs, _ = e.reset(seed=seed)
    for t in range(env.episode_steps):
        action = agent.act(obs, deterministic=deterministic)
        next_obs, reward, term, trunc, _ = e.step(action)
        rec.add(obs, action, float(reward), term, trunc or t == env.episode_steps - 1, False)
        obs = next_obs
        if term:
            break
    e.close()
    return rec.episode()


def _write_expert_data(job: TaskJob, cfg: Config, root: str, agent: SACAgent,
                       env: SACEnv) -> None:
    """`expert_episodes` sampled episodes of the final policy as the task's data
    (resumes after the last committed shard)."""
    sc = cfg.suite_section(job.payload.suite)
    writer = TaskWriter(root, job.task, env.obs_dim, env.act_dim, cfg.collect.shard_rows)
    if writer.done:
        return
    for i in range(int(writer.index.state.get("episodes_done", 0)), sc.expert_episodes):
        ep = policy_episode(agent, env, job.task, derive_seed(job.seed, _EXPERT, i),
                            deterministic=False)
        writer.add_episode(i, ep, state={"episodes_done": i + 1})
    writer.close()


# ----------------------------------------------------------------------------------------
# Tracking (driver side, from what the tasks committed)
# ----------------------------------------------------------------------------------------


def sac_curves(cfg: Config, root: str | Path, suite: str
               ) -> dict[str, tuple[str, list[dict[str, float]]]]:
    """Each task's SAC evaluation points, ``{task: (role, [{step, return, ...}])}``."""
    plan = plan_mujoco(cfg, suite)
    out = {}
    for job in plan.jobs:
        role = job.payload.role
        at = sac_root(root, cfg, suite, role)
        out[job.task] = (role, sac_histories(at, [job.task])[job.task])
    return out


def plot_returns(curves: dict[str, tuple[str, list[dict[str, float]]]], path: Path) -> Path:
    """SAC evaluation return against env steps, one line per task (held-out dashed)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers, CI or clusters
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for task, (role, hist) in curves.items():
        ax.plot([h["step"] for h in hist], [h["return"] for h in hist], lw=1, label=task,
                ls="--" if role == "heldout" else "-")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (deterministic policy)")
    ax.grid(alpha=0.3)
    if len(curves) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_sac_curves(cfg: Config, root: str | Path, suite: str) -> None:
    """Under the active MLflow run: a child run per task with its SAC curve (eval_return,
    env steps/s, losses against env steps; no success: the suites define none) and a plot
    of all tasks."""
    curves = sac_curves(cfg, root, suite)
    for task, (role, hist) in curves.items():
        live = live_children("task", task)
        if live:  # its task logged the curve while training; the role only this knows
            tag_runs(live, {"role": role, "suite": suite})
            continue
        with tracking.run(cfg, "collect-sac", name=f"sac-{task}", nested=True, task=task,
                          role=role, suite=suite, backend="lean", dataset_path=str(root)):
            for h in hist:
                tracking.log_metrics({("eval_return" if k == "return" else k): v
                                      for k, v in h.items() if k not in ("step", "success")},
                                     step=int(h["step"]))
            if hist:
                tracking.log_metrics({"final_eval_return": hist[-1]["return"],
                                      "first_eval_return": hist[0]["return"]})
    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_artifact(plot_returns(curves, Path(tmp) / f"sac_curves-{suite}.png"))
