"""What the baselines' learners and policies share.

`BaselineLearner` implements the `mtdiff.train.learner.Learner` protocol over named
modules: `prepare` DDP-wraps the trainable ones, `state_dict` saves every network (target
copies included) under ``model``, the weights the policy acts with under ``ema`` (no
EMA: CORL and the official DT evaluate their current weights), and every optimiser and
learning-rate schedule under ``optimizer`` -- nested dicts of tensors and numbers, so
checkpoints load with ``weights_only=True``.

Each learner computes all of its losses from the parameters before the step and makes
one backward pass through their sum: the losses touch disjoint parameter sets (a critic's
target and the actions it scores are detached, the actor's Q term sees the critics
through detached weights), so this equals CORL's one-backward-per-network updates.

`TaskIdPolicy` is the `mtdiff.eval.policy.Policy` of the MLP baselines: it normalises
the observations like the training data and acts with the actor's deterministic action
for each environment's task id.

`MLPConfig` and `QLearningConfig` are the fields the MLP baselines' own config sections
share (each method's section is its own dataclass, in its file, built on these).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from mtdiff import keys
from mtdiff.artifacts import Checkpoint
from mtdiff.config.base import MethodConfig, _check, _positive
from mtdiff.data.normalize import Normalizer
from mtdiff.eval.policy import PolicyBase
from mtdiff.experiment.flops import mlp_flops
from mtdiff.train.compiled import clip_grad_norm
from mtdiff.train.ema import unwrap

if TYPE_CHECKING:
    from mtdiff.config import Config
    from mtdiff.data.normalize import Normalizer


@dataclass
class MLPConfig(MethodConfig):
    """The networks of an MLP baseline (paper App. B): 3-layer Mish MLPs, CORL's widths.

    Batch size and steps are MTDiff's ("each baseline has the same batch size and training
    steps as MTDiff": data.batch_per_task x tasks, train.steps); MTDiff's own optimisation
    fields (train.lr, grad_clip, ema_decay, bf16) do not apply (fp32, no EMA).
    """

    # Width of every hidden layer of the 3-layer Mish MLPs (actor, task embedding, the
    # per-task critic heads). CORL: 256.
    hidden: int = 256
    # z: size of the task embedding (App. B gives 12 for MT-DT and none for the MLP
    # baselines: 12 for all). The MLP baselines embed the one-hot task id with a 3-layer
    # Mish MLP (App. B: "the scalar taskID is embedded via 3-layered MLP"; one-hot, since a
    # scalar id would order the tasks).
    task_embed_dim: int = 12

    PRESETS = {"smoke": {"hidden": 32}}

    def _validate(self) -> None:
        _positive(self, "hidden", "task_embed_dim")

    def flops(self, obs_dim: int, act_dim: int, n_tasks: int) -> tuple[float, float]:
        """Forward FLOPs per sample of the actor (with the task embedding) and of the
        per-task critic heads of one Q network (`--plan`'s cost of these methods)."""
        h, z, n = self.hidden, self.task_embed_dim, max(1, n_tasks)
        actor = mlp_flops([obs_dim + z, h, h, h, act_dim]) + mlp_flops([n, h, h, z])
        return actor, mlp_flops([obs_dim + act_dim + z, h, h, h, n])


@dataclass
class QLearningConfig(MLPConfig):
    """An MLP baseline with critics: its networks, discount, target rate, reward transform."""

    discount: float = 0.99  # gamma (CORL's IQL and CQL, TD3+BC)
    tau: float = 0.005  # Polyak rate of the target critics (CORL IQL tau, CQL soft rate)
    # Reward fed to the critics: r * reward_scale + reward_bias (CORL: raw rewards).
    reward_scale: float = 1.0
    reward_bias: float = 0.0

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        _positive(self, "reward_scale")
        _check(0.0 < self.discount < 1.0, f"{name}.discount", "must be in (0, 1)")
        _check(0.0 < self.tau <= 1.0, f"{name}.tau", "must be in (0, 1]")


class BaselineLearner:
    """Named modules + optimisers + schedules behind the `Learner` protocol (module doc).

    Subclasses fill `modules` (trained; DDP-wrapped by `prepare`), `targets` (target
    copies), `extra` (modules kept out of DDP: single scalars such as an entropy
    temperature, whose gradients are averaged by hand), `optimizers`, `schedulers` and
    name the module the policy acts with in `eval_module`, then implement `update`.
    """

    eval_module = "actor"

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.modules: dict[str, nn.Module] = {}
        self.targets: dict[str, nn.Module] = {}
        self.extra: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.grad_clip: float | None = None
        self.fast = False  # foreach grad clip (a compiled step: `mtdiff.train.compiled`)

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """DDP-wrap the trained modules (targets and scalars stay local)."""
        for name in list(self.modules):
            self.modules[name] = wrap(self.modules[name])

    def core(self, name: str) -> nn.Module:
        """A trained module without its DDP wrapper (for no-grad and detached calls)."""
        return unwrap(self.modules[name])

    def parameters(self) -> list[nn.Parameter]:
        """Every trained parameter (modules and scalars)."""
        return [p for m in (*self.modules.values(), *self.extra.values())
                for p in m.parameters()]

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward through `loss`, step every optimiser and schedule; returns the grad norm
        over all trained parameters (clipped to `grad_clip` when set)."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            for m in self.extra.values():  # DDP averages the wrapped modules' gradients
                for p in m.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= world
        norm = clip_grad_norm(self.parameters(), self.grad_clip, self.fast)
        for opt in self.optimizers.values():
            opt.step()
        for sched in self.schedulers.values():
            sched.step()
        return norm.detach()

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's model / ema / optimizer fields (module docstring)."""
        model = {name: self.core(name).state_dict() for name in self.modules}
        model.update({name: m.state_dict() for name, m in (*self.targets.items(),
                                                            *self.extra.items())})
        opt = {f"opt/{k}": o.state_dict() for k, o in self.optimizers.items()}
        opt.update({f"sched/{k}": s.state_dict() for k, s in self.schedulers.items()})
        return {"model": model, "ema": self.core(self.eval_module).state_dict(),
                "optimizer": opt}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint's fields."""
        for name in self.modules:
            self.core(name).load_state_dict(state["model"][name])
        for name, m in (*self.targets.items(), *self.extra.items()):
            m.load_state_dict(state["model"][name])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizer"][f"opt/{k}"])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["optimizer"][f"sched/{k}"])


class Scalar(nn.Module):
    """One learned scalar (e.g. log alpha), a module so it has a state dict."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self) -> torch.Tensor:
        """The scalar, ()."""
        return self.value


def num_tasks(setup: Any) -> int:
    """Task count of a training set-up (`mtdiff.train.core.TrainSetup`)."""
    return int(setup.meta["build"]["num_tasks"])


def critic_reward(hp: QLearningConfig, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """r * reward_scale + reward_bias (CORL's reward transform; identity by default), (B,)."""
    return batch[keys.BATCH_REWARD] * hp.reward_scale + hp.reward_bias


class TaskIdPolicy(PolicyBase):
    """An MLP baseline's actor as a `Policy`: a = actor.act(normalise(s), task id)."""

    conditioning = "task_id"

    def __init__(self, actor: nn.Module, normalizer: Normalizer, meta: dict[str, Any],
                 device: str | torch.device = "cpu") -> None:
        super().__init__(meta["tasks"], None, meta["build"]["prompt_len"])
        self.actor = actor.to(device).eval().requires_grad_(False)
        self.normalizer = normalizer
        self.device = torch.device(device)
        self.obs = np.zeros((0, meta["build"]["obs_dim"]), np.float32)
        self.task_ids = np.zeros(0, np.int64)

    def begin(self, obs: np.ndarray, *, prompts: np.ndarray | None,
              task_ids: np.ndarray | None, env_tasks: list[str] | None = None) -> None:
        """Keep the first observations and each environment's task id."""
        if task_ids is None:
            raise ValueError(f"{type(self.actor).__name__} conditions on task ids; give "
                             "task_ids (indices of training tasks)")
        self.obs = np.asarray(obs, np.float32).copy()
        self.task_ids = np.asarray(task_ids, np.int64)

    @torch.no_grad()
    def act(self, idx: np.ndarray) -> np.ndarray:
        """Actions for environments `idx`, (n, act_dim) in [-1, 1]."""
        s = torch.from_numpy(self.normalizer.normalize(keys.OBSERVATION, self.obs[idx]))
        t = torch.from_numpy(self.task_ids[idx])
        a = self.actor.act(s.to(self.device), t.to(self.device))
        return np.clip(a.float().cpu().numpy(), -1.0, 1.0)

    def observe(self, idx: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        """The new observations of environments `idx`."""
        self.obs[idx] = np.asarray(obs, np.float32)


def load_trained(path: str | Path, device: str | torch.device
                 ) -> tuple[dict[str, Any], Config, Normalizer]:
    """(checkpoint state, config, normaliser) of the best checkpoint at or under `path`."""
    ckpt = Checkpoint.find(path)  # read on the CPU: the policies move what they load
    return ckpt.state, ckpt.config, Normalizer.from_state_dict(ckpt.meta["normalizer"])


def actor_policy(path: str | Path, build_actor: Callable[[Config, dict[str, Any]], nn.Module],
                 device: str | torch.device) -> TaskIdPolicy:
    """The `TaskIdPolicy` of an MLP baseline's checkpoint (its ``ema`` = actor weights)."""
    state, cfg, nz = load_trained(path, device)
    actor = build_actor(cfg, state["meta"]["build"])
    actor.load_state_dict(state["ema"])
    return TaskIdPolicy(actor, nz, state["meta"], device)
