"""MTCQL (paper §5.1, App. B): conservative Q-learning with per-task critic heads.

CQL(H) (Kumar et al. 2020) as CORL's cql.py (SAC-style tanh-Gaussian actor with automatic
entropy tuning, twin critics with Polyak targets, importance-sampled conservative
penalty), with App. B's multi-task revision: the twin critics are multi-head, one
3-layer Mish MLP head per task, and the actor reads [s, z]. Per step, from the weights
before the step:

    alpha loss   -log_alpha * E[log pi(a~|s) + target_entropy]           (target: -act_dim)
    actor loss   E[alpha log pi(a~|s) - min_i Q_i(s, a~)]                  (critics detached)
    Q loss       sum_i E[(Q_i(s, a) - y)^2],  y = r + gamma (1 - done) min_i Q'_i(s', a'~)
    CQL penalty  alpha * sum_i E[T logsumexp_j(q_ij / T) - Q_i(s, a)] over j in
                 n uniform actions (q - log 0.5^act_dim), n actions of pi(.|s) and n of
                 pi(.|s') (q - their log pi), all scored at s (CORL; `next_action_obs`)

The paper reports MTCQL as failing ("-"): it is here to be measured, not tuned.
Batches: the "qlearning" fields.

Against TorchRL 0.14.1's `CQLLoss` (TD(0), l2, deterministic backup) on the same batch,
weights and random stream (tests/test_baseline_losses.py): the actor, alpha and Q losses
are equal, and so are the penalty's inputs -- the same sampled actions and Q values, with
``next_action_obs="next"`` (TorchRL scores pi(.|s')'s actions at s'), or with the
default wherever s' = s. The penalties differ in one reduction: TorchRL takes the
log-sum-exp per sampled row over its 3 sources (a (B n, 3) tensor), where CQL's and
CORL's code take it per state over all 3 n sampled actions (ours).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch.func import functional_call

from mtdiff import keys
from mtdiff.baselines.common import (
    BaselineLearner,
    QLearningConfig,
    Scalar,
    TaskIdPolicy,
    actor_policy,
    critic_reward,
    num_tasks,
)
from mtdiff.baselines.nets import MultiHeadQ, TanhGaussianActor, sample_tanh_normal, soft_update
from mtdiff.config.base import _check, _positive
from mtdiff.experiment.flops import Net
from mtdiff.methods import Method, register

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

    from mtdiff.config import Config
    from mtdiff.train.core import TrainSetup


@dataclass
class MTCQLConfig(QLearningConfig):
    """MTCQL (`methods.mtcql`): CORL's cql.py, one critic head per task.

    CORL's values: tanh-Gaussian actor, automatic entropy tuning, no entropy in the backup,
    importance-sampled CQL(H) with alpha = 10 and 10 sampled actions.
    """

    policy_lr: float = 3e-5  # Adam, actor and entropy temperature
    qf_lr: float = 3e-4  # Adam, critics
    alpha: float = 10.0  # weight of the conservative penalty
    n_actions: int = 10  # actions the penalty samples per source (uniform, pi(.|s), pi(.|s'))
    temp: float = 1.0  # T of the penalty's log-sum-exp
    backup_entropy: bool = False  # -alpha log pi(a'|s') in the TD target
    # CORL's critics: orthogonal weights (gain sqrt(2), 1e-2 on the output), zero biases;
    # False: nn.Linear's default.
    orthogonal_init: bool = True
    # Where the actions CQL samples at s' are scored: "current" (CORL and the CQL authors'
    # code: Q(s, a' ~ pi(.|s'))) or "next" (TorchRL's CQLLoss: Q(s', a')).
    next_action_obs: Literal["current", "next"] = "current"

    PRESETS = {"smoke": {"n_actions": 4}}

    def _validate(self) -> None:
        super()._validate()
        _positive(self, "policy_lr", "qf_lr", "n_actions", "temp")
        _check(self.alpha >= 0.0, "MTCQLConfig.alpha", "must be >= 0")


def build_actor(cfg: Config, build: dict[str, Any]) -> TanhGaussianActor:
    """MTCQL's tanh-Gaussian actor."""
    hp: MTCQLConfig = cfg.methods["mtcql"]
    return TanhGaussianActor(build["obs_dim"], build["act_dim"], build["num_tasks"],
                             hidden=hp.hidden, task_dim=hp.task_embed_dim)


