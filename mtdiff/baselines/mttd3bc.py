"""MTTD3BC: TD3+BC (Fujimoto & Gu 2021) made multi-task the way App. B makes IQL and CQL
multi-task (not a method of the paper; a Table 1-style baseline of ours).

The actor reads [s, z], z the task id embedded by a 3-layer Mish MLP (as MTBC / MTIQL);
the twin critics have one head per task (`MultiHeadQ`). Per step, TD3+BC's losses:

    critic loss  sum_i E[(Q_i(s, a) - y)^2],  y = r + gamma (1 - done) min_i Q'_i(s', a'),
                 a' = clip(pi'(s', z) + clip(N(0, sigma^2), -c, c), -1, 1)
    actor loss   E[-lambda Q_1(s, pi(s, z)) + (pi(s, z) - a)^2],  lambda = alpha / E|Q_1|

the actor and the targets (Polyak rate tau) updated every `policy_delay` critic updates.

This file is the whole method: its config section, learner, policy and cost, registered
under the name ``mttd3bc`` (`mtdiff.methods.register`); `--model mttd3bc` trains it and
`experiment.methods` runs it in the grid. Its hyper-parameters are `MTTD3BCConfig`
(`--set methods.mttd3bc.FIELD=VALUE`): TD3+BC's published values, and the MLP baselines'
widths, task embedding, discount, target rate and reward transform (`QLearningConfig`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mtdiff import keys
from mtdiff.baselines.common import (
    BaselineLearner,
    QLearningConfig,
    TaskIdPolicy,
    actor_policy,
    critic_reward,
    num_tasks,
)
from mtdiff.baselines.nets import DeterministicActor, MultiHeadQ, soft_update
from mtdiff.config import Config
from mtdiff.config.base import _check, _positive
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register


@dataclass
class MTTD3BCConfig(QLearningConfig):
    """MTTD3BC (`methods.mttd3bc`): TD3+BC (the authors' code and paper, Table 3)."""

    alpha: float = 2.5  # BC weight: lambda = alpha / mean |Q|
    policy_noise: float = 0.2  # target policy smoothing, x max action (1)
    noise_clip: float = 0.5
    policy_delay: int = 2  # critic updates per actor (and target) update
    lr: float = 3e-4  # Adam, actor and critics

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "alpha", "policy_delay", "lr")
        _check(self.policy_noise >= 0 and self.noise_clip >= 0, "MTTD3BCConfig.policy_noise",
               "policy noise and its clip must be >= 0")


def build_actor(cfg: Config, build: dict[str, Any]) -> DeterministicActor:
    """The task-conditioned actor for a checkpoint's build arguments."""
    hp: MTTD3BCConfig = cfg.methods["mttd3bc"]
    return DeterministicActor(build["obs_dim"], build["act_dim"], build["num_tasks"],
                              hidden=hp.hidden, task_dim=hp.task_embed_dim)


def critic_loss(q: torch.nn.Module, q_target: torch.nn.Module, actor_target: torch.nn.Module,
                batch: dict[str, torch.Tensor], hyper: MTTD3BCConfig) -> torch.Tensor:
    """The twin critics' TD error to the smoothed target (module docstring)."""
    s, a, t = batch[keys.BATCH_OBS], batch[keys.BATCH_ACTION], batch[keys.BATCH_TASK_ID]
    with torch.no_grad():
        s2 = batch[keys.BATCH_NEXT_OBS]
        noise = (torch.randn_like(a) * hyper.policy_noise).clamp(-hyper.noise_clip,
                                                                   hyper.noise_clip)
        a2 = (actor_target(s2, t) + noise).clamp(-1.0, 1.0)
        y = critic_reward(hyper, batch) + (1.0 - batch[keys.BATCH_DONE]) \
            * hyper.discount * q_target(s2, a2, t).min(dim=0).values  # (B,)
    return (q(s, a, t) - y).pow(2).mean(dim=1).sum()


