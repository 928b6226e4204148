"""A task's SAC collection as a resumable run on disk (`SACTaskRun`): shards and agent
checkpoints committed together, its evaluation rounds, and the learning curves it leaves.
Shared by the SAC backends (`mtdiff.collect.sac` and `mtdiff.collect.sac_rllib`) and the
suites that collect with SAC (Meta-World, Cheetah-vel, Ant-dir).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff import keys, tracking
from mtdiff.collect.sac_env import SACEnv, metaworld_sac_env
from mtdiff.config import Config
from mtdiff.data.schema import table_to_arrays
from mtdiff.data.writer import INDEX, TaskIndex, TaskWriter, task_dir
from mtdiff.tracking.remote import live_children

CKPT_PREFIX = "sac-ckpt-"  # data/<task>/sac-ckpt-000003/: the agent when shard 3 committed


def derive_seed(*parts: int) -> int:
    """A 31-bit seed for a tuple of integers (episode, evaluation round, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] >> 1)


class SACTaskRun:
    """One task's SAC collection on disk: episodes in, shards + checkpoints out, resumable.

    Shards are committed at episode ends only (the first episode end after
    ``collect.shard_rows`` new rows), so a committed state never splits an episode:
    the environment needs no snapshot (MuJoCo's can't be taken exactly), and a resumed
    task starts the next episode exactly where an uninterrupted run would. Every
    episode's reset is seeded by (task seed, episode id) and the agent's one random
    generator is checkpointed, so a killed-and-resumed collection writes the very rows
    an uninterrupted one writes. Shards are therefore whole episodes and hold at least
    ``shard_rows`` rows (exactly that many when it is a multiple of the episode length).

    Commit order: the checkpoint folder ``sac-ckpt-<shard>/`` is written (temp name,
    then renamed), then the shard and the task index naming it (`TaskWriter`), then
    older checkpoints are deleted. A crash between the two leaves an unnamed checkpoint,
    deleted on reopening. The replay buffer is not checkpointed: it is the rows on disk
    (the whole buffer is kept), plus each episode's final observation (the s' of its
    last row, not a row itself), which the checkpoint carries as `replay.pt`.
    """

    def __init__(self, task: str, cfg: Config, root: str, seed: int,
                 env: SACEnv | None = None) -> None:

        self.task, self.cfg, self.seed = task, cfg, seed
        self.env = env or metaworld_sac_env(cfg)  # the suite: widths, budget, envs
        self.total = self.env.transitions
        self.writer = TaskWriter(root, task, self.env.obs_dim, self.env.act_dim,
                                 cfg.collect.shard_rows)
        self.dir = self.writer.dir
        state = dict(self.writer.index.state)
        self.steps = self.writer.committed_rows  # env steps == rows written
        self.episode = int(state.get("episodes_done", 0))  # the next episode's id
        self.history: list[dict[str, float]] = list(state.get("history", []))
        self.ckpt: str | None = state.get("ckpt")
        self.final_obs: list[np.ndarray] = []
        # Checkpoints a crash left behind: half-written, or written but never committed.
        for p in [*self.dir.glob(f".{CKPT_PREFIX}*.partial"), *self.dir.glob(f"{CKPT_PREFIX}*")]:
            if p.name != self.ckpt:
                shutil.rmtree(p, ignore_errors=True)
        if self.steps and self.ckpt is None:
            raise RuntimeError(f"{self.dir}: {self.steps} rows but no SAC checkpoint in the "
                               "index; delete the task's folder to collect it again")
        if not self.writer.done and self.steps >= self.total:
            self.writer.close()  # killed between the last shard's commit and the close

    @property
    def done(self) -> bool:
        """Whether the task is complete."""
        return self.writer.done

    @property
    def ckpt_dir(self) -> Path | None:
        """The committed checkpoint folder to resume from (None on a fresh task)."""
        return self.dir / self.ckpt if self.ckpt else None

    def episode_seed(self) -> int:
        """The reset seed of the next episode: fixed by (task seed, episode id)."""
        return derive_seed(self.seed, self.episode)

    def replay(self) -> dict[str, np.ndarray]:
        """The committed transitions as replay rows: obs, action, reward, next_obs,
        terminated (N rows each), in order; loads the final observations too."""
        import pyarrow.parquet as pq
        import torch


        final = torch.load(self.ckpt_dir / "replay.pt", weights_only=True)["final_obs"]
        self.final_obs = list(final.numpy())
        parts = [table_to_arrays(pq.read_table(self.dir / s["file"]))
                 for s in self.writer.index.shards]
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        obs, ep = cat[keys.OBSERVATION], cat[keys.EPISODE]
        last = np.r_[ep[1:] != ep[:-1], True]  # last row of each episode
        next_obs = np.empty_like(obs)
        next_obs[:-1] = obs[1:]
        next_obs[last] = final.numpy()[ep[last]]
        return {"obs": obs, "act": cat[keys.ACTION], "rew": cat[keys.REWARD],
                "next_obs": next_obs, "term": cat[keys.TERMINATED].astype(np.float32)}

    def end_episode(self, ep: dict[str, np.ndarray], final_obs: np.ndarray,
                    save_agent: Callable[[Path], None]) -> None:
        """Hand over a finished episode; commits a shard (with a checkpoint written by
        `save_agent(folder)`) when enough rows are buffered or the budget is reached."""
        n = len(ep[keys.REWARD])
        self.final_obs.append(np.asarray(final_obs, np.float32))
        self.steps += n
        self.episode += 1
        last = self.steps >= self.total
        # The writer flushes on the add_episode call iff this holds (same threshold); the
        # checkpoint is written first so the state committed with the shard can name it.
        commit = last or self.steps - self.writer.committed_rows >= self.cfg.collect.shard_rows
        state = self._commit_state(save_agent) if commit else None
        self.writer.add_episode(self.episode - 1, ep, state=state)
        if last:
            self.writer.close(state)  # the final agent's checkpoint is kept
        if commit:
            for p in self.dir.glob(f"{CKPT_PREFIX}*"):
                if p.name != self.ckpt:
                    shutil.rmtree(p, ignore_errors=True)

    def _commit_state(self, save_agent: Callable[[Path], None]) -> dict[str, Any]:
        import torch

        name = f"{CKPT_PREFIX}{len(self.writer.index.shards):06d}"
        tmp = self.dir / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_agent(tmp)
        torch.save({"final_obs": torch.from_numpy(np.stack(self.final_obs))}, tmp / "replay.pt")
        for f in tmp.rglob("*"):  # durable before the index can name it
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.replace(tmp, self.dir / name)
        self.ckpt = name
        return {"ckpt": name, "episodes_done": self.episode, "history": self.history,
                "backend": self.cfg.sac.backend}

    def log_eval(self, step: int, ret: float, success: float, sps: float,
                 **extra: float) -> None:
        """Record one evaluation point after `step` env steps (kept in the committed
        state, so a resumed run keeps its curve; read by `log_sac_runs`)."""
        self.history.append({"step": step, "return": ret, "success": success,
                             "steps_per_s": sps, **extra})


