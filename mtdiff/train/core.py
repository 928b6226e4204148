"""The training step, the training set-up and loading a trained model: plain PyTorch, used by
Ray Train (`mtdiff.train.ray_train`), by benchmarks and by planning / synthesis.

Checkpoints are written by `mtdiff.train.checkpoints` and looked up and read by
`mtdiff.artifacts.Checkpoint`; the optimisation step of each method is behind
`mtdiff.train.learner.Learner`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtdiff import keys
from mtdiff.artifacts import Checkpoint
from mtdiff.config import SUITES, Config, to_dict
from mtdiff.data.normalize import Normalizer
from mtdiff.data.prompts import load_prompts
from mtdiff.data.reader import load_dataset
from mtdiff.data.windows import WindowSampler
from mtdiff.data.writer import PROMPTS
from mtdiff.diffusion import DiffusionSchedule
from mtdiff.methods import DIFFUSION_KINDS, method_of_kind
from mtdiff.models import build_model, sample_return_drop
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.ema import EMA, unwrap

__all__ = ["EMA", "LoadedModel", "TrainSetup", "build_setup", "diffusion_step_loss",
           "load_model", "save_checkpoint", "to_torch"]


@dataclass
class TrainSetup:
    """Everything a training process builds from a config and a dataset.

    `model` is the noise model for the diffusion methods and None for methods whose
    learner builds its own networks (`mtdiff.methods`).
    """

    model: nn.Module | None
    sampler: WindowSampler
    normalizer: Normalizer
    schedule: DiffusionSchedule
    meta: dict[str, Any]


def build_setup(cfg: Config, data_dir: str | Path, *, seed: int = 0,
                batch_per_task: int | None = None) -> TrainSetup:
    """Load the dataset view and prompts, build the window sampler and the noise model."""
    ds = load_dataset(data_dir, view=cfg.data.view)
    normalizer = Normalizer(ds.stats, cfg.data.normalizer)
    history = cfg.data.history_for(ds.suite) if ds.suite in SUITES else (
        cfg.data.history or 2)

    method = method_of_kind(cfg.model.kind, cfg.model.backbone)
    fields = method.fields
    # Window length: H for the planners; the Decision Transformers' context K (their own
    # sections' `context`).
    horizon = cfg.methods[method.name].context if fields == "sequence" else cfg.data.horizon
    prompt = prompt_kind(cfg, ds.suite)
    build: dict[str, Any] = {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim, "horizon": horizon,
                             "history": history, "prompt_len": cfg.data.prompt_len,
                             "num_tasks": len(ds.task_names)}
    if prompt["kind"] == "layout":
        # (pulls in gymnasium, mujoco: imported on use)
        from mtdiff.envs.maze2d_layout import LAYOUT_DIM, layout_prompts, manifest_maps

        maps = manifest_maps(ds.manifest, ds.task_names)
        prompts = layout_prompts(maps)
        prompt["shape"] = list(maps[0].shape)
        build["prompt_len"] = next(iter(prompts.values())).shape[1]  # J = the map's cells
        build["prompt_dim"] = LAYOUT_DIM
    else:
        prompts = load_prompts(data_dir)
    sampler = WindowSampler(
        ds, prompts, normalizer, horizon=horizon, history=history,
        prompt_len=build["prompt_len"], batch_per_task=batch_per_task or cfg.data.batch_per_task,
        return_scale=cfg.data.return_scale, return_discount=cfg.data.return_discount,
        fields=fields, seed=seed, normalize_prompts=prompt["kind"] == "demo")
    model = build_model(cfg.model, **build) if cfg.model.kind in DIFFUSION_KINDS else None
    meta = {
        "config": to_dict(cfg), "build": build, "kind": cfg.model.kind, "method": method.name,
        "suite": ds.suite, "tasks": ds.task_names, "normalizer": normalizer.state_dict(),
        "dataset": {"path": str(Path(data_dir).resolve()),
                    "hash": ds.manifest["config_hash"], "view": cfg.data.view},
        "prompts": str((Path(data_dir) / PROMPTS).resolve()),
        "prompt": prompt, "returns": sampler.return_info,
    }
    return TrainSetup(model, sampler, normalizer, DiffusionSchedule.from_config(cfg.diffusion),
                      meta)


def prompt_kind(cfg: Config, suite: str) -> dict[str, Any]:
    """The prompt a model of `cfg` trained on `suite` gets: {"kind": "demo" | "layout"}.

    `data.prompt_kind = "layout"` applies to the Maze2D planner MTDiff-P only (Meta-World
    has no layout, MTDiff-P-onehot no prompt, and the baselines are the papers' methods,
    Prompt-DT prompted by demonstrations: they keep "demo"); MTDiff-S on Maze2D with it is
    an error, since synthesis is prompted by demonstrations.
    """
    if cfg.data.prompt_kind != "layout" or suite != "maze2d" or \
            cfg.model.kind not in ("mtdiff-p", "mtdiff-s"):
        return {"kind": "demo"}
    if cfg.model.kind == "mtdiff-s":
        raise ValueError("data.prompt_kind=layout is for the MTDiff-P planner on Maze2D; "
                         "MTDiff-S is prompted by demonstrations (set data.prompt_kind=demo)")
    return {"kind": "layout"}


def to_torch(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """numpy batch -> tensors on `device` (task ids int64, everything else float32)."""
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


def diffusion_step_loss(model: nn.Module, schedule: DiffusionSchedule,
                        batch: dict[str, torch.Tensor], cfg: Config) -> torch.Tensor:
    """One DDPM training loss (paper eq. 10 / 11) on a batch from `WindowSampler`.

    x0 is the batch's actions (MTDiff-P) or transitions (MTDiff-S); k ~ U{0..K-1};
    R is dropped with probability `diffusion.cond_drop` (MTDiff-P); positions past an
    episode's end (mask 0) do not count.
    """
    draws = draw_noise(model, schedule, batch, cfg)
    return diffusion_loss_given(model, schedule, batch, draws, loss_settings(model, cfg))


def draw_noise(model: nn.Module, schedule: DiffusionSchedule, batch: dict[str, torch.Tensor],
               cfg: Config) -> dict[str, torch.Tensor]:
    """The step's random draws: k, the noise and R's drop mask. Drawn outside a compiled
    loss, so compiled and eager steps see the same numbers from the same seed."""
    core = unwrap(model)
    x0 = batch[getattr(core, "x_key", keys.BATCH_ACTIONS)]
    B = x0.shape[0]
    draws = {"k": schedule.sample_steps(B, device=x0.device), "noise": torch.randn_like(x0)}
    if getattr(core, "uses_return", False):
        draws["drop"] = sample_return_drop(B, cfg.diffusion.cond_drop, device=x0.device)
    return draws


def loss_settings(model: nn.Module, cfg: Config) -> dict[str, Any]:
    """`diffusion_loss`'s keyword settings for `model` under `cfg`."""
    # The first position is the executed action only where x is an action sequence.
    plans = getattr(unwrap(model), "x_key", keys.BATCH_ACTIONS) == keys.BATCH_ACTIONS
    return {"kind": cfg.train.loss, "first_weight": cfg.train.action_weight if plans else 1.0}


