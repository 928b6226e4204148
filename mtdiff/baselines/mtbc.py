"""MTBC (paper §5.1, App. B): behaviour cloning with a task-id-conditioned actor.

The actor is a 3-layer Mish MLP on [s, z], z the task id embedded by a 3-layer Mish MLP
(App. B), widened by "network scaling" (`MTBCConfig.hidden`); it outputs tanh-bounded
actions and is trained by mean squared error to the data's actions with Adam, as CORL's
any-percent BC (TD3-BC's actor, lr 3e-4). Batches: the "qlearning" fields' (s, a, task).

The loss equals TorchRL's `BCLoss(loss_function="l2")` on the same batch and weights
(tests/test_baselines.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from mtdiff import keys
from mtdiff.baselines.common import (
    BaselineLearner,
    MLPConfig,
    TaskIdPolicy,
    actor_policy,
    num_tasks,
)
from mtdiff.baselines.nets import DeterministicActor
from mtdiff.config.base import _positive
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from mtdiff.config import Config
    from mtdiff.train.core import TrainSetup


@dataclass
class MTBCConfig(MLPConfig):
    """MTBC (`methods.mtbc`): behaviour cloning, CORL's any-percent BC, a wider actor."""

    # App. B "network scaling" (no size given): an actor (and task embedding) 4x CORL's width.
    hidden: int = 1024
    lr: float = 3e-4  # CORL any-percent BC (TD3-BC's actor): Adam 3e-4, MSE on actions

    PRESETS = {"smoke": {"hidden": 64}}

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "lr")


def build_actor(cfg: Config, build: dict[str, Any]) -> DeterministicActor:
    """MTBC's actor for a checkpoint's build arguments."""
    hp: MTBCConfig = cfg.methods["mtbc"]
    return DeterministicActor(build["obs_dim"], build["act_dim"], build["num_tasks"],
                              hidden=hp.hidden, task_dim=hp.task_embed_dim)


def bc_loss(actor: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over batch and action dims of (pi(s, z) - a)^2."""
    pred = actor(batch[keys.BATCH_OBS], batch[keys.BATCH_TASK_ID])  # (B, act_dim)
    return F.mse_loss(pred, batch[keys.BATCH_ACTION])


class MTBCLearner(BaselineLearner):
    """One MSE step of the actor per batch."""

    def __init__(self, cfg: Config, setup: TrainSetup, device: torch.device) -> None:
        super().__init__(device)
        build = {**setup.meta["build"], "num_tasks": num_tasks(setup)}
        self.modules["actor"] = build_actor(cfg, build).to(device)
        self.optimizers["actor"] = torch.optim.Adam(self.modules["actor"].parameters(),
                                                    lr=cfg.methods["mtbc"].lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One behaviour-cloning step."""
        loss = bc_loss(self.modules["actor"], batch)
        return {"loss": loss.detach(), "grad_norm": self.step(loss)}


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           **_: Any) -> TaskIdPolicy:
    """MTBC's policy (sampling settings of the planners do not apply)."""
    return actor_policy(path, build_actor, device)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """Per sample: the actor forward and backward (`--plan`'s cost)."""
    actor, _ = cfg.methods["mtbc"].flops(obs_dim, act_dim, n_tasks)
    return Net("mlp", 3 * actor, actor, False)


# One of Table 1's baselines (paper §5.1, App. B): told the task by its id, so on
# Meta-World only.
register(Method("mtbc", "mtbc", "MTBC", fields="qlearning",
                learner=f"{__name__}:MTBCLearner", policy=f"{__name__}:policy_from_checkpoint",
                config=f"{__name__}:MTBCConfig", network=f"{__name__}:network",
                suites=("metaworld",), host_bound=True))