def actor_alpha_losses(actor: nn.Module, q: nn.Module, log_alpha: torch.Tensor,
                       batch: dict[str, torch.Tensor], target_entropy: float
                       ) -> dict[str, torch.Tensor]:
    """SAC's actor and temperature losses with the critics' weights detached (one draw
    from pi(.|s))."""
    s, t = batch[keys.BATCH_OBS], batch[keys.BATCH_TASK_ID]
    new_a, log_pi = sample_tanh_normal(*actor(s, t))  # (B, act_dim), (B,)
    params = {k: v.detach() for k, v in q.named_parameters()}
    q_new = functional_call(q, params, (s, new_a, t)).min(dim=0).values  # (B,)
    alpha = log_alpha.detach().exp()
    return {"actor_loss": (alpha * log_pi - q_new).mean(),
            "alpha_loss": -(log_alpha * (log_pi.detach() + target_entropy)).mean(),
            "log_pi": log_pi.detach()}


@torch.no_grad()
def td_target(actor: nn.Module, q_target: nn.Module, log_alpha: torch.Tensor,
              batch: dict[str, torch.Tensor], hp: MTCQLConfig) -> torch.Tensor:
    """y = r + gamma (1 - done) min_i Q'_i(s', a'), a' ~ pi(.|s') (one draw), (B,)."""
    s2, t = batch[keys.BATCH_NEXT_OBS], batch[keys.BATCH_TASK_ID]
    a2, logp2 = sample_tanh_normal(*actor(s2, t))
    v = q_target(s2, a2, t).min(dim=0).values  # (B,)
    if hp.backup_entropy:
        v = v - log_alpha.exp() * logp2
    return critic_reward(hp, batch) + (1.0 - batch[keys.BATCH_DONE]) * hp.discount * v


def critic_losses(actor: nn.Module, q: nn.Module, batch: dict[str, torch.Tensor],
                  y: torch.Tensor, hp: MTCQLConfig) -> dict[str, torch.Tensor]:
    """The TD loss and the conservative penalty; draws, in this order: n uniform actions
    per sample, n actions of pi(.|s), n of pi(.|s'). One critic call scores them all."""
    s, a, t = batch[keys.BATCH_OBS], batch[keys.BATCH_ACTION], batch[keys.BATCH_TASK_ID]
    s2 = batch[keys.BATCH_NEXT_OBS]
    B, ad, n = a.shape[0], a.shape[1], hp.n_actions
    rand = a.new_empty(B * n, ad).uniform_(-1.0, 1.0)  # (B n, act_dim), sample-major
    s_rep, s2_rep, t_rep = (x.repeat_interleave(n, dim=0) for x in (s, s2, t))
    with torch.no_grad():
        a_cur, lp_cur = sample_tanh_normal(*actor(s_rep, t_rep))  # (B n, act_dim), (B n,)
        a_nxt, lp_nxt = sample_tanh_normal(*actor(s2_rep, t_rep))
    s_nxt = s_rep if hp.next_action_obs == "current" else s2_rep
    qs = q(torch.cat([s, s_rep, s_rep, s_nxt]), torch.cat([a, rand, a_cur, a_nxt]),
           torch.cat([t, t_rep, t_rep, t_rep]))  # (2, B + 3 B n)
    q_data = qs[:, :B]  # (2, B)
    q_rand, q_cur, q_nxt = (x.reshape(-1, B, n) for x in qs[:, B:].split(B * n, dim=1))
    log_density = math.log(0.5 ** ad)  # uniform on [-1, 1]^act_dim
    cat = torch.cat([q_rand - log_density, q_nxt - lp_nxt.view(B, n),
                     q_cur - lp_cur.view(B, n)], dim=-1)  # (2, B, 3 n)
    ood = torch.logsumexp(cat / hp.temp, dim=-1) * hp.temp  # (2, B)
    return {"q_loss": (q_data - y).pow(2).mean(dim=1).sum(),
            "cql_loss": hp.alpha * (ood - q_data).mean(dim=1).sum(),
            "q_data": q_data.detach(), "cql_cat": cat.detach()}


