"""What a training worker steps: the `Learner` interface and MTDiff's diffusion learner.

The Ray Train loop (`mtdiff.train.ray_train`) knows nothing of a method's losses: it
samples a batch, calls `learner.update(batch)`, logs what comes back and, at checkpoint
steps, saves `learner.state_dict()`. A method (`mtdiff.methods.Method.learner`) provides
a factory ``factory(cfg, setup, device) -> Learner``:

- `prepare(wrap)`: wrap the trainable modules for data-parallel training
  (`ray.train.torch.prepare_model`: DDP when there is more than one worker);
- `update(batch) -> metrics`: one optimisation step on a batch of
  `mtdiff.data.windows` fields; metrics are detached scalar tensors (no host sync per
  step), at least ``loss`` and ``grad_norm``;
- `state_dict()` / `load_state_dict(state)`: ``{"model", "ema", "optimizer"}`` — the
  checkpoint's fields (`mtdiff.train.checkpoints`); ``ema`` holds the weights that
  evaluation uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from mtdiff.config import Config
from mtdiff.methods import method_of_kind
from mtdiff.runtime import matmul_tf32
from mtdiff.train.compiled import adam, clip_grad_norm, compile_fn, step_mode
from mtdiff.train.core import (
    TrainSetup,
    diffusion_loss_given,
    draw_noise,
    loss_settings,
)
from mtdiff.train.ema import EMA, unwrap

__all__ = ["EMA", "DiffusionLearner", "Learner", "build_learner", "unwrap"]


class Learner(Protocol):
    """One method's optimisation state and step (see the module docstring)."""

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None: ...

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DiffusionLearner:
    """MTDiff-P / -P-onehot / -S (paper §3): DDPM loss, Adam, grad clipping, EMA."""

    def __init__(self, cfg: Config, setup: TrainSetup, device: torch.device) -> None:
        if setup.model is None:
            raise ValueError(f"model kind {cfg.model.kind!r} is not a diffusion model")
        self.cfg = cfg
        self.model: nn.Module = setup.model.to(device)
        self.ema = EMA(self.model, cfg.train.ema_decay)
        self.mode = step_mode(cfg.train.compile, device)
        self.optimizer = adam(self.model.parameters(), lr=cfg.train.lr,
                              fast=self.mode is not None)
        self.schedule = setup.schedule.to(device)
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                       enabled=cfg.train.bf16)
        self.tf32 = functools.partial(matmul_tf32, cfg.train.tf32, device)

        self.settings = loss_settings(self.model, cfg)
        self.loss = compile_fn(self._loss, self.mode, device)

    def _loss(self, batch: dict[str, torch.Tensor],
              draws: dict[str, torch.Tensor]) -> torch.Tensor:

        return diffusion_loss_given(self.model, self.schedule, batch, draws, self.settings)

    def prepare(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """DDP-wrap the noise model (the EMA copy stays local)."""
        self.model = wrap(self.model)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One DDPM step (paper eq. 10 / 11)."""
        with self.tf32():
            draws = draw_noise(self.model, self.schedule, batch, self.cfg)
            with self.autocast:
                loss = self.loss(batch, draws)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = clip_grad_norm(self.model.parameters(), self.cfg.train.grad_clip,
                                       self.mode is not None)
            self.optimizer.step()
            self.ema.update(self.model)
        return {"loss": loss.detach(), "grad_norm": grad_norm.detach()}

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's model / ema / optimizer fields."""
        return {"model": unwrap(self.model).state_dict(), "ema": self.ema.shadow.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint's fields."""
        unwrap(self.model).load_state_dict(state["model"])
        self.ema.shadow.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])


def build_learner(cfg: Config, setup: TrainSetup, device: torch.device) -> Learner:
    """The learner of the method that trains `cfg.model.kind` (`mtdiff.methods`)."""
    return method_of_kind(cfg.model.kind, cfg.model.backbone).load("learner")(cfg, setup, device)
