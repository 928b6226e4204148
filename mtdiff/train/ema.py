"""The weights' exponential moving average, and the model inside a DDP wrapper: shared by the
training set-up (`core`, which checkpoints the EMA) and every learner."""

from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") else model


class EMA:
    """Exponential moving average of a model's weights (decay `TrainConfig.ema_decay`)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self._shadow = list(self.shadow.named_parameters())  # fixed: named once, not per step

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights (buffers copied), as one
        foreach update over every tensor."""
        model = unwrap(model)
        src = dict(model.named_parameters())
        weights = [src[name].detach().to(p.dtype) for name, p in self._shadow]
        torch._foreach_lerp_([p for _, p in self._shadow], weights, 1.0 - self.decay)
        pairs = list(zip(self.shadow.buffers(), model.buffers(), strict=True))
        if pairs:
            torch._foreach_copy_([sb for sb, _ in pairs], [b for _, b in pairs])
