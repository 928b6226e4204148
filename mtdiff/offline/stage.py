"""The offline-RL stage (paper §5.3, App. B: Table 2, Figs. 6, 7): one TD3-BC run, a task x
data variant x seed, trained and evaluated on its data, its result written as a record.

The data variants (`inputs.variant`): the task's original data; +RAD and +S4RL, made in
memory (deterministic from the seed; S4RL's from `inputs.agent`, TD3-BC trained on the
original data with the same seed); +MTDiff-S (any variant named mtdiff-s...), an augmented
dataset a synthesis made (`inputs.synth`: of the multi-task model, of MTDiff-S-single, or
of a model trained on N tasks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mtdiff import tracking
from mtdiff.artifacts import Inputs, OfflineResult
from mtdiff.config import Config, OfflineConfig
from mtdiff.data.io import atomic_write_json
from mtdiff.data.transitions import Transitions, concat, load_task
from mtdiff.layout import td3bc_result
from mtdiff.offline.run import run_td3bc
from mtdiff.offline.td3bc import TD3BC
from mtdiff.synth.augment import rad_augment, s4rl_augment

VARIANTS = ("original", "rad", "s4rl", "mtdiff-s")  # and mtdiff-s-<which model>


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def s4rl_data(original: Transitions, agent: OfflineResult, o: OfflineConfig,
              copies: int) -> Transitions:
    """S4RL's augmented states, along the gradient of the original data's agent's Q."""
    if agent.agent is None:
        raise ValueError(f"{agent} kept no agent; S4RL needs the TD3-BC run on the original "
                         "data with save_agent")
    return s4rl_augment(original, TD3BC.load(agent.agent), eps=o.s4rl_eps, copies=copies)


def variant_data(cfg: Config, inputs: Inputs, seed: int) -> Transitions:
    """TD3-BC's training data for `inputs.variant` (module docstring)."""
    o, task, view = cfg.offline, inputs.need("task"), inputs.view or cfg.data.view
    kind = inputs.variant or "original"
    if kind not in VARIANTS and not kind.startswith("mtdiff-s"):
        raise ValueError(f"inputs.variant {kind!r}: one of {', '.join(VARIANTS)}")
    if kind.startswith("mtdiff-s"):
        return load_task(inputs.need("synth").path, task, "near-optimal")
    original = load_task(inputs.need("data").path, task, view)
    if kind == "rad":
        return concat([original, rad_augment(original, low=o.rad_low, high=o.rad_high,
                                             copies=o.augment_copies, seed=seed)])
    if kind == "s4rl":
        return concat([original, s4rl_data(original, inputs.need("agent"), o,
                                           o.augment_copies)])
    return original


def run(cfg: Config, inputs: Inputs, out: Path) -> OfflineResult:
    """TD3-BC (`cfg.offline`) on `inputs.task`'s data variant `inputs.variant`, seed
    `inputs.seed` (else `offline.seed`); writes its result (`layout.td3bc_result`) and,
    with `inputs.save_agent`, the agent under `out`. `inputs.labels` (method, seen, ...)
    are copied into the result; curves and the result go to the active MLflow run."""
    seed = cfg.offline.seed if inputs.seed is None else int(inputs.seed)
    data = variant_data(cfg, inputs, seed)
    return td3bc_cell(cfg, data, task=inputs.need("task"), seed=seed, out=Path(out),
                      save_agent=inputs.save_agent, **inputs.labels)


def td3bc_cell(cfg: Config, data: Transitions, *, task: str, seed: int, out: Path,
               save_agent: bool = False, **record: Any) -> OfflineResult:
    """Train and evaluate TD3-BC on `data`; writes its result and the agent under `out`."""
    o = cfg.offline
    agent = out / "agent.pt" if save_agent else None
    res = run_td3bc(data, task, o, max_episode_steps=cfg.metaworld.episode_steps,
                    checkpoint=agent, seed=seed, device=device(),
                    log_every=max(1, min(1000, o.steps)))
    rec = {"task": task, "seed": seed, **record, "success": res.success_rate,
           "mean_return": res.mean_return, "curve": res.curve, "seconds": res.seconds,
           "transitions": len(data), "episodes": o.eval_episodes, "preset": cfg.preset}
    atomic_write_json(td3bc_result(out), rec)
    tracking.log_metrics({"success": res.success_rate, "mean_return": res.mean_return,
                          "transitions": len(data)})
    return OfflineResult(td3bc_result(out), {**rec, "agent": str(agent) if agent else None})
