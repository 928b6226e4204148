"""Input embedders of the MTDiff noise model (paper §3.3 and App. A).

Every raw input is mapped to the transformer width d by its own MLP with Mish
activations. Layer counts follow App. A:

    f_P  (prompt)       LayerNorm + 3-layer MLP
    f_Ti (timestep)     sinusoidal embedding + 2-layer MLP
    f_R  (return)       3-layer MLP
    f_H  (history)      3-layer MLP
    f_A  (actions), f_Tr (transitions), prediction head: 2-layer MLPs

The paper does not give hidden widths; we use 2d for every hidden layer (the authors'
code uses 2d and 4d in the prompt/state MLPs, and single linear layers for f_A and the
head, where the paper says 2-layer MLPs: the paper is followed here).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, out_dim: int, *, layers: int, hidden: int,
        layer_norm: bool = False) -> nn.Sequential:
    """A `layers`-layer MLP with Mish between linear layers (none after the last one).

    Applies to the last dimension: (..., in_dim) -> (..., out_dim). With `layer_norm`
    the input is normalised first (App. A: f_P is "prepped by a layer norm").
    """
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got layers={layers}")
    mods: list[nn.Module] = [nn.LayerNorm(in_dim)] if layer_norm else []
    dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
    for i in range(layers):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < layers - 1:
            mods.append(nn.Mish())
    return nn.Sequential(*mods)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar step: (B,) -> (B, dim)."""

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
        half = dim // 2
        # Frequencies exp(-log(max_period) * i / (half - 1)), i = 0..half-1 (as in DDPM/diffuser).
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        """k: (B,) integer or float steps -> (B, dim) [sin | cos]."""
        args = k.float()[:, None] * self.freqs[None, :]  # (B, dim/2)
        return torch.cat([args.sin(), args.cos()], dim=-1)  # (B, dim)


class TimestepEmbedder(nn.Module):
    """f_Ti: diffusion step k (B,) -> h_Ti (B, 1, d); sinusoidal + 2-layer MLP."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.sin = SinusoidalEmbedding(d)
        self.mlp = mlp(d, d, layers=2, hidden=2 * d)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        """k: (B,) int64 -> (B, 1, d)."""
        return self.mlp(self.sin(k)).unsqueeze(1)  # (B, d) -> (B, 1, d)


class ReturnEmbedder(nn.Module):
    """f_R: normalised return R (B, 1) -> h_R (B, 1, d); 3-layer MLP.

    `keep` (B,) bool implements the classifier-free-guidance null condition (paper eq. 10,
    "(1 - beta) R + beta * null"): a dropped sample gets h_R = 0, a zero mask on the
    embedding, as in the authors' code. Zero is a clean "nothing" in both places h_R
    enters (it is a token, and it is added to every token) and needs no extra parameter;
    it also lets callers omit R altogether (then every sample is unconditional).
    """

    def __init__(self, d: int) -> None:
        super().__init__()
        self.mlp = mlp(1, d, layers=3, hidden=2 * d)

    def forward(self, returns: torch.Tensor | None, keep: torch.Tensor | None, *,
                batch_size: int, like: torch.Tensor) -> torch.Tensor:
        """returns: (B, 1) or None; keep: (B,) bool or None (= keep all) -> (B, 1, d)."""
        if returns is None:
            d = self.mlp[-1].out_features
            return like.new_zeros(batch_size, 1, d)
        h = self.mlp(returns.reshape(batch_size, 1).to(like.dtype)).unsqueeze(1)  # (B, 1, d)
        if keep is not None:
            h = h * keep.to(h.dtype).view(batch_size, 1, 1)  # zero the dropped samples
        return h


def sample_return_drop(batch_size: int, p: float, *, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> torch.Tensor:
    """Per-sample Bernoulli(p) drop flags for training (paper eq. 10, App. A: p = 0.25).

    Returns (B,) bool, True where the return condition is replaced by the null condition.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"return drop probability must be in [0, 1), got {p}")
    # A generator lives on one device; draw there, then move (the flags are tiny).
    where = generator.device if generator is not None else device
    flags = torch.rand(batch_size, generator=generator, device=where) < p
    return flags if device is None else flags.to(device)
