"""The ``rllib`` SAC backend: RLlib's `SACConfig` (new API stack) writing our dataset.

For users who want RLlib's runners, learners and algorithm zoo; the ``lean`` backend
(`mtdiff.collect.sac`) is the default because it is ~10x faster per core on this
workload (`benchmarks/sac_collect.py`). Both write the same format through
`mtdiff.collect.sac_run.SACTaskRun`, with the same commit and resume rules.

How transitions are recorded: RLlib steps our env (`num_env_runners=0`, so inside this
process) through `_RecordingEnv`, a wrapper that writes down every (s, a, r, flags)
exactly as executed, in order, and seeds every reset by (task seed, episode id) like
the lean backend. Its episodes are handed to `SACTaskRun` between `algo.train()` calls;
one call is exactly one episode (`min_sample_timesteps_per_iteration` = episode length,
one env step and one update per `training_step`), so commits fall on episode ends, with
the algorithm's state exactly as after the episode's last update.

Differences to ``lean``, all RLlib's own behaviour: the warm-up before
`num_steps_sampled_before_learning_starts` samples RLlib's initial stochastic policy
(not uniform actions); RLlib's action sampling uses torch's global generator, which its
checkpoints don't hold, so a resumed run continues correctly (no row lost or written
twice, the buffer refilled from disk) but not bit-identically to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtdiff import keys
from mtdiff.collect.sac_run import EpisodeRecorder, SACTaskRun, derive_seed, evaluate
from mtdiff.config import Config
from mtdiff.envs.metaworld import make_env

# RLlib makes envs from a registered creator it pickles, so the creator cannot close over
# this task's run: it looks it up here instead (same process: `num_env_runners=0`).
_RUNS: dict[str, tuple[SACTaskRun, list[_RecordingEnv]]] = {}
ENV_NAME = "mtdiff-metaworld-recorded"


def _make_env(env_config: Any) -> gym.Env:
    """RLlib's env creator: a recording MT50-rand env for the run named in the config."""
    run, made = _RUNS[env_config["run"]]
    T = run.cfg.metaworld.episode_steps
    env = _RecordingEnv(make_env(run.task, seed=run.seed, max_episode_steps=T), run, T)
    made.append(env)
    return env


class _RecordingEnv(gym.Wrapper):
    """Records every transition RLlib takes into the task's `SACTaskRun` episodes."""

    def __init__(self, env: gym.Env, run: SACTaskRun, episode_steps: int) -> None:
        super().__init__(env)
        self.run, self.episode_steps = run, episode_steps
        self.done_episodes: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self._rec: EpisodeRecorder | None = None
        self._obs: np.ndarray | None = None
        self._steps = run.steps  # env steps taken, committed or not
        self._episode = run.episode

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start the next episode, seeded by (task seed, episode id); RLlib's seed ignored."""

        self._obs, info = self.env.reset(seed=derive_seed(self.run.seed, self._episode))
        n = min(self.episode_steps, max(self.run.total - self._steps, 1))
        self._rec = EpisodeRecorder(n)
        return self._obs, info

    @property
    def mid_episode(self) -> bool:
        """Whether an episode is under way (some but not all of its steps taken)."""
        return self._rec is not None and 0 < self._rec.t < len(self._rec.rew)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step and record; the budget's last step truncates the episode."""
        assert self._rec is not None and self._obs is not None, "step() before reset()"
        obs, reward, term, trunc, info = self.env.step(action)
        rec = self._rec
        trunc = trunc or rec.t == len(rec.rew) - 1
        if self._steps < self.run.total:  # past the budget (RLlib's last steps): dropped
            rec.add(self._obs, np.asarray(action, np.float32), float(reward), term, trunc,
                    bool(info["success"]))
            self._steps += 1
            if term or trunc:
                self.done_episodes.append((rec.episode(), obs))
                self._episode += 1
        self._obs = obs
        return obs, reward, term, trunc, info


