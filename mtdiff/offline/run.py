"""`run_td3bc`: train TD3-BC on transitions, evaluate on the task as it trains.

Used by the pipeline for each row of Table 2 (original / RAD / S4RL / MTDiff-S data).
Metrics go to MLflow, with their step, when a run is active in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from mtdiff import tracking
from mtdiff.config import OfflineConfig
from mtdiff.data.transitions import Transitions
from mtdiff.envs.metaworld import MAX_EPISODE_STEPS
from mtdiff.offline.evaluate import evaluate_policy
from mtdiff.offline.td3bc import TD3BC


@dataclass
class TD3BCResult:
    """What `run_td3bc` returns."""

    agent: TD3BC
    # [{step, success_rate, mean_return, episodes}] at every evaluation
    curve: list[dict[str, float]]
    success_rate: float  # at the last evaluation (after `steps` updates)
    mean_return: float
    train_logs: list[dict[str, float]] = field(default_factory=list)  # mean losses per window
    checkpoint: Path | None = None
    seconds: float = 0.0


def run_td3bc(data: Transitions, task: str, cfg: OfflineConfig | None = None, *,
              max_episode_steps: int = MAX_EPISODE_STEPS, checkpoint: str | Path | None = None,
              metric_prefix: str = "td3bc/", device: str = "cpu", seed: int | None = None,
              log_every: int = 1000) -> TD3BCResult:
    """Train TD3-BC on `data` for `cfg.steps` updates, evaluating on `task` every
    `cfg.eval_every` updates (`cfg.eval_episodes_intermediate` episodes) and at the end
    (`cfg.eval_episodes`: the result), random goals.

    The state normaliser is fitted on `data`'s states (augmented data included, as a
    practitioner training on the augmented set would). With an active MLflow run, losses
    and evaluations are logged as ``{metric_prefix}{name}`` with the update step; give each
    data variant its own prefix (e.g. "td3bc/rad/") to share one run.
    """
    cfg = cfg or OfflineConfig()
    seed = cfg.seed if seed is None else seed
    t0 = time.perf_counter()
    agent = TD3BC(data.obs_dim, data.act_dim, cfg, device=device, seed=seed)
    agent.fit_normalizer(data.observations)
    sample = agent.batches(data)

    def log(step: int, metrics: dict[str, float]) -> None:
        tracking.log_metrics({f"{metric_prefix}{k}": v for k, v in metrics.items()}, step=step)

    curve: list[dict[str, float]] = []
    logs: list[dict[str, float]] = []
    evals = sorted({*range(cfg.eval_every, cfg.steps + 1, cfg.eval_every), cfg.steps})
    for target in evals:
        logs += agent.train(sample, target - agent.step, log_every=min(log_every, cfg.steps),
                            on_log=log)
        episodes = cfg.eval_episodes if target == cfg.steps else min(
            cfg.eval_episodes_intermediate, cfg.eval_episodes)
        res = evaluate_policy(agent.act, task, episodes=episodes, seed=seed,
                              num_envs=cfg.eval_envs, max_episode_steps=max_episode_steps)
        point = {"step": float(agent.step), "success_rate": res.success_rate,
                 "mean_return": res.mean_return, "episodes": float(episodes)}
        curve.append(point)
        log(agent.step, {"eval/success_rate": res.success_rate,
                         "eval/mean_return": res.mean_return})
    path = agent.save(checkpoint) if checkpoint is not None else None
    tracking.log_metrics({f"{metric_prefix}train_seconds": time.perf_counter() - t0})
    last = curve[-1]
    return TD3BCResult(agent, curve, last["success_rate"], last["mean_return"], logs, path,
                       time.perf_counter() - t0)
