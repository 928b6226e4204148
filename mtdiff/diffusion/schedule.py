"""The VP noise schedule, forward noising, the DDPM posterior and the ε-prediction loss.

Indexing: arrays are 0-based, diffusers style. Index k in [0, K) holds the paper's step
k + 1, so `betas[0]` is the paper's β_1 and `alphas_cumprod[K - 1]` is ᾱ_K. Models and
samplers pass these 0-based indices around as `k`.

Coefficients are computed in float64 and stored as float32 tensors (as diffusers does);
the float64 originals are kept for the samplers' per-step scalars.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from mtdiff.config import DiffusionConfig


def vp_beta_schedule(K: int, beta_min: float = 0.1, beta_max: float = 10.0, *,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The paper's VP schedule (§2.2): (K,) with the paper's β_k at index k - 1.

    β_k = 1 - exp(-β_min / K - 0.5 (β_max - β_min) (2k - 1) / K²),  k = 1..K.
    """
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    k = torch.arange(1, K + 1, dtype=torch.float64)
    betas = 1.0 - torch.exp(-beta_min / K - 0.5 * (beta_max - beta_min) * (2 * k - 1) / K**2)
    return betas.to(dtype)


def _gather(arr: torch.Tensor, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """arr[k] for a batch of steps k (B,), shaped (B, 1, ..., 1) to broadcast against `like`."""
    out = arr.to(like.device)[k.to(like.device).long()]  # (B,)
    return out.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def diffusion_loss(model_eps: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None = None,
                   *, kind: Literal["mse", "huber"] = "mse", first_weight: float = 1.0,
                   huber_delta: float = 1.0) -> torch.Tensor:
    """ε-prediction loss, paper eq. 2 / 10 / 11: mean ||ε - ε_θ||² over valid elements.

    model_eps, noise: (B, H, D). mask: (B, H), 1 where the position counts (e.g.
    `keys.BATCH_MASK`). The authors' code variant is `kind="huber"` with
    `first_weight=10` (the first position, the executed action, weighted 10x).
    Returns a scalar.
    """
    if model_eps.shape != noise.shape:
        raise ValueError(f"model_eps {tuple(model_eps.shape)} and noise "
                         f"{tuple(noise.shape)} differ")
    eps, target = model_eps.float(), noise.float()
    if kind == "mse":
        per = (eps - target) ** 2  # (B, H, D)
    elif kind == "huber":
        per = F.huber_loss(eps, target, reduction="none", delta=huber_delta)
    else:
        raise ValueError(f"loss kind must be 'mse' or 'huber', got {kind!r}")
    if first_weight != 1.0:
        w = torch.ones(per.shape[1], device=per.device, dtype=per.dtype)
        w[0] = first_weight
        per = per * w.view(1, -1, 1)
    if mask is None:
        return per.mean()
    m = mask.to(per.dtype).view(per.shape[0], per.shape[1], 1)  # (B, H, 1)
    return (per * m).sum() / (m.sum() * per.shape[2]).clamp_min(1.0)


class DiffusionSchedule:
    """Precomputed tensors of a K-step VP diffusion and the maths that uses them.

    Attributes (all (K,), float32): betas, alphas, alphas_cumprod, alphas_cumprod_prev,
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
    sqrt_recipm1_alphas_cumprod, posterior_variance, posterior_log_variance_clipped,
    posterior_mean_coef1, posterior_mean_coef2. `betas64` / `alphas_cumprod64` keep float64.
    """

    def __init__(self, betas: torch.Tensor) -> None:
        b = betas.detach().to("cpu", torch.float64)
        if b.ndim != 1 or not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("betas must be a 1-D tensor with values in (0, 1)")
        self.num_steps = int(b.numel())
        a = 1.0 - b
        abar = torch.cumprod(a, dim=0)  # ᾱ_k
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])  # ᾱ_{k-1}, ᾱ_0 = 1
        # Posterior q(x_{k-1} | x_k, x_0) = N(c1 x_0 + c2 x_k, β̃_k)  (DDPM, Ho et al. eq. 6-7).
        post_var = b * (1.0 - abar_prev) / (1.0 - abar)
        self.betas64, self.alphas_cumprod64 = b, abar
        tensors = {
            "betas": b, "alphas": a, "alphas_cumprod": abar, "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "sqrt_recip_alphas_cumprod": (1.0 / abar).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1.0 / abar - 1.0).sqrt(),
            "posterior_variance": post_var,
            # β̃_1 = 0: the log is clipped, as in DDPM / diffuser.
            "posterior_log_variance_clipped": post_var.clamp_min(1e-20).log(),
            "posterior_mean_coef1": b * abar_prev.sqrt() / (1.0 - abar),
            "posterior_mean_coef2": (1.0 - abar_prev) * a.sqrt() / (1.0 - abar),
        }
        for name, t in tensors.items():
            setattr(self, name, t.float())

    @classmethod
    def vp(cls, K: int = 200, beta_min: float = 0.1, beta_max: float = 10.0) -> DiffusionSchedule:
        """The paper's schedule (K = 200, β_min = 0.1, β_max = 10)."""
        return cls(vp_beta_schedule(K, beta_min, beta_max))

    @classmethod
    def from_config(cls, cfg: DiffusionConfig) -> DiffusionSchedule:
        """The schedule of a `DiffusionConfig` (num_steps, beta_min, beta_max)."""
        return cls.vp(cfg.num_steps, cfg.beta_min, cfg.beta_max)

    def to(self, device: torch.device | str) -> DiffusionSchedule:
        """Move the float32 tensors to `device` (in place; returns self)."""
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor) and not name.endswith("64"):
                setattr(self, name, value.to(device))
        return self

    def sample_steps(self, batch_size: int, *, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
        """k ~ U{0..K-1} (the paper's k ~ U(1, K)), (B,) int64, for training."""
        where = generator.device if generator is not None else device
        k = torch.randint(0, self.num_steps, (batch_size,), generator=generator, device=where)
        return k if device is None else k.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Forward noising q(x_k | x_0) = N(√ᾱ_k x_0, (1 - ᾱ_k) I): x0, noise (B, ...), k (B,)."""
        return (_gather(self.sqrt_alphas_cumprod, k, x0) * x0
                + _gather(self.sqrt_one_minus_alphas_cumprod, k, x0) * noise)

    def predict_x0(self, xk: torch.Tensor, eps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_k - √(1 - ᾱ_k) ε) / √ᾱ_k, from the forward-noising equation."""
        return (_gather(self.sqrt_recip_alphas_cumprod, k, xk) * xk
                - _gather(self.sqrt_recipm1_alphas_cumprod, k, xk) * eps)

    def q_posterior(self, x0: torch.Tensor, xk: torch.Tensor,
                    k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, ...) and variance (B, 1, ..., 1) of q(x_{k-1} | x_k, x_0)."""
        mean = (_gather(self.posterior_mean_coef1, k, xk) * x0
                + _gather(self.posterior_mean_coef2, k, xk) * xk)
        return mean, _gather(self.posterior_variance, k, xk)

    def loss(self, model_eps: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None = None,
             **kwargs: float | str) -> torch.Tensor:
        """`diffusion_loss` (ε-prediction MSE by default; see there for the options)."""
        return diffusion_loss(model_eps, noise, mask, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (f"DiffusionSchedule(K={self.num_steps}, beta_1={float(self.betas64[0]):.3g}, "
                f"beta_K={float(self.betas64[-1]):.3g}, "
                f"abar_K={float(self.alphas_cumprod64[-1]):.3g})")