def diffusion_loss_given(model: nn.Module, schedule: DiffusionSchedule,
                         batch: dict[str, torch.Tensor], draws: dict[str, torch.Tensor],
                         settings: dict[str, Any]) -> torch.Tensor:
    """The DDPM loss for given draws (`draw_noise`): deterministic apart from dropout, the
    part `mtdiff.train.compiled` compiles."""
    core = unwrap(model)
    x0 = batch[getattr(core, "x_key", keys.BATCH_ACTIONS)]
    xk = schedule.add_noise(x0, draws["noise"], draws["k"])
    cond = {key: batch[key] for key in core.cond_keys if key in batch}
    eps = model(xk, draws["k"], cond, draws.get("drop"))
    return schedule.loss(eps, draws["noise"], batch.get(keys.BATCH_MASK), **settings)


def save_checkpoint(path: str | Path, *, model: nn.Module, ema: EMA,
                    optimizer: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> Path:
    """Write ``checkpoint.pt`` atomically into folder `path` from a diffusion model, its EMA
    and optimiser (`mtdiff.train.checkpoints.write_checkpoint` takes state dicts)."""
    return write_checkpoint(path, model=unwrap(model).state_dict(), ema=ema.shadow.state_dict(),
                            optimizer=optimizer.state_dict(), step=step, meta=meta)


@dataclass
class LoadedModel:
    """A trained noise model ready for sampling, with what it needs around it."""

    model: nn.Module
    normalizer: Normalizer
    schedule: DiffusionSchedule
    cfg: Config
    meta: dict[str, Any]
    step: int


def load_model(path: str | Path, *, device: str | torch.device = "cpu",
               ema: bool = True) -> LoadedModel:
    """Rebuild the model of a checkpoint (EMA weights by default) in eval mode."""
    ckpt = Checkpoint.find(path)
    state, meta, cfg = ckpt.state, ckpt.meta, ckpt.config
    model = build_model(cfg.model, **meta["build"])
    model.load_state_dict(state["ema" if ema else "model"])
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(model, Normalizer.from_state_dict(meta["normalizer"]),
                       DiffusionSchedule.from_config(cfg.diffusion).to(device), cfg, meta,
                       int(state["step"]))