def evaluate(policy: Callable[[np.ndarray], np.ndarray], task: str, cfg: Config, seed: int,
             round_: int, env_spec: SACEnv | None = None) -> tuple[float, float]:
    """(mean return, success rate) of `sac.eval_episodes` episodes of `policy`.

    Success = `info["success"]` at any step (0 in suites without it). Seeds depend on (task
    seed, round) only, so evaluation never touches the training stream and a resumed run
    repeats it exactly. `env_spec`: the suite (default Meta-World's).
    """

    env = (env_spec or metaworld_sac_env(cfg)).make(task, seed)
    returns, successes = [], []
    for k in range(cfg.sac.eval_episodes):
        obs, _ = env.reset(seed=derive_seed(seed, 1, round_, k))
        ret, succ, done = 0.0, False, False
        while not done:
            obs, r, term, trunc, info = env.step(policy(obs))
            ret += float(r)
            succ = succ or bool(info.get("success", False))
            done = term or trunc
        returns.append(ret)
        successes.append(succ)
    env.close()
    return float(np.mean(returns)), float(np.mean(successes))


class EpisodeRecorder:
    """Preallocated arrays of one episode in the dataset's format (see `scripted`)."""

    def __init__(self, steps: int, obs_dim: int | None = None,
                 act_dim: int | None = None) -> None:
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM

        self.obs = np.empty((steps, obs_dim or OBS_DIM), np.float32)
        self.act = np.empty((steps, act_dim or ACT_DIM), np.float32)
        self.rew = np.empty(steps, np.float32)
        self.term = np.zeros(steps, bool)
        self.trunc = np.zeros(steps, bool)
        self.succ = np.zeros(steps, bool)
        self.t = 0

    def add(self, obs: np.ndarray, act: np.ndarray, rew: float, term: bool, trunc: bool,
            success: bool) -> None:
        """One transition: s_t, the executed a_t (clipped), r_t and the flags after it."""
        t = self.t
        self.obs[t], self.act[t], self.rew[t] = obs, np.clip(act, -1.0, 1.0), rew
        self.term[t], self.trunc[t], self.succ[t] = term, trunc, success
        self.t += 1

    def episode(self) -> dict[str, np.ndarray]:
        """The recorded steps as an episode dict."""
        n = self.t
        return {keys.OBSERVATION: self.obs[:n], keys.ACTION: self.act[:n],
                keys.REWARD: self.rew[:n], keys.TERMINATED: self.term[:n],
                keys.TRUNCATED: self.trunc[:n], keys.SUCCESS: self.succ[:n]}