def build_algo(task: str, cfg: Config, seed: int, env: str, env_config: dict[str, Any],
               learning_starts: int) -> Any:
    """RLlib's SAC with our hyper-parameters: 256x256 nets, twin Q, auto entropy,
    uniform replay, one env step and one update (batch 256) per `training_step`."""
    import torch
    from ray.rllib.algorithms.sac import SACConfig

    sc = cfg.sac
    gpus = 1 if torch.cuda.is_available() else 0  # the Ray task was given (part of) a GPU
    config = (
        SACConfig()
        .api_stack(enable_rl_module_and_learner=True, enable_env_runner_and_connector_v2=True)
        .environment(env=env, env_config=env_config)
        .framework("torch")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=1)
        .learners(num_learners=0, num_gpus_per_learner=gpus)
        .training(
            gamma=sc.gamma, tau=sc.tau, twin_q=True, initial_alpha=1.0, target_entropy="auto",
            actor_lr=sc.lr, critic_lr=sc.lr, alpha_lr=sc.lr,
            train_batch_size_per_learner=sc.batch_size, n_step=1,
            num_steps_sampled_before_learning_starts=learning_starts,
            replay_buffer_config={"type": "EpisodeReplayBuffer",
                                  "capacity": cfg.metaworld.transitions_per_task},
            # natural ratio: batch / (fragment 1 x 1 env) = one update per env step
        )
        .rl_module(model_config={"fcnet_hiddens": [sc.hidden, sc.hidden],
                                 "fcnet_activation": "relu"})
        .reporting(min_time_s_per_iteration=0,
                   min_sample_timesteps_per_iteration=cfg.metaworld.episode_steps)
        .debugging(seed=seed, log_level="ERROR")
    )
    if sc.updates_per_step != 1:
        config.training(training_intensity=float(sc.batch_size * sc.updates_per_step))
    return config.build_algo()


def _deterministic_policy(algo: Any) -> Callable[[np.ndarray], np.ndarray]:
    """tanh(mean) of RLlib's squashed Gaussian, like the lean agent's evaluation."""
    import torch

    module = algo.get_module()

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module.forward_inference({"obs": torch.from_numpy(obs)[None]})
        mean = out["action_dist_inputs"][0].chunk(2)[0]  # inputs are [mean | log std]
        return torch.tanh(mean).numpy()

    return act


def _refill(algo: Any, rows: dict[str, np.ndarray], episode_ids: np.ndarray) -> None:
    """Put the committed transitions back into RLlib's replay buffer, as episodes."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    starts = np.flatnonzero(np.r_[True, episode_ids[1:] != episode_ids[:-1]])
    ends = np.r_[starts[1:], len(episode_ids)]
    episodes = []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        obs = np.concatenate([rows["obs"][s:e], rows["next_obs"][e - 1:e]])  # (T+1, obs)
        episodes.append(SingleAgentEpisode(
            observations=list(obs), actions=list(rows["act"][s:e]),
            rewards=list(rows["rew"][s:e].astype(float)), terminated=bool(rows["term"][e - 1]),
            truncated=not bool(rows["term"][e - 1]), len_lookback_buffer=0).to_numpy())
    algo.local_replay_buffer.add(episodes)


def collect_task_rllib(task: str, cfg: Config, root: str, seed: int) -> None:
    """Train RLlib's SAC on `task`, every transition into the task's shards; resumable."""
    import time

    import pyarrow.parquet as pq

    run = SACTaskRun(task, cfg, root, seed)
    if run.done:
        return
    from ray.tune.registry import register_env

    sc = cfg.sac
    wrappers: list[_RecordingEnv] = []
    key = f"{root}:{task}"
    _RUNS[key] = (run, wrappers)
    register_env(ENV_NAME, _make_env)
    # After a resume the warm-up already on disk counts (RLlib's counter restarts at 0).
    algo = build_algo(task, cfg, seed, ENV_NAME, {"run": key},
                      max(0, sc.learning_starts - run.steps))
    if run.ckpt_dir is not None:
        algo.restore_from_path(str(run.ckpt_dir / "algo"))
        ep_ids = np.concatenate([pq.read_table(run.dir / s["file"], columns=[keys.EPISODE])
                                 .column(keys.EPISODE).to_numpy()
                                 for s in run.writer.index.shards])
        _refill(algo, run.replay(), ep_ids)

    def save(folder: Path) -> None:
        algo.save_to_path(str(folder / "algo"))

    rec_env = wrappers[-1]  # the env runner's env (the last one RLlib made)
    clock, clock_steps, next_eval = time.perf_counter(), run.steps, run.steps // sc.eval_every + 1
    while run.steps < run.total:
        algo.train()  # one episode (see the module docstring)
        if rec_env.mid_episode:  # an RLlib whose iterations no longer end on episode ends
            raise RuntimeError("RLlib's train() stopped mid-episode, so a checkpoint would "
                               "not match the rows on disk; use sac.backend=lean")
        for ep, final_obs in rec_env.done_episodes:
            # Evaluate before committing so the point is saved with the shard; the
            # policy is the one at this episode's end (one episode per train()).
            steps = run.steps + len(ep[keys.REWARD])
            while steps >= next_eval * sc.eval_every:
                sps = (steps - clock_steps) / (time.perf_counter() - clock)
                ret, succ = evaluate(_deterministic_policy(algo), task, cfg, seed, next_eval)
                run.log_eval(next_eval * sc.eval_every, ret, succ, sps)
                clock, clock_steps = time.perf_counter(), steps  # eval time excluded
                next_eval += 1
            run.end_episode(ep, final_obs, save)
        rec_env.done_episodes.clear()
    algo.stop()
    del _RUNS[key]
