"""MTDiff-P as a policy: denoise an action sequence, execute its first action (Alg. 1).

`Planner.plan` takes raw (un-normalised) states and prompts for N environments at once
and makes one batched denoising call for all of them; guidance doubles the batch (the
conditional and unconditional branches run together).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff import keys
from mtdiff.config import DiffusionConfig
from mtdiff.data.prompts import load_prompts
from mtdiff.data.windows import checkpoint_return_info, resolve_target
from mtdiff.diffusion import guided_model_fn, make_sampler, sample
from mtdiff.train.core import LoadedModel, load_model


class Planner:
    """Plans with a trained MTDiff-P / MTDiff-P-onehot checkpoint."""

    def __init__(self, loaded: LoadedModel, prompts: dict[str, np.ndarray] | None = None,
                 device: str | torch.device = "cpu") -> None:
        if loaded.meta["kind"] == "mtdiff-s":
            raise ValueError("this checkpoint is MTDiff-S (a synthesizer); use "
                             "mtdiff.load_synthesizer, or give an MTDiff-P checkpoint")
        self.m = loaded
        self.device = torch.device(device)
        self.build = loaded.meta["build"]
        self.tasks: list[str] = loaded.meta["tasks"]
        # "demo" (windows of demonstrations) or "layout" (Maze2D maps: `layout_prompt`).
        self.prompt_kind: str = loaded.meta.get("prompt", {}).get("kind", "demo")
        self.returns = checkpoint_return_info(loaded.meta)  # R's definition and range
        if prompts is None and self.prompt_kind == "demo" and \
                Path(loaded.meta["prompts"]).exists():
            prompts = load_prompts(Path(loaded.meta["prompts"]).parent)
        self.prompts = prompts or {}

    @property
    def horizon(self) -> int:
        """H: length of a planned action sequence."""
        return int(self.build["horizon"])

    @property
    def history(self) -> int:
        """L: states of history the planner conditions on."""
        return int(self.build["history"])

    def layout_prompt(self, maze: Any) -> np.ndarray:
        """A Maze2D map's layout prompt set (1, cells, 5) for a layout checkpoint."""
        from mtdiff.envs.maze2d_layout import layout_prompt

        return layout_prompt(maze, tuple(self.m.meta["prompt"]["shape"]))

    def sample_prompts(self, task: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """n random windows of a task's prompt set (raw), (n, J, obs+act)."""
        if task not in self.prompts:
            raise KeyError(f"no prompt set for task {task!r}; known: {sorted(self.prompts)}")
        p = self.prompts[task][:, : self.build["prompt_len"]]
        return p[rng.integers(len(p), size=n)]

    @torch.no_grad()
    def plan(self, history: np.ndarray, *, prompt: np.ndarray | None = None,
             task_ids: np.ndarray | None = None, target_return: float | None = None,
             diffusion: DiffusionConfig | None = None,
             generator: torch.Generator | None = None) -> np.ndarray:
        """Action sequences (N, H, act_dim), raw units, for N environments.

        history: (N, L, obs_dim) raw states s_{t-L+1..t}; prompt: (N, J, obs+act) raw
        (MTDiff-P; a layout checkpoint: (N, cells, 5), used as given) or task_ids (N,)
        indices into the training tasks (one-hot variant); target_return: R_max on the
        checkpoint's return scale (None: its natural target, `resolve_target`);
        diffusion: sampler, steps, guidance α, temperature β and x̂_0 clipping (default:
        the checkpoint's config).
        """
        dcfg = diffusion or self.m.cfg.diffusion
        nz = self.m.normalizer
        N = len(history)
        dev = self.device
        target = resolve_target(self.returns, target_return)
        cond = {keys.BATCH_HISTORY: torch.from_numpy(nz.normalize(keys.OBSERVATION, history)).to(
            dev), keys.BATCH_RETURN: torch.full((N, 1), target, device=dev)}
        if self.m.meta["kind"] == "mtdiff-p-onehot":
            if task_ids is None:
                raise ValueError("the one-hot planner needs task_ids (indices of training tasks)")
            cond[keys.BATCH_TASK_ID] = torch.as_tensor(task_ids, device=dev).long()
        else:
            if prompt is None:
                raise ValueError("MTDiff-P needs a prompt (N, J, obs+act) per environment")
            od = self.build["obs_dim"]
            p = np.asarray(prompt, np.float32) if self.prompt_kind == "layout" else np.concatenate(
                [nz.normalize(keys.OBSERVATION, prompt[..., :od]),
                 nz.normalize(keys.ACTION, prompt[..., od:])], axis=-1)
            cond[keys.BATCH_PROMPT] = torch.from_numpy(p).to(dev)
        clip = None
        if dcfg.clip_denoised:  # x̂_0 to the data's normalised range
            lo, hi = nz.normalized_bounds(keys.ACTION)  # (act_dim,) each
            clip = (torch.from_numpy(lo).to(dev), torch.from_numpy(hi).to(dev))
        sampler = make_sampler(dcfg, self.m.schedule, clip_sample=clip)
        fn = guided_model_fn(self.m.model, cond, dcfg.guidance)
        x = sample(fn, (N, self.horizon, self.build["act_dim"]), sampler, generator=generator,
                   device=dev)
        return np.clip(nz.unnormalize(keys.ACTION, x.float().cpu().numpy()), -1.0, 1.0)


def load_planner(path: str | Path, *, device: str | torch.device = "cpu",
                 ema: bool = True) -> Planner:
    """A ready-to-plan `Planner` from a checkpoint (folder, run folder or file)."""
    return Planner(load_model(path, device=device, ema=ema), device=device)
