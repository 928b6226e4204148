"""MT-DT (paper §5.1, App. B): a Decision Transformer told the task by a learned embedding.

"MTDT embeds the taskID ... to an embedding z with size 12, then z is concatenated with
the raw state" (App. B): the state token reads [s, z] (`MTDTConfig.task_embed_dim`), the
rest is the official DT on MTDiff-P's GPT-2 (`mtdiff.baselines.dt`). In evaluation the
return-to-go and the task id condition the policy. Batches: the "sequence" fields.

TorchRL's `DTLoss` (l2) is the mean squared error over all action entries; ours averages
over the real steps only (padding past an episode's end is masked), and equals it on a
batch without padding (tests/test_baselines.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mtdiff.baselines.dt import DTConfig, DTLearner, dt_network
from mtdiff.baselines.dt_policy import SequencePolicy, sequence_policy
from mtdiff.config.base import _positive
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register

if TYPE_CHECKING:
    from mtdiff.config import Config


@dataclass
class MTDTConfig(DTConfig):
    """MT-DT (`methods.mtdt`): the official DT, a learned task embedding on every state."""

    task_embed_dim: int = 12  # z (App. B: "an embedding z with size 12"), a lookup table

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "task_embed_dim")


class MTDTLearner(DTLearner):
    """The DT step with the task embedding on every state token."""

    method = "mtdt"
    task_dim_of_cfg = True


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           target_return: float | None = None, **_: Any) -> SequencePolicy:
    """MT-DT's policy; `target_return` is R at the first step (None: 1, the task's best)."""
    return sequence_policy(path, "mtdt", task_dim=True, prompt=False, device=device,
                           target_return=target_return)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """MT-DT's transformer (`--plan`'s cost; `dt_network`)."""
    return dt_network(cfg, cfg.methods["mtdt"].context, obs_dim, prompt=False)


# One of Table 1's baselines (paper §5.1, App. B): told the task by its id, so on
# Meta-World only.
register(Method("mtdt", "mtdt", "MTDT", fields="sequence",
                learner=f"{__name__}:MTDTLearner", policy=f"{__name__}:policy_from_checkpoint",
                config=f"{__name__}:MTDTConfig", network=f"{__name__}:network",
                suites=("metaworld",)))