# ----------------------------------------------------------------------------------------
# SAC: tracking (driver side, from what the tasks committed)
# ----------------------------------------------------------------------------------------


def sac_histories(root: str | Path, tasks: list[str]) -> dict[str, list[dict[str, float]]]:
    """Each task's committed evaluation points (see `SACTaskRun.log_eval`)."""

    out = {}
    for task in tasks:
        path = task_dir(root, task) / INDEX
        out[task] = list(TaskIndex.load(path).state.get("history", [])) if path.exists() else []
    return out


def plot_sac_curves(histories: dict[str, list[dict[str, float]]], path: str | Path) -> Path:
    """Evaluation success rate and return against env steps, one line per task (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on workers, CI or clusters
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for task, hist in histories.items():
        steps = [h["step"] for h in hist]
        axes[0].plot(steps, [h["success"] for h in hist], label=task, lw=1)
        axes[1].plot(steps, [h["return"] for h in hist], label=task, lw=1)
    for ax, name in zip(axes, ("success rate", "return"), strict=True):
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"evaluation {name}")
        ax.grid(alpha=0.3)
    if len(histories) <= 12:  # 50 labels would hide the curves
        axes[1].legend(fontsize=7)
    fig.suptitle("SAC per task (deterministic policy)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def log_sac_runs(cfg: Config, root: str | Path) -> None:
    """Under the active MLflow run: one child run per task with its SAC curves (return,
    success rate, env steps/s, losses against env steps) and the plot of all tasks."""
    # (pulls in gymnasium: imported on use)
    import tempfile

    from mtdiff.envs.metaworld import resolve_tasks

    histories = sac_histories(root, resolve_tasks(cfg.metaworld.tasks))
    for task, hist in histories.items():
        if live_children("task", task):  # its task logged the curve while training
            continue
        with tracking.nested_run(f"sac-{task}", stage="collect-sac", task=task,
                                 backend=cfg.sac.backend, dataset_path=root):
            for h in hist:
                tracking.log_metrics({f"eval_{k}" if k in ("return", "success") else k: v
                                      for k, v in h.items() if k != "step"},
                                     step=int(h["step"]))
            if hist:
                tracking.log_metrics({"final_eval_success": hist[-1]["success"]})
    with tempfile.TemporaryDirectory() as tmp:
        tracking.log_artifact(plot_sac_curves(histories, Path(tmp) / "sac_curves.png"))


def curve_metrics(point: dict[str, float], suite: str) -> dict[str, float]:
    """One evaluation point (`SACTaskRun.log_eval`) as MLflow metrics: ``eval_return``,
    ``eval_success`` (Meta-World only: the MuJoCo suites define no success),
    ``steps_per_s`` and the losses; the names the after-the-fact curves use
    (`log_sac_runs`, `mujoco.log_sac_curves`)."""
    return {f"eval_{k}" if k in ("return", "success") else k: float(v)
            for k, v in point.items()
            if k != "step" and not (k == "success" and suite != "metaworld")}


def final_metrics(history: list[dict[str, float]], suite: str) -> dict[str, float]:
    """A finished curve's summary: final success (Meta-World), else first and final
    return."""
    if not history:
        return {}
    if suite == "metaworld":
        return {"final_eval_success": float(history[-1]["success"])}
    return {"final_eval_return": float(history[-1]["return"]),
            "first_eval_return": float(history[0]["return"])}
