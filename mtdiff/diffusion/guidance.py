"""Classifier-free guidance on the return (paper §2.2, eq. 9, Alg. 1 line 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class NoiseModel(Protocol):
    """What guidance needs of a model: `model(x, k, cond, drop_return) -> eps`."""

    def __call__(self, x: torch.Tensor, k: torch.Tensor, cond: dict[str, torch.Tensor],
                 drop_return: torch.Tensor | None = None) -> torch.Tensor: ...


def cfg_mix(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 9: ε̂ = ε_θ(x, y', ∅, k) + α (ε_θ(x, y', R, k) - ε_θ(x, y', ∅, k))."""
    return eps_uncond + alpha * (eps_cond - eps_uncond)


def guided_model_fn(model: NoiseModel, cond: dict[str, torch.Tensor],
                    guidance: float | None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A `model_fn(x, k) -> eps` for `sample`, closing over the conditions and α.

    cond: the model's condition dict, batch B (e.g. prompt, history and the target return
    R_max for MTDiff-P). guidance: α; None means no guidance (MTDiff-S, or a plain
    conditional call). With α not in {0, 1} the conditional and unconditional branches run
    as one batch of 2B (x and cond repeated; `drop_return` True on the second half).
    """

    def plain(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return model(x, k, cond)

    if guidance is None or guidance == 1.0:
        return plain
    if guidance == 0.0:  # the unconditional branch alone
        def uncond(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
            drop = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
            return model(x, k, cond, drop)
        return uncond

    cond2 = {key: torch.cat([v, v]) for key, v in cond.items() if v is not None}  # (2B, ...)

    def guided(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        drop = torch.arange(2 * B, device=x.device) >= B  # (2B,): False = cond, True = null
        eps = model(torch.cat([x, x]), torch.cat([k, k]), cond2, drop)  # (2B, H, D)
        eps_cond, eps_uncond = eps[:B], eps[B:]
        return cfg_mix(eps_uncond, eps_cond, guidance)

    return guided
