"""Noise models ε_θ: embedders, the GPT-2 backbone, MTDiff-P / -P-onehot / -S, U-Net ablation.

Never imports `mtdiff.diffusion`: a model maps (x_k, k, cond) to ε and knows nothing of
schedules or samplers.
"""

from mtdiff.models.embedders import sample_return_drop
from mtdiff.models.gpt2 import GPT2, GPTConfig
from mtdiff.models.mtdiff import MTDiffP, MTDiffPOneHot, MTDiffS, build_model
from mtdiff.models.unet import TemporalUNet

__all__ = [
    "GPT2", "GPTConfig", "MTDiffP", "MTDiffPOneHot", "MTDiffS", "TemporalUNet", "build_model",
    "sample_return_drop",
]