def actor_loss(actor: torch.nn.Module, q: torch.nn.Module, batch: dict[str, torch.Tensor],
               hyper: MTTD3BCConfig) -> dict[str, torch.Tensor]:
    """-lambda Q_1(s, pi(s)) + BC, lambda normalised by the batch's mean |Q_1|."""
    s, a, t = batch[keys.BATCH_OBS], batch[keys.BATCH_ACTION], batch[keys.BATCH_TASK_ID]
    pi = actor(s, t)
    q1 = q(s, pi, t)[0]
    lam = hyper.alpha / q1.abs().mean().detach().clamp(min=1e-6)
    bc = F.mse_loss(pi, a)
    return {"actor_loss": -lam * q1.mean() + bc, "bc_loss": bc.detach(), "lambda": lam}


class MTTD3BCLearner(BaselineLearner):
    """Actor and twin multi-head critics, each with a target copy; Adam each."""

    def __init__(self, cfg: Config, setup: Any, device: torch.device) -> None:
        super().__init__(device)
        self.hyper = hyper = cfg.methods["mttd3bc"]
        build = {**setup.meta["build"], "num_tasks": num_tasks(setup)}
        self.modules["actor"] = build_actor(cfg, build).to(device)
        self.modules["q"] = MultiHeadQ(build["obs_dim"], build["act_dim"], build["num_tasks"],
                                       hidden=hyper.hidden, n_nets=2).to(device)
        self.targets["actor_target"] = copy.deepcopy(self.modules["actor"]).requires_grad_(False)
        self.targets["q_target"] = copy.deepcopy(self.modules["q"]).requires_grad_(False)
        for name, m in self.modules.items():
            self.optimizers[name] = torch.optim.Adam(m.parameters(), lr=hyper.lr)
        self.updates = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A critic step; every `policy_delay`-th step also an actor step and the targets'
        Polyak update. (The actor's gradients are None on the other steps: Adam skips it.)"""
        self.updates += 1
        m, t = self.modules, self.targets
        loss = critic_loss(m["q"], t["q_target"], t["actor_target"], batch, self.hyper)
        out = {"q_loss": loss.detach()}
        if self.updates % self.hyper.policy_delay == 0:
            a = actor_loss(m["actor"], self.core("q"), batch, self.hyper)
            loss = loss + a["actor_loss"]
            out.update({k: v.detach() for k, v in a.items()})
        norm = self.step(loss)
        if self.updates % self.hyper.policy_delay == 0:
            soft_update(t["q_target"], self.core("q"), self.hyper.tau)
            soft_update(t["actor_target"], self.core("actor"), self.hyper.tau)
        return {"loss": loss.detach(), "grad_norm": norm, **out}

    def state_dict(self) -> dict[str, Any]:
        """The networks' fields, and the update count (where the actor's delay stands)."""
        state = super().state_dict()
        state["optimizer"]["updates"] = self.updates
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume, the actor's delay included."""
        super().load_state_dict(state)
        self.updates = int(state["optimizer"]["updates"])


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           **_: Any) -> TaskIdPolicy:
    """The deterministic actor's action (TD3+BC's evaluation)."""
    return actor_policy(path, build_actor, device)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """Per sample: critics forward and backward, target actor and critics, and the actor
    with its critic call every `policy_delay` steps (`--plan`'s cost)."""
    hp: MTTD3BCConfig = cfg.methods["mttd3bc"]
    actor, q = hp.flops(obs_dim, act_dim, n_tasks)
    train = 3 * 2 * q + actor + 2 * q + 3 * (actor + q) / hp.policy_delay
    return Net("mlp", train, actor, False)


register(Method("mttd3bc", "mttd3bc", "MTTD3BC", fields="qlearning",
                learner=f"{__name__}:MTTD3BCLearner", policy=f"{__name__}:policy_from_checkpoint",
                network=f"{__name__}:network", config=f"{__name__}:MTTD3BCConfig",
                suites=("metaworld",), host_bound=True))