class MTCQLLearner(BaselineLearner):
    """Tanh-Gaussian actor, twin multi-head Q (+ targets), log alpha; CORL's Adam lrs."""

    def __init__(self, cfg: Config, setup: TrainSetup, device: torch.device) -> None:
        super().__init__(device)
        self.hp = hp = cfg.methods["mtcql"]
        build = setup.meta["build"]
        self.target_entropy = -float(build["act_dim"])
        self.modules["actor"] = build_actor(cfg, build).to(device)
        self.modules["q"] = MultiHeadQ(build["obs_dim"], build["act_dim"], num_tasks(setup),
                                       hidden=hp.hidden, n_nets=2,
                                       orthogonal_init=hp.orthogonal_init).to(device)
        self.targets["q_target"] = copy.deepcopy(self.modules["q"]).requires_grad_(False)
        self.extra["log_alpha"] = Scalar(0.0).to(device)
        self.optimizers["actor"] = torch.optim.Adam(self.modules["actor"].parameters(),
                                                    lr=hp.policy_lr)
        self.optimizers["q"] = torch.optim.Adam(self.modules["q"].parameters(), lr=hp.qf_lr)
        self.optimizers["alpha"] = torch.optim.Adam(self.extra["log_alpha"].parameters(),
                                                    lr=hp.policy_lr)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One CQL step of actor, temperature and critics, then the targets' Polyak update."""
        m, log_alpha = self.modules, self.extra["log_alpha"]()
        pol = actor_alpha_losses(m["actor"], self.core("q"), log_alpha, batch,
                                 self.target_entropy)
        y = td_target(self.core("actor"), self.targets["q_target"], log_alpha, batch, self.hp)
        crit = critic_losses(self.core("actor"), m["q"], batch, y, self.hp)
        loss = pol["actor_loss"] + pol["alpha_loss"] + crit["q_loss"] + crit["cql_loss"]
        norm = self.step(loss)
        soft_update(self.targets["q_target"], self.core("q"), self.hp.tau)
        return {"loss": loss.detach(), "grad_norm": norm,
                "actor_loss": pol["actor_loss"].detach(), "alpha_loss": pol["alpha_loss"].detach(),
                "q_loss": crit["q_loss"].detach(), "cql_loss": crit["cql_loss"].detach(),
                "q_data": crit["q_data"].mean(), "alpha": log_alpha.detach().exp(),
                "entropy": -pol["log_pi"].mean()}


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           **_: Any) -> TaskIdPolicy:
    """MTCQL's policy: tanh of the actor's mean (CORL's deterministic evaluation)."""
    return actor_policy(path, build_actor, device)


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """Per sample: twin Q on the data and on 3 x n sampled actions, the actor on s and s'
    for each sampled action, forward and backward (`--plan`'s cost)."""
    hp = cfg.methods["mtcql"]
    actor, q = hp.flops(obs_dim, act_dim, n_tasks)
    n = hp.n_actions
    return Net("mlp", 3 * (2 * q * (1 + 3 * n) + actor * (2 + 2 * n)), actor, False)


# One of Table 1's baselines (paper §5.1, App. B): told the task by its id, so on
# Meta-World only.
register(Method("mtcql", "mtcql", "MTCQL", fields="qlearning",
                learner=f"{__name__}:MTCQLLearner", policy=f"{__name__}:policy_from_checkpoint",
                config=f"{__name__}:MTCQLConfig", network=f"{__name__}:network",
                suites=("metaworld",), host_bound=True))
