"""Reverse-process samplers over a `DiffusionSchedule`, written diffusers-style.

Each sampler has `set_timesteps(n)`, a `timesteps` list (0-based steps, noisiest first),
`init_noise_sigma`, and `step(eps, k, x) -> SamplerOutput(prev_sample, pred_x0)`. The
loop that joins a model and a sampler is `sample(model_fn, shape, sampler)` (or written
out by the caller).

- `DDPMSampler`: ancestral sampling (paper §2.2, Alg. 1/2), all K steps by default, with
  low-temperature sampling (Alg. 1 lines 5 and 10: x_K ~ N(0, βI) and each step's
  variance β Σ). The authors' code instead multiplies the noise's *std* by 0.5 and starts
  from N(0, I); the paper is followed here (β = temperature scales the variance).
- `DDIMSampler`: DDIM (Song et al. 2021, eq. 12); eta = 0 is deterministic.
- `DPMSolverSampler`: DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), the multistep
  second-order data-prediction solver, first order on the first and the last step.

Fast samplers are ours (small, torch-only, no per-step host sync) and are tested step by
step against diffusers' `DDPMScheduler`, `DDIMScheduler` and `DPMSolverMultistepScheduler`
built with `trained_betas=` the same VP betas and `timestep_spacing="trailing"`: the
strided timesteps are round(K - i K / n) - 1, starting at the noisiest step K - 1.
Temperature for DDIM / DPM-Solver: it scales the variance of every noise injected
(the initial x_K and DDIM's eta noise); with eta = 0 only the start is affected.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from mtdiff.config import DiffusionConfig
from mtdiff.diffusion.schedule import DiffusionSchedule

# x̂_0 clipping: none, ±c, or per-dimension (lo, hi) tensors broadcast over the last axis.
ClipRange = float | tuple[torch.Tensor, torch.Tensor] | None


class SamplerOutput(NamedTuple):
    """One reverse step's result: x_{prev} and the model's x̂_0 at this step, both (B, ...)."""

    prev_sample: torch.Tensor
    pred_x0: torch.Tensor


def trailing_timesteps(K: int, n: int) -> list[int]:
    """n of the K 0-based steps, evenly spaced and starting at K - 1 ("trailing" spacing)."""
    if not 1 <= n <= K:
        raise ValueError(f"number of sampling steps must be in [1, {K}], got {n}")
    step = -K / n
    return [int(round(K + i * step)) - 1 for i in range(n)]


class _Sampler:
    """Shared state: the schedule, the timesteps, temperature and x̂_0 clipping."""

    def __init__(self, schedule: DiffusionSchedule, num_inference_steps: int | None = None, *,
                 temperature: float = 1.0, clip_sample: ClipRange = None) -> None:
        if not 0.0 <= temperature <= 1.0:
            raise ValueError(f"temperature must be in [0, 1], got {temperature}")
        self.schedule = schedule
        self.temperature = temperature
        self.clip_sample = clip_sample
        self._abar = schedule.alphas_cumprod64.tolist()  # float64 scalars per step
        self.set_timesteps(num_inference_steps or schedule.num_steps)

    @property
    def init_noise_sigma(self) -> float:
        """Std of the initial x_K: √temperature (Alg. 1 line 5: x_K ~ N(0, β I))."""
        return math.sqrt(self.temperature)

    def set_timesteps(self, n: int) -> None:
        """Use n denoising steps (resets any multistep state)."""
        self.num_inference_steps = n
        self.timesteps = trailing_timesteps(self.schedule.num_steps, n)
        self._prev = {t: (self.timesteps[i + 1] if i + 1 < n else -1)
                      for i, t in enumerate(self.timesteps)}
        self._index = {t: i for i, t in enumerate(self.timesteps)}

    def _abar_at(self, k: int) -> float:
        return self._abar[k] if k >= 0 else 1.0  # ᾱ before the first step is 1

    def _x0(self, eps: torch.Tensor, k: int, x: torch.Tensor) -> torch.Tensor:
        """x̂_0 = (x_k - √(1 - ᾱ_k) ε) / √ᾱ_k, optionally clipped to ±clip_sample, or to
        [lo, hi] per last-axis dimension when clip_sample is a (lo, hi) pair of tensors."""
        abar = self._abar[k]
        x0 = (x - math.sqrt(1.0 - abar) * eps) / math.sqrt(abar)
        if isinstance(self.clip_sample, tuple):
            x0 = x0.clamp(self.clip_sample[0], self.clip_sample[1])
        elif self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        return x0

    def _noise(self, x: torch.Tensor, generator: torch.Generator | None,
               noise: torch.Tensor | None) -> torch.Tensor:
        if noise is not None:
            return noise
        # A generator lives on one device: draw there (as diffusers' randn_tensor), then move.
        where = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)

    def _check(self, k: int) -> int:
        k = int(k)
        if k not in self._index:
            raise ValueError(f"step {k} is not one of this sampler's timesteps (set_timesteps)")
        return k


class DDPMSampler(_Sampler):
    """Ancestral DDPM with low-temperature noise: x_{k-1} ~ N(μ_θ(x_k), β Σ_k).

    μ_θ is the posterior mean q(x_{k-1} | x_k, x̂_0) with x̂_0 from ε (optionally clipped),
    Σ_k the posterior variance β̃_k ("fixed small"). With n < K steps, the step from k to
    its predecessor p uses β'_k = 1 - ᾱ_k / ᾱ_p (as diffusers does).
    """

    def step(self, eps: torch.Tensor, k: int, x: torch.Tensor, *,
             generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> SamplerOutput:
        """eps, x: (B, ...) at 0-based step k -> x at the previous timestep."""
        k = self._check(k)
        p = self._prev[k]
        abar_t, abar_p = self._abar[k], self._abar_at(p)
        beta_t = 1.0 - abar_t / abar_p
        x0 = self._x0(eps, k, x)
        # Posterior mean coefficients (DDPM, Ho et al. 2020, eq. 7).
        c0 = math.sqrt(abar_p) * beta_t / (1.0 - abar_t)
        ck = math.sqrt(1.0 - beta_t) * (1.0 - abar_p) / (1.0 - abar_t)
        mean = c0 * x0 + ck * x
        if p < 0:  # the last step returns the mean (no noise at k = 0)
            return SamplerOutput(mean, x0)
        var = max((1.0 - abar_p) / (1.0 - abar_t) * beta_t, 1e-20)
        std = math.sqrt(self.temperature * var)  # Alg. 1 line 10: variance β Σ
        return SamplerOutput(mean + std * self._noise(x, generator, noise), x0)


class DDIMSampler(_Sampler):
    """DDIM: x_p = √ᾱ_p x̂_0 + √(1 - ᾱ_p - σ²) ε + σ z, σ = eta √((1-ᾱ_p)/(1-ᾱ_k)(1-ᾱ_k/ᾱ_p))."""

    def __init__(self, schedule: DiffusionSchedule, num_inference_steps: int | None = None, *,
                 eta: float = 0.0, temperature: float = 1.0,
                 clip_sample: ClipRange = None) -> None:
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = eta
        super().__init__(schedule, num_inference_steps, temperature=temperature,
                         clip_sample=clip_sample)

    def step(self, eps: torch.Tensor, k: int, x: torch.Tensor, *,
             generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> SamplerOutput:
        """eps, x: (B, ...) at 0-based step k -> x at the previous timestep."""
        k = self._check(k)
        abar_t, abar_p = self._abar[k], self._abar_at(self._prev[k])
        x0 = self._x0(eps, k, x)
        if self.clip_sample is not None:  # keep ε consistent with the clipped x̂_0
            eps = (x - math.sqrt(abar_t) * x0) / math.sqrt(1.0 - abar_t)
        var = (1.0 - abar_p) / (1.0 - abar_t) * (1.0 - abar_t / abar_p)
        sigma = self.eta * math.sqrt(var)
        prev = math.sqrt(abar_p) * x0 + math.sqrt(max(1.0 - abar_p - sigma**2, 0.0)) * eps
        if sigma > 0:
            prev = prev + sigma * math.sqrt(self.temperature) * self._noise(x, generator, noise)
        return SamplerOutput(prev, x0)


class DPMSolverSampler(_Sampler):
    """DPM-Solver++(2M): multistep 2nd-order solver of the diffusion ODE in data space.

    With λ = log(α/σ), α = √ᾱ, σ = √(1-ᾱ), h = λ_p - λ_k:
    first order   x_p = (σ_p/σ_k) x - α_p (e^{-h} - 1) x̂_0
    second order  x_p = (σ_p/σ_k) x - α_p (e^{-h} - 1) (x̂_0 + (x̂_0 - x̂_0') / (2 r)),
                  r = (λ_k - λ_k') / h, primes = the previous step.
    The last step goes to σ = 0 and returns x̂_0 (diffusers' final_sigmas_type="zero").
    """

    def set_timesteps(self, n: int) -> None:
        """Use n denoising steps and forget the previous x̂_0."""
        super().set_timesteps(n)
        self._last: tuple[float, torch.Tensor] | None = None  # (λ, x̂_0) of the previous step

    def _lam(self, k: int) -> float:
        abar = self._abar[k]
        return 0.5 * (math.log(abar) - math.log(1.0 - abar))

    def step(self, eps: torch.Tensor, k: int, x: torch.Tensor, *,
             generator: torch.Generator | None = None,
             noise: torch.Tensor | None = None) -> SamplerOutput:
        """eps, x: (B, ...) at 0-based step k -> x at the previous timestep (deterministic)."""
        k = self._check(k)
        p = self._prev[k]
        if self._index[k] == 0:
            self._last = None
        x0 = self._x0(eps, k, x)
        if p < 0:
            self._last = None
            return SamplerOutput(x0, x0)
        abar_k, abar_p = self._abar[k], self._abar[p]
        lam_k, lam_p = self._lam(k), self._lam(p)
        h = lam_p - lam_k
        alpha_p = math.sqrt(abar_p)
        ratio = math.sqrt(1.0 - abar_p) / math.sqrt(1.0 - abar_k)
        d = x0
        if self._last is not None:
            lam_prev, x0_prev = self._last
            r = (lam_k - lam_prev) / h
            d = x0 + (0.5 / r) * (x0 - x0_prev)
        prev = ratio * x - alpha_p * math.expm1(-h) * d
        self._last = (lam_k, x0)
        return SamplerOutput(prev, x0)


Sampler = DDPMSampler | DDIMSampler | DPMSolverSampler


def make_sampler(cfg: DiffusionConfig, schedule: DiffusionSchedule | None = None, *,
                 temperature: float | None = None, clip_sample: ClipRange = None,
                 eta: float = 0.0) -> Sampler:
    """The sampler named by `cfg.sampler` with `cfg.sample_steps` steps.

    temperature: None = `cfg.temperature` (the planner's β); MTDiff-S synthesis samples at
    1.0 (Alg. 2). eta applies to DDIM only.
    """
    schedule = schedule or DiffusionSchedule.from_config(cfg)
    temp = cfg.temperature if temperature is None else temperature
    if cfg.sampler == "ddpm":
        return DDPMSampler(schedule, cfg.sample_steps, temperature=temp, clip_sample=clip_sample)
    if cfg.sampler == "ddim":
        return DDIMSampler(schedule, cfg.sample_steps, eta=eta, temperature=temp,
                           clip_sample=clip_sample)
    return DPMSolverSampler(schedule, cfg.sample_steps, temperature=temp, clip_sample=clip_sample)


@torch.no_grad()
def sample(model_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           shape: tuple[int, ...], sampler: Sampler, *, generator: torch.Generator | None = None,
           device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
           x_init: torch.Tensor | None = None) -> torch.Tensor:
    """Run the reverse process: x_K ~ N(0, temperature I), then one `step` per timestep.

    model_fn(x (B, ...), k (B,) int64) -> eps (B, ...): the caller closes over the
    conditions and guidance (see `mtdiff.diffusion.guidance.guided_model_fn`).
    shape: (B, H, D). Returns x_0: (B, H, D).
    """
    sampler.set_timesteps(sampler.num_inference_steps)  # fresh multistep state
    if x_init is None:
        where = generator.device if generator is not None else device
        x = torch.randn(shape, generator=generator, device=where, dtype=dtype)
        if device is not None:
            x = x.to(device)
        x = x * sampler.init_noise_sigma  # Alg. 1 line 5: x_K ~ N(0, β I)
    else:
        x = x_init
    for k in sampler.timesteps:
        kk = torch.full((x.shape[0],), k, dtype=torch.long, device=x.device)  # (B,)
        eps = model_fn(x, kk)
        x = sampler.step(eps.to(x.dtype), k, x, generator=generator).prev_sample
    return x
