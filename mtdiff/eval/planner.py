"""MTDiff-P as a policy: denoise an action sequence, execute its first action (Alg. 1).

`Planner.plan` takes raw (un-normalised) states and prompts for N environments at once
and makes one batched denoising call for all of them; guidance doubles the batch (the
conditional and unconditional branches run together).

A distilled student (`mtdiff.train.distill`; its checkpoint meta has ``student``) plans
through the same call: its own few DDIM steps, one unguided network call each (guidance
is distilled into it). `diffusion.compile` selects the fixed-shape compiled loop
(`mtdiff.diffusion.compiled`); its engines and the loaded model are kept per process, so
an evaluation worker that runs many jobs compiles once (`Planner.compile_seconds`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff import keys
from mtdiff.artifacts import Checkpoint
from mtdiff.config import DiffusionConfig
from mtdiff.data.prompts import load_prompts
from mtdiff.data.windows import checkpoint_return_info, resolve_target
from mtdiff.diffusion import DDIMSampler, guided_model_fn, make_sampler, sample
from mtdiff.diffusion.compiled import engines_of, fast_sampler, resolve_mode
from mtdiff.diffusion.distill import StudentNet, StudentSpec
from mtdiff.diffusion.samplers import ClipRange, Sampler
from mtdiff.runtime import matmul_tf32
from mtdiff.train.core import LoadedModel, load_model

# Loaded checkpoints of this process, newest last: (path, mtime, device, ema) -> model.
_LOADED: dict[tuple[str, int, str, bool], LoadedModel] = {}
_LOADED_MAX = 4


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
        student = loaded.meta.get("student")
        self.student = StudentSpec.from_meta(student) if student else None
        # The network the sampler calls: the student read as an ε-model (one object per
        # loaded model, so the compiled engines keyed on it are found again).
        self.net = loaded.model
        if self.student is not None:
            self.net = _student_net(loaded, self.student.param)
        self._clip_range: tuple[torch.Tensor, torch.Tensor] | None = None

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
        # (pulls in gymnasium, mujoco: imported on use)
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
        sampler, guidance = self._sampler(dcfg)
        shape = (N, self.horizon, self.build["act_dim"])
        mode = resolve_mode(dcfg.compile, dev)
        with matmul_tf32(dcfg.tf32, dev):
            if mode is None:
                x = sample(guided_model_fn(self.net, cond, guidance), shape, sampler,
                           generator=generator, device=dev)
            else:  # a CUDA graph keeps the matmul kernels it was captured with: tf32 in its key
                engine = fast_sampler(self.net, sampler, guidance=guidance, mode=mode,
                                      device=dev, tf32=dcfg.tf32)
                x = engine(cond, shape, generator=generator)
        return np.clip(nz.unnormalize(keys.ACTION, x.float().cpu().numpy()), -1.0, 1.0)

    def _clip(self, dcfg: DiffusionConfig) -> ClipRange:
        """x̂_0 bounds when `dcfg.clip_denoised`: the data's normalised action range, (act_dim,)
        tensors each (built once per planner)."""
        if not dcfg.clip_denoised:
            return None
        if self._clip_range is None:
            lo, hi = self.m.normalizer.normalized_bounds(keys.ACTION)  # (act_dim,) each
            self._clip_range = (torch.from_numpy(lo).to(self.device),
                                torch.from_numpy(hi).to(self.device))
        return self._clip_range

    def _sampler(self, dcfg: DiffusionConfig) -> tuple[Sampler, float | None]:
        """(sampler, guidance α) for a plan: the config's, or the student's own steps."""
        if self.student is None:
            return make_sampler(dcfg, self.m.schedule, clip_sample=self._clip(dcfg)), \
                dcfg.guidance
        s = self.student
        if (dcfg.guidance, dcfg.temperature) != (s.guidance, s.temperature):
            raise ValueError(
                f"this student was distilled at guidance {s.guidance}, temperature "
                f"{s.temperature}; plan with those, or distil again with --set "
                f"diffusion.guidance={dcfg.guidance} diffusion.temperature={dcfg.temperature}")
        # diffusion.sampler / sample_steps / clip_denoised do not apply: the student's steps
        # are its own (distilled from the teacher's unclipped DDIM, `teacher_states`).
        return DDIMSampler(self.m.schedule, s.steps, temperature=s.temperature), None

    def describe(self, diffusion: DiffusionConfig | None = None) -> dict[str, object]:
        """How a plan is made: sampler, steps, network calls per plan, batch rows per call."""
        dcfg = diffusion or self.m.cfg.diffusion
        sampler, guidance = self._sampler(dcfg)
        guided = guidance is not None and guidance not in (0.0, 1.0)
        return {"sampler": type(sampler).__name__, "steps": sampler.num_inference_steps,
                "network_calls_per_plan": sampler.num_inference_steps,
                "rows_per_env": 2 if guided else 1, "student": self.student is not None,
                "compile": dcfg.compile,
                "clip_denoised": self.student is None and dcfg.clip_denoised}

    @property
    def compile_seconds(self) -> float:
        """Seconds this process spent so far compiling / capturing for this model."""
        return sum(e.compile_seconds for e in engines_of(self.net))


# Student wrappers per loaded model (bounded like `_LOADED`): id(model) -> (model, net).
_STUDENT_NETS: dict[int, tuple[torch.nn.Module, StudentNet]] = {}


def _student_net(loaded: LoadedModel, param: str) -> StudentNet:
    """One `StudentNet` per loaded student model (engines are cached on it)."""
    hit = _STUDENT_NETS.get(id(loaded.model))
    if hit is None or hit[0] is not loaded.model:
        while len(_STUDENT_NETS) >= 2 * _LOADED_MAX:
            _STUDENT_NETS.pop(next(iter(_STUDENT_NETS)))
        net = StudentNet(loaded.model, loaded.schedule, param).to(
            loaded.schedule.betas.device).eval()
        hit = _STUDENT_NETS[id(loaded.model)] = (loaded.model, net)
    return hit[1]


def load_planner(path: str | Path, *, device: str | torch.device = "cpu",
                 ema: bool = True, cache: bool = True) -> Planner:
    """A ready-to-plan `Planner` from a checkpoint (folder, run folder or file).

    cache: reuse this process's loaded model of the same checkpoint file (same path and
    modification time), so compiled engines built for it are reused; the `Planner`
    (prompts) is new on every call.
    """
    if not cache:
        return Planner(load_model(path, device=device, ema=ema), device=device)
    f = Checkpoint.find(path).file
    key = (str(f), f.stat().st_mtime_ns, str(device), ema)
    if key not in _LOADED:
        while len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_model(f.parent, device=device, ema=ema)
    return Planner(_LOADED[key], device=device)
