"""Decision Transformer on the project's GPT-2 (`mtdiff.models.gpt2`): MT-DT and Prompt-DT.

Decision Transformer (Chen et al. 2021) models a trajectory as tokens
``R_1, s_1, a_1, R_2, s_2, a_2, ...`` (return-to-go, state, action per step, each
embedded by its own linear layer plus a learned embedding of the episode step, then one
LayerNorm), runs a causal GPT-2 over them and predicts a_t from the output at s_t's token
through a linear layer and tanh. Paper §5.1: both baselines use "the same GPT2-network as
in MTDiff-P" (`model.d_model`, `n_layer`, `n_head`, `dropout`); everything else is the
official DT's (`DTConfig`: context K, AdamW + warm-up, grad clip 0.25, MSE on the actions
of the real steps). The two variants (App. B), each with a section of its own built on
`DTConfig`:

- MT-DT: the state token reads [s, z], z a learned task embedding of size 12.
- Prompt-DT (Xu et al. 2022): a trajectory prompt is prepended, embedded by its own
  layers. The prompts are MTDiff-P's prompt sets (App. B: "the same prompts"), J steps
  of (s, a), so a prompt step is two tokens (s*, a*) -- those sets hold no rewards, so no
  return token -- each plus a learned position embedding of the prompt step.

Return-to-go: R = (G - G_min) / range per task (the "sequence" fields of
`mtdiff.data.windows`), so R = 1 asks for the task's best return in the data (MTDiff-P's
R_max); in evaluation R starts at the target and falls by r / range after each reward
(DT's `target_return -= reward / scale`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mtdiff import keys
from mtdiff.baselines.common import BaselineLearner
from mtdiff.config.base import MethodConfig, _check, _positive
from mtdiff.experiment.flops import Net, gpt2_flops, mlp_flops
from mtdiff.models.gpt2 import GPT2, GPTConfig
from mtdiff.runtime import matmul_tf32
from mtdiff.train.compiled import adam, compile_fn, step_mode

if TYPE_CHECKING:
    from mtdiff.config import Config
    from mtdiff.train.core import TrainSetup


@dataclass
class DTConfig(MethodConfig):
    """A Decision Transformer's training: the official DT's (gym) values.

    Its GPT-2 is the `model` section's (paper §5.1: "the same GPT2-network as in
    MTDiff-P"); batch and steps are MTDiff's (data.batch_per_task x tasks, train.steps).
    """

    context: int = 20  # K, the steps the model sees
    lr: float = 1e-4  # AdamW
    weight_decay: float = 1e-4  # AdamW's, decoupled
    warmup_steps: int = 10_000  # linear warm-up of the learning rate; official: 10k of 100k
    grad_clip: float = 0.25  # max gradient norm
    max_timestep: int = 1000  # size of the timestep table; later steps share the last entry

    # `local`: the warm-up keeps the official share of training (10k of 100k steps);
    # `smoke`: sized for CI.
    PRESETS = {"local": {"warmup_steps": 200},
               "smoke": {"context": 4, "warmup_steps": 2, "max_timestep": 200}}

    def _validate(self) -> None:
        _positive(self, "context", "lr", "grad_clip", "max_timestep")
        _check(self.warmup_steps >= 0 and self.weight_decay >= 0,
               f"{type(self).__name__}.warmup_steps",
               "warm-up steps and weight decay must be >= 0")


class DecisionTransformer(nn.Module):
    """a_t predictions from (R, s, a) sequences: (B, k, ...) -> (B, k, act_dim), k <= K.

    task_dim > 0: MT-DT (task id embedded and concatenated to every state); prompt_len > 0:
    Prompt-DT (a (B, J, obs + act) prompt prepended as 2 J tokens).
    """

    def __init__(self, *, obs_dim: int, act_dim: int, context: int, max_timestep: int,
                 gpt: GPTConfig, num_tasks: int = 0, task_dim: int = 0,
                 prompt_len: int = 0) -> None:
        super().__init__()
        d = gpt.d_model
        self.obs_dim, self.act_dim, self.context = obs_dim, act_dim, context
        self.max_timestep, self.prompt_len = max_timestep, prompt_len
        self.task_embed = nn.Embedding(num_tasks, task_dim) if task_dim else None
        self.embed_timestep = nn.Embedding(max_timestep, d)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(obs_dim + task_dim, d)
        self.embed_action = nn.Linear(act_dim, d)
        if prompt_len:
            self.prompt_embed_state = nn.Linear(obs_dim, d)
            self.prompt_embed_action = nn.Linear(act_dim, d)
            self.prompt_embed_pos = nn.Embedding(prompt_len, d)
        self.embed_ln = nn.LayerNorm(d)
        n_tokens = 3 * context + 2 * prompt_len
        self.transformer = GPT2(GPTConfig(**{**gpt.__dict__, "max_tokens": n_tokens,
                                             "causal": True}))
        self.predict_action = nn.Sequential(nn.Linear(d, act_dim), nn.Tanh())

    def forward(self, states: torch.Tensor, actions: torch.Tensor, rtg: torch.Tensor,
                timesteps: torch.Tensor, task_id: torch.Tensor | None = None,
                prompt: torch.Tensor | None = None) -> torch.Tensor:
        """states (B, k, obs_dim), actions (B, k, act_dim), rtg (B, k, 1), timesteps (B, k)
        int64; task_id (B,) for MT-DT, prompt (B, J, obs + act) for Prompt-DT.
        Returns the predicted actions (B, k, act_dim), a_t from the tokens up to s_t."""
        B, k, _ = states.shape
        if k > self.context:
            raise ValueError(f"{k} steps exceed the context K={self.context}")
        if self.task_embed is not None:
            if task_id is None:
                raise ValueError("MT-DT needs task_id (B,)")
            z = self.task_embed(task_id.long().reshape(B))  # (B, task_dim)
            states = torch.cat([states, z[:, None].expand(B, k, z.shape[-1])], dim=-1)
        time = self.embed_timestep(timesteps.long().clamp(0, self.max_timestep - 1))  # (B, k, d)
        tokens = torch.stack([self.embed_return(rtg) + time, self.embed_state(states) + time,
                              self.embed_action(actions) + time], dim=2)  # (B, k, 3, d)
        tokens = tokens.reshape(B, 3 * k, -1)  # R_1, s_1, a_1, R_2, ...: (B, 3k, d)
        if self.prompt_len:
            if prompt is None or prompt.shape[1:] != (self.prompt_len,
                                                      self.obs_dim + self.act_dim):
                raise ValueError(f"Prompt-DT needs a prompt (B, {self.prompt_len}, "
                                 f"{self.obs_dim + self.act_dim})")
            pos = self.prompt_embed_pos.weight  # (J, d)
            p = torch.stack([self.prompt_embed_state(prompt[..., :self.obs_dim]) + pos,
                             self.prompt_embed_action(prompt[..., self.obs_dim:]) + pos],
                            dim=2)  # (B, J, 2, d)
            tokens = torch.cat([p.reshape(B, 2 * self.prompt_len, -1), tokens], dim=1)
        h = self.transformer(self.embed_ln(tokens))[:, -3 * k:]  # trajectory part: (B, 3k, d)
        h = h.reshape(B, k, 3, -1)  # (B, k, [R, s, a], d)
        return self.predict_action(h[:, :, 1])  # from the state tokens: (B, k, act_dim)


def build_dt(cfg: Config, build: dict[str, Any], hp: DTConfig, *, task_dim: int = 0,
             prompt: bool = False) -> DecisionTransformer:
    """A DT for a checkpoint's build arguments (horizon = the context K) and its method's
    section `hp`."""
    m = cfg.model
    gpt = GPTConfig(d_model=m.d_model, n_layer=m.n_layer, n_head=m.n_head, dropout=m.dropout)
    return DecisionTransformer(
        obs_dim=build["obs_dim"], act_dim=build["act_dim"], context=build["horizon"],
        max_timestep=hp.max_timestep, gpt=gpt, num_tasks=build["num_tasks"],
        task_dim=task_dim, prompt_len=build["prompt_len"] if prompt else 0)


def dt_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the action entries of real steps (mask 1): pred, target
    (B, k, act_dim), mask (B, k)."""
    m = mask[..., None].to(pred.dtype)  # (B, k, 1)
    return ((pred - target).pow(2) * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1.0)


