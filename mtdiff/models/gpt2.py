"""GPT-2 backbone in nanoGPT style: pre-LN blocks of self-attention and an MLP.

The token embeddings come from the MTDiff embedders (no vocabulary, no positional
table here: the noise model adds E_pos and the input LayerNorm of paper §3.3 before
calling `GPT2`). Width d, 6 layers, 4 heads in the paper (App. A).

Causal or bidirectional? GPT-2 is a causal decoder, and the authors used the GPT-2 of
decision-transformer, which is causal. We keep the causal mask by default. With the
MTDiff token order (all conditioning tokens first, then the H noisy x tokens), the
mask means: every x token attends to the whole condition (prompt, timestep, return,
history) and to the x tokens at or before it; the first action (the one executed)
is denoised from the condition and its own noisy value only. A bidirectional variant
(`causal=False`, DiT-like) is available as an ablation.

Attention comes in two implementations with the same maths:
- "sdpa": PyTorch's fused `F.scaled_dot_product_attention` (flash / memory-efficient
  kernels on CUDA);
- "math": explicit matmul + softmax. On CPU the fused kernel's bf16 backward is slow
  and this path is 1.3-1.9x faster there.
"auto" (the default) picks, per call, math on CPU in reduced precision (bf16 / fp16
autocast) and sdpa otherwise (CUDA; CPU in fp32, where the fused kernel is ~1.2x faster
than math without dropout and on par with it, as with dropout it falls back to math).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

AttnImpl = Literal["auto", "sdpa", "math"]


@dataclass
class GPTConfig:
    """Shape of the backbone. `max_tokens` bounds the sequence length T (for the mask)."""

    d_model: int = 256
    n_layer: int = 6
    n_head: int = 4
    dropout: float = 0.1
    max_tokens: int = 128
    bias: bool = True
    causal: bool = True
    attn_impl: AttnImpl = "auto"

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")
        if self.attn_impl not in ("auto", "sdpa", "math"):
            raise ValueError(f"attn_impl must be 'auto', 'sdpa' or 'math', got {self.attn_impl!r}")


class SelfAttention(nn.Module):
    """Multi-head self-attention, causal or not: (B, T, d) -> (B, T, d)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.causal = cfg.causal
        self.attn_impl: AttnImpl = cfg.attn_impl
        self.dropout = cfg.dropout
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # q, k, v at once
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)
        # Lower-triangular mask for the math path, sliced to T at run time.
        n = cfg.max_tokens
        mask = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)  # (1, 1, T, T)
        self.register_buffer("mask", mask, persistent=False)

    def _impl(self, q: torch.Tensor) -> str:
        if self.attn_impl == "auto":
            # CPU + bf16/fp16 (autocast): math. Elsewhere sdpa (on CPU in fp32 the fused
            # kernel is ~1.2x faster without dropout and on par with it).
            low = q.dtype in (torch.bfloat16, torch.float16)
            return "math" if q.device.type == "cpu" and low else "sdpa"
        return self.attn_impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) -> (B, T, d)."""
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, d)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self._impl(q) == "sdpa":
            y = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            if self.causal:
                att = att.masked_fill(~self.mask[:, :, :T, :T], float("-inf"))
            att = self.attn_drop(F.softmax(att, dim=-1))
            y = att @ v  # (B, nh, T, T) x (B, nh, T, hs) -> (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side: (B, T, d)
        return self.resid_drop(self.c_proj(y))


class MLP(nn.Module):
    """GPT-2 feed-forward: d -> 4d -> d with GELU: (B, T, d) -> (B, T, d)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) -> (B, T, d)."""
        return self.drop(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2): x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d) -> (B, T, d)."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """A stack of `n_layer` blocks and the final LayerNorm: (B, T, d) -> (B, T, d)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer) so the residual
        # stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def set_attn_impl(self, impl: AttnImpl) -> None:
        """Switch every block's attention implementation ("auto" | "sdpa" | "math")."""
        if impl not in ("auto", "sdpa", "math"):
            raise ValueError(f"attn_impl must be 'auto', 'sdpa' or 'math', got {impl!r}")
        self.cfg.attn_impl = impl
        for block in self.blocks:
            block.attn.attn_impl = impl

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h: (B, T, d) token embeddings, T <= max_tokens -> (B, T, d)."""
        if h.shape[1] > self.cfg.max_tokens:
            raise ValueError(f"{h.shape[1]} tokens exceed max_tokens={self.cfg.max_tokens}")
        x = self.drop(h)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)
