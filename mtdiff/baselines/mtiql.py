"""MTIQL (paper §5.1, App. B): implicit Q-learning with per-task critic heads.

IQL (Kostrikov et al. 2022) as CORL's iql.py, with App. B's multi-task revision: twin Q
and V are multi-head critics, one 3-layer Mish MLP head per task (`MultiHeadQ`,
`MultiHeadV`); the actor reads [s, z], z a task embedding. Per step, from the weights
before the step (CORL's order v -> q -> actor gives the same gradients):

    V loss       E[|tau - 1(u < 0)| u^2],  u = min_i Q'_i(s, a) - V(s)       (expectile tau)
    Q loss       mean_i E[(Q_i(s, a) - (r + gamma (1 - done) V(s')))^2]       (CORL: / 2)
    actor loss   E[exp(beta u).clamp(max=100) * -log pi(a | s, z)]          (AWR)

Q' is the Polyak-averaged target (rate tau); the actor's learning rate is cosine-annealed
over `train.steps`. Batches: the "qlearning" fields.

Against TorchRL's `IQLLoss` (TD(0) estimator, l2 loss) on the same batch and weights:
value and actor losses are equal, TorchRL's Q loss sums the two critics' errors where
CORL averages them, so it is twice ours (tests/test_baselines.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mtdiff import keys
from mtdiff.baselines.common import (
    BaselineLearner,
    QLearningConfig,
    TaskIdPolicy,
    actor_policy,
    critic_reward,
    num_tasks,
)
from mtdiff.baselines.nets import (
    DeterministicActor,
    GaussianActor,
    MultiHeadQ,
    MultiHeadV,
    gaussian,
    soft_update,
)
from mtdiff.config.base import _check, _positive
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from mtdiff.config import Config
    from mtdiff.train.core import TrainSetup

EXP_ADV_MAX = 100.0  # CORL


@dataclass
class MTIQLConfig(QLearningConfig):
    """MTIQL (`methods.mtiql`): CORL's iql.py and its values, one critic head per task."""

    beta: float = 3.0  # inverse temperature of the actor's advantage weights
    expectile: float = 0.7  # tau of V's expectile loss
    # Adam, actor, Q and V; the actor's learning rate cosine-annealed over train.steps.
    lr: float = 3e-4
    deterministic: bool = False  # CORL's iql_deterministic; default a Gaussian actor

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "beta", "lr")
        _check(0.0 < self.expectile < 1.0, "MTIQLConfig.expectile", "must be in (0, 1)")


def build_actor(cfg: Config, build: dict[str, Any]) -> nn.Module:
    """MTIQL's actor: Gaussian (CORL's default) or deterministic (`deterministic`)."""
    hp: MTIQLConfig = cfg.methods["mtiql"]
    cls = DeterministicActor if hp.deterministic else GaussianActor
    return cls(build["obs_dim"], build["act_dim"], build["num_tasks"], hidden=hp.hidden,
               task_dim=hp.task_embed_dim)


def expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """E[|tau - 1(u < 0)| u^2] (IQL eq. 5)."""
    return (torch.abs(tau - (u < 0).to(u.dtype)) * u.pow(2)).mean()


def iql_losses(actor: nn.Module, q: nn.Module, q_target: nn.Module, v: nn.Module,
               batch: dict[str, torch.Tensor], hp: MTIQLConfig) -> dict[str, torch.Tensor]:
    """The three IQL losses on a "qlearning" batch (module docstring); ``adv`` = u."""
    s, a, t = batch[keys.BATCH_OBS], batch[keys.BATCH_ACTION], batch[keys.BATCH_TASK_ID]
    with torch.no_grad():
        target_q = q_target(s, a, t).min(dim=0).values  # (B,)
        next_v = v(batch[keys.BATCH_NEXT_OBS], t)  # (B,)
    adv = target_q - v(s, t)  # (B,)
    v_loss = expectile_loss(adv, hp.expectile)
    y = critic_reward(hp, batch) + (1.0 - batch[keys.BATCH_DONE]) * hp.discount * next_v
    q_loss = (q(s, a, t) - y).pow(2).mean(dim=1).mean()  # mean over the twin critics
    weight = torch.exp(hp.beta * adv.detach()).clamp(max=EXP_ADV_MAX)  # (B,)
    out = actor(s, t)
    if isinstance(out, tuple):  # Gaussian actor: (mean, std)
        bc = -gaussian(*out).log_prob(a)  # (B,), summed over action dims
    else:  # deterministic actor (CORL's iql_deterministic)
        bc = (out - a).pow(2).sum(dim=-1)
    return {"v_loss": v_loss, "q_loss": q_loss, "actor_loss": (weight * bc).mean(),
            "adv": adv.detach()}


class MTIQLLearner(BaselineLearner):
    """Actor, twin multi-head Q (+ target), multi-head V; Adam each (CORL lrs)."""

    def __init__(self, cfg: Config, setup: TrainSetup, device: torch.device) -> None:
        super().__init__(device)
        self.hp = hp = cfg.methods["mtiql"]
        build = setup.meta["build"]
        T, od, ad = num_tasks(setup), build["obs_dim"], build["act_dim"]
        self.modules["actor"] = build_actor(cfg, build).to(device)
        self.modules["q"] = MultiHeadQ(od, ad, T, hidden=hp.hidden, n_nets=2).to(device)
        self.modules["v"] = MultiHeadV(od, T, hidden=hp.hidden).to(device)
        self.targets["q_target"] = copy.deepcopy(self.modules["q"]).requires_grad_(False)
        for name, m in self.modules.items():
            self.optimizers[name] = torch.optim.Adam(m.parameters(), lr=hp.lr)
        self.schedulers["actor"] = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizers["actor"], T_max=cfg.train.steps)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One IQL step of V, Q and the actor, then the target critics' Polyak update."""
        m = self.modules
        losses = iql_losses(m["actor"], m["q"], self.targets["q_target"], m["v"], batch,
                            self.hp)
        loss = losses["v_loss"] + losses["q_loss"] + losses["actor_loss"]
        norm = self.step(loss)
        soft_update(self.targets["q_target"], self.core("q"), self.hp.tau)
        return {"loss": loss.detach(), "grad_norm": norm,
                **{k: v.detach() for k, v in losses.items() if k != "adv"},
                "adv_mean": losses["adv"].mean()}


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           **_: Any) -> TaskIdPolicy:
    """MTIQL's policy: the actor's mean action (CORL's evaluation)."""
    return actor_policy(path, build_actor, device)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """Per sample: actor, twin Q and V forward and backward, and the target Q forward
    (`--plan`'s cost)."""
    actor, q = cfg.methods["mtiql"].flops(obs_dim, act_dim, n_tasks)
    return Net("mlp", 3 * (actor + 3 * q) + 2 * q, actor, False)


# One of Table 1's baselines (paper §5.1, App. B): told the task by its id, so on
# Meta-World only.
register(Method("mtiql", "mtiql", "MTIQL", fields="qlearning",
                learner=f"{__name__}:MTIQLLearner", policy=f"{__name__}:policy_from_checkpoint",
                config=f"{__name__}:MTIQLConfig", network=f"{__name__}:network",
                suites=("metaworld",), host_bound=True))
