"""The baselines' config section (Table 1's MTBC, MTIQL, MTCQL, MT-DT, Prompt-DT)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated


@dataclass
class BaselineConfig(_Validated):
    """The baselines of Table 1 (paper §5.1, App. B): MTBC, MTIQL, MTCQL, MT-DT, Prompt-DT.

    Batch size and steps are MTDiff's ("each baseline has the same batch size and training
    steps as MTDiff": data.batch_per_task x tasks, train.steps). The rest are CORL's
    defaults for IQL / CQL / BC (App. B: "we build MTIQL / MTCQL based on CORL") and the
    official Decision Transformer's for MT-DT / Prompt-DT ("other hyperparameters the
    same as the official version"); App. B's own values where it gives them (Mish MLPs of
    3 layers, a task embedding of size 12 for MT-DT). MTDiff's own optimisation fields
    (train.lr, grad_clip, ema_decay, bf16) do not apply to the baselines (fp32, no EMA).
    """

    # Width of every hidden layer of the 3-layer Mish MLPs (actor, task embedding, the
    # per-task critic heads). CORL: 256.
    hidden: int = 256
    # z: size of the task embedding (App. B gives 12 for MT-DT and none for the MLP
    # baselines: 12 for all). The MLP baselines embed the one-hot task id with a 3-layer
    # Mish MLP (App. B: "the scalar taskID is embedded via 3-layered MLP"; one-hot, since a
    # scalar id would order the tasks); MT-DT with a lookup table.
    task_embed_dim: int = 12
    # MTBC: App. B "network scaling" (no size given): an actor 4x CORL's width.
    bc_hidden: int = 1024
    bc_lr: float = 3e-4  # CORL any-percent BC (TD3-BC's actor): Adam 3e-4, MSE on actions
    discount: float = 0.99  # IQL, CQL
    tau: float = 0.005  # Polyak rate of the target critics (CORL IQL tau, CQL soft rate)
    # Reward fed to the critics: r * reward_scale + reward_bias (CORL: raw rewards).
    reward_scale: float = 1.0
    reward_bias: float = 0.0
    # MTIQL (CORL iql.py): inverse temperature beta, expectile tau, Adam 3e-4 for actor,
    # Q and V, the actor's learning rate cosine-annealed over train.steps; Gaussian actor
    # (state-independent log std) unless iql_deterministic.
    iql_beta: float = 3.0
    iql_expectile: float = 0.7
    iql_lr: float = 3e-4
    iql_deterministic: bool = False
    # MTCQL (CORL cql.py): tanh-Gaussian actor, automatic entropy tuning, no entropy in
    # the backup, importance-sampled CQL(H) with cql_alpha=10, 10 sampled actions.
    cql_policy_lr: float = 3e-5  # actor and entropy temperature
    cql_qf_lr: float = 3e-4
    cql_alpha: float = 10.0  # weight of the conservative penalty
    cql_n_actions: int = 10
    cql_temp: float = 1.0
    cql_backup_entropy: bool = False
    cql_orthogonal_init: bool = True
    # Where the actions CQL samples at s' are scored: "current" (CORL and the CQL authors'
    # code: Q(s, a' ~ pi(.|s'))) or "next" (TorchRL's CQLLoss: Q(s', a')).
    cql_next_action_obs: Literal["current", "next"] = "current"
    # MT-DT / Prompt-DT (official DT, gym): context K, AdamW 1e-4 with weight decay 1e-4,
    # linear warm-up, grad-norm clip 0.25, timestep table size 1000.
    dt_context: int = 20
    dt_lr: float = 1e-4
    dt_weight_decay: float = 1e-4
    dt_warmup_steps: int = 10_000  # official: 10k of 100k steps
    dt_grad_clip: float = 0.25
    dt_max_timestep: int = 1000  # later steps share the last embedding

    def _validate(self) -> None:
        _positive(self, "hidden", "task_embed_dim", "bc_hidden", "bc_lr", "iql_beta", "iql_lr",
                  "cql_policy_lr", "cql_qf_lr", "cql_n_actions", "cql_temp", "dt_context",
                  "dt_lr", "dt_grad_clip", "dt_max_timestep", "reward_scale")
        _check(0.0 < self.discount < 1.0, "BaselineConfig.discount", "must be in (0, 1)")
        _check(0.0 < self.tau <= 1.0, "BaselineConfig.tau", "must be in (0, 1]")
        _check(0.0 < self.iql_expectile < 1.0, "BaselineConfig.iql_expectile",
               "must be in (0, 1)")
        _check(self.cql_alpha >= 0.0, "BaselineConfig.cql_alpha", "must be >= 0")
        _check(self.dt_warmup_steps >= 0 and self.dt_weight_decay >= 0,
               "BaselineConfig.dt_warmup_steps", "warm-up steps and weight decay must be >= 0")
