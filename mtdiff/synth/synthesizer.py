"""MTDiff-S as a data generator: transition sequences (s, a, r) from a prompt (Alg. 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mtdiff import keys
from mtdiff.config import DiffusionConfig
from mtdiff.data.prompts import load_prompts
from mtdiff.diffusion import make_sampler, sample
from mtdiff.runtime import matmul_tf32
from mtdiff.train.core import LoadedModel, load_model


class Synthesizer:
    """Samples synthetic transition sequences with a trained MTDiff-S checkpoint."""

    def __init__(self, loaded: LoadedModel, prompts: dict[str, np.ndarray] | None = None,
                 device: str | torch.device = "cpu") -> None:
        if loaded.meta["kind"] != "mtdiff-s":
            raise ValueError(f"this checkpoint is {loaded.meta['kind']}, not MTDiff-S; use "
                             "mtdiff.load_planner for planners")
        self.m = loaded
        self.device = torch.device(device)
        self.build = loaded.meta["build"]
        if prompts is None and Path(loaded.meta["prompts"]).exists():
            prompts = load_prompts(Path(loaded.meta["prompts"]).parent)
        self.prompts = prompts or {}

    @torch.no_grad()
    def synthesize(self, prompt: np.ndarray, *, diffusion: DiffusionConfig | None = None,
                   generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
        """One sequence per prompt: prompt (N, J, obs+act) raw -> raw arrays
        observation (N, H, obs_dim), action (N, H, act_dim), reward (N, H).

        Synthesis samples at temperature 1 with no guidance (Alg. 2, eq. 11). diffusion:
        sampler, steps and x̂_0 clipping (None: the checkpoint's config; the pipeline
        passes its own, so `--set diffusion.*` applies).
        """
        dcfg = diffusion or self.m.cfg.diffusion
        nz = self.m.normalizer
        od, ad = self.build["obs_dim"], self.build["act_dim"]
        p = np.concatenate([nz.normalize(keys.OBSERVATION, prompt[..., :od]),
                            nz.normalize(keys.ACTION, prompt[..., od:])], axis=-1)
        cond = {keys.BATCH_PROMPT: torch.from_numpy(p).to(self.device)}
        clip = None
        if dcfg.clip_denoised:  # x̂_0 to the data's normalised range, per (s, a, r) dimension
            lo, hi = zip(*(nz.normalized_bounds(k) for k in
                           (keys.OBSERVATION, keys.ACTION, keys.REWARD)), strict=True)
            clip = (torch.from_numpy(np.concatenate(lo)).to(self.device),
                    torch.from_numpy(np.concatenate(hi)).to(self.device))
        sampler = make_sampler(dcfg, self.m.schedule, temperature=1.0, clip_sample=clip)
        with matmul_tf32(dcfg.tf32, self.device):
            x = sample(lambda x, k: self.m.model(x, k, cond),
                       (len(p), self.build["horizon"], od + ad + 1), sampler,
                       generator=generator, device=self.device).float().cpu().numpy()
        return {keys.OBSERVATION: nz.unnormalize(keys.OBSERVATION, x[..., :od]),
                keys.ACTION: np.clip(nz.unnormalize(keys.ACTION, x[..., od:od + ad]), -1, 1),
                keys.REWARD: nz.unnormalize(keys.REWARD, x[..., -1:])[..., 0]}


def load_synthesizer(path: str | Path, *, device: str | torch.device = "cpu",
                     ema: bool = True) -> Synthesizer:
    """A ready-to-sample `Synthesizer` from an MTDiff-S checkpoint."""
    return Synthesizer(load_model(path, device=device, ema=ema), device=device)
