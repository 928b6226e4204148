"""Prompt-DT (paper §5.1, App. B; Xu et al. 2022): a Decision Transformer with a trajectory
prompt of the task prepended.

Written from the Prompt-DT paper (its public code has no licence): the prompt is a
segment of the task's demonstrations, embedded by layers of its own and placed before the
recent history; the policy generalises to a new task given a few of its demonstrations.
Here the prompts are MTDiff-P's prompt sets (App. B: "PromptDT uses the same prompts and
GPT2 transformer in MTDiff-P"), J steps of (s, a) -- two tokens a step, no return token,
as those sets hold no rewards -- and the transformer is MTDiff-P's GPT-2
(`mtdiff.baselines.dt`). Batches: the "sequence" fields (prompts drawn as MTDiff-P's).

Loss: as MT-DT's (masked MSE; TorchRL's `DTLoss` on a batch without padding).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mtdiff.baselines.dt import DTConfig, DTLearner, dt_network
from mtdiff.baselines.dt_policy import SequencePolicy, sequence_policy
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register

if TYPE_CHECKING:
    from mtdiff.config import Config


@dataclass
class PromptDTConfig(DTConfig):
    """Prompt-DT (`methods.promptdt`): the official DT, the task told by MTDiff-P's prompts."""


class PromptDTLearner(DTLearner):
    """The DT step with the prompt's tokens before the trajectory's."""

    method = "promptdt"
    uses_prompt = True


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           target_return: float | None = None, **_: Any) -> SequencePolicy:
    """Prompt-DT's policy; `target_return` is R at the first step (None: 1, the task's best)."""
    return sequence_policy(path, "promptdt", task_dim=False, prompt=True, device=device,
                           target_return=target_return)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """Prompt-DT's transformer (`--plan`'s cost; `dt_network`)."""
    return dt_network(cfg, cfg.methods["promptdt"].context, obs_dim, prompt=True)


# One of Table 1's baselines (paper §5.1, App. B). Also on Maze2D (paper Figs. 4, 5:
# training and unseen maps against MTDiff-P) and, with MTDiff-P, the method of Table 5
# (Cheetah-vel, Ant-dir).
register(Method("promptdt", "promptdt", "PromptDT", fields="sequence",
                learner=f"{__name__}:PromptDTLearner", policy=f"{__name__}:policy_from_checkpoint",
                config=f"{__name__}:PromptDTConfig", network=f"{__name__}:network",
                suites=("metaworld", "maze2d", "cheetah-vel", "ant-dir")))