def dt_inputs(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """(states, actions, rtg, timesteps) of a "sequence" batch."""
    return (batch[keys.BATCH_SEQ_OBS], batch[keys.BATCH_SEQ_ACTIONS], batch[keys.BATCH_RTG],
            batch[keys.BATCH_TIMESTEPS])


class DTLearner(BaselineLearner):
    """One DT step: AdamW (weight decay), linear warm-up, grad-norm clip (official DT)."""

    eval_module = "model"
    method = ""  # the method whose section (`Config.methods`) it reads
    task_dim_of_cfg = False  # MT-DT: True (z of size its section's task_embed_dim)
    uses_prompt = False  # Prompt-DT: True

    def __init__(self, cfg: Config, setup: TrainSetup, device: torch.device) -> None:
        super().__init__(device)
        hp = cfg.methods[self.method]
        # The checkpoint keeps each task's return range: evaluation turns rewards into
        # return-to-go decrements with it.
        setup.meta["return_range"] = dict(setup.sampler.return_range)
        self.modules["model"] = build_dt(
            cfg, setup.meta["build"], hp,
            task_dim=hp.task_embed_dim if self.task_dim_of_cfg else 0,
            prompt=self.uses_prompt).to(device)
        mode = step_mode(cfg.train.compile, device)
        self.fast = mode is not None
        opt = adam(self.modules["model"].parameters(), lr=hp.lr, fast=self.fast,
                   weight_decay=hp.weight_decay, decoupled=True)
        warmup = max(hp.warmup_steps, 1)
        self.optimizers["model"] = opt
        self.schedulers["model"] = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: min((step + 1) / warmup, 1.0))
        self.grad_clip = hp.grad_clip
        self.loss = compile_fn(self._loss, mode, device)
        # `train.tf32` and `train.bf16` as MTDiff's learner has them: the same GPT-2 blocks,
        # so a precision set for the comparison holds for both sides of it.
        self.tf32 = functools.partial(matmul_tf32, cfg.train.tf32, device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=cfg.train.bf16)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = self.modules["model"](
            *dt_inputs(batch), task_id=batch[keys.BATCH_TASK_ID],
            prompt=batch[keys.BATCH_PROMPT] if self.uses_prompt else None)
        return dt_loss(pred, batch[keys.BATCH_SEQ_ACTIONS], batch[keys.BATCH_MASK])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One teacher-forced step on a "sequence" batch."""
        with self.tf32():
            with self.autocast:
                loss = self.loss(batch)
            return {"loss": loss.detach(), "grad_norm": self.step(loss)}


def dt_network(cfg: Config, context: int, obs_dim: int, *, prompt: bool) -> Net:
    """A DT's forward FLOPs per sample: GPT-2 over 3 tokens per step of the `context` (and
    2 per prompt step for Prompt-DT), the model section's width and depth, plus the state
    embedding of every token."""
    d, J = cfg.model.d_model, cfg.data.prompt_len
    T = 3 * context + (2 * J if prompt else 0)
    f = gpt2_flops(d, cfg.model.n_layer, T) + T * mlp_flops([obs_dim, d])
    return Net("dt", 3 * f, f, False, f"d{d}-l{cfg.model.n_layer}")
