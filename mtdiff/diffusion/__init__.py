"""Diffusion maths apart from the models: VP schedule, DDPM posterior, loss, samplers, guidance.

Models are plain callables here (`model_fn(x, k) -> eps`); this package never builds one.
"""

from mtdiff.diffusion.guidance import cfg_mix, guided_model_fn
from mtdiff.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    Sampler,
    SamplerOutput,
    make_sampler,
    sample,
    trailing_timesteps,
)
from mtdiff.diffusion.schedule import DiffusionSchedule, diffusion_loss, vp_beta_schedule

__all__ = [
    "DDIMSampler", "DDPMSampler", "DPMSolverSampler", "DiffusionSchedule", "Sampler",
    "SamplerOutput", "cfg_mix", "diffusion_loss", "guided_model_fn", "make_sampler", "sample",
    "trailing_timesteps", "vp_beta_schedule",
]
