"""The training step, EMA and checkpoints: plain PyTorch, used by Ray Train and by benchmarks.

A checkpoint is one file, ``checkpoint.pt``, holding only tensors, numbers and strings so
it loads with ``torch.load(weights_only=True)``:

    model, ema        state dicts (EMA weights are what planning and synthesis use)
    optimizer         Adam's state dict
    step              int, optimisation steps done
    meta              JSON text: config, model build arguments, task names, normaliser
                      statistics, dataset path and hash, prompt-set location
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtdiff import keys
from mtdiff.config import Config, to_dict
from mtdiff.data.io import atomic_write
from mtdiff.data.normalize import Normalizer
from mtdiff.data.prompts import load_prompts
from mtdiff.data.reader import load_dataset
from mtdiff.data.windows import WindowSampler
from mtdiff.diffusion import DiffusionSchedule
from mtdiff.models import build_model, sample_return_drop

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable; the message says where and what to do."""


@dataclass
class TrainSetup:
    """Everything a training process builds from a config and a dataset."""

    model: nn.Module
    sampler: WindowSampler
    normalizer: Normalizer
    schedule: DiffusionSchedule
    meta: dict[str, Any]


def build_setup(cfg: Config, data_dir: str | Path, *, seed: int = 0,
                batch_per_task: int | None = None) -> TrainSetup:
    """Load the dataset view and prompts, build the window sampler and the noise model."""
    ds = load_dataset(data_dir, view=cfg.data.view)
    normalizer = Normalizer(ds.stats, cfg.data.normalizer)
    history = cfg.data.history_for(ds.suite) if ds.suite in ("metaworld", "maze2d") else (
        cfg.data.history or 2)
    fields = "synth" if cfg.model.kind == "mtdiff-s" else "planner"
    prompt = prompt_kind(cfg, ds.suite)
    build: dict[str, Any] = {"obs_dim": ds.obs_dim, "act_dim": ds.act_dim,
                             "horizon": cfg.data.horizon, "history": history,
                             "prompt_len": cfg.data.prompt_len, "num_tasks": len(ds.task_names)}
    if prompt["kind"] == "layout":
        from mtdiff.envs.maze2d_layout import LAYOUT_DIM, layout_prompts, manifest_maps

        maps = manifest_maps(ds.manifest, ds.task_names)
        prompts = layout_prompts(maps)
        prompt["shape"] = list(maps[0].shape)
        build["prompt_len"] = next(iter(prompts.values())).shape[1]  # J = the map's cells
        build["prompt_dim"] = LAYOUT_DIM
    else:
        prompts = load_prompts(data_dir)
    sampler = WindowSampler(
        ds, prompts, normalizer, horizon=cfg.data.horizon, history=history,
        prompt_len=build["prompt_len"], batch_per_task=batch_per_task or cfg.data.batch_per_task,
        return_scale=cfg.data.return_scale, return_discount=cfg.data.return_discount,
        fields=fields, seed=seed, normalize_prompts=prompt["kind"] == "demo")
    model = build_model(cfg.model, **build)
    meta = {
        "config": to_dict(cfg), "build": build, "kind": cfg.model.kind,
        "suite": ds.suite, "tasks": ds.task_names, "normalizer": normalizer.state_dict(),
        "dataset": {"path": str(Path(data_dir).resolve()),
                    "hash": ds.manifest["config_hash"], "view": cfg.data.view},
        "prompts": str((Path(data_dir) / "prompts.parquet").resolve()),
        "prompt": prompt, "returns": sampler.return_info,
    }
    return TrainSetup(model, sampler, normalizer, DiffusionSchedule.from_config(cfg.diffusion),
                      meta)


def prompt_kind(cfg: Config, suite: str) -> dict[str, Any]:
    """The prompt a model of `cfg` trained on `suite` gets: {"kind": "demo" | "layout"}.

    `data.prompt_kind = "layout"` applies to the Maze2D planner only (Meta-World has no
    layout and MTDiff-P-onehot no prompt: they keep "demo"); MTDiff-S on Maze2D with it is
    an error, since synthesis is prompted by demonstrations.
    """
    if cfg.data.prompt_kind != "layout" or suite != "maze2d" or \
            cfg.model.kind == "mtdiff-p-onehot":
        return {"kind": "demo"}
    if cfg.model.kind == "mtdiff-s":
        raise ValueError("data.prompt_kind=layout is for the MTDiff-P planner on Maze2D; "
                         "MTDiff-S is prompted by demonstrations (set data.prompt_kind=demo)")
    return {"kind": "layout"}


def to_torch(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """numpy batch -> tensors on `device` (task ids int64, everything else float32)."""
    return {k: torch.from_numpy(v).to(device, non_blocking=True) for k, v in batch.items()}


def diffusion_step_loss(model: nn.Module, schedule: DiffusionSchedule,
                        batch: dict[str, torch.Tensor], cfg: Config,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """One DDPM training loss (paper eq. 10 / 11) on a batch from `WindowSampler`.

    x0 is the batch's actions (MTDiff-P) or transitions (MTDiff-S); k ~ U{0..K-1};
    R is dropped with probability `diffusion.cond_drop` (MTDiff-P); positions past an
    episode's end (mask 0) do not count.
    """
    core = model.module if hasattr(model, "module") else model
    x0 = batch[core.x_key] if hasattr(core, "x_key") else batch[keys.BATCH_ACTIONS]
    B = x0.shape[0]
    k = schedule.sample_steps(B, device=x0.device)
    noise = torch.randn_like(x0)
    xk = schedule.add_noise(x0, noise, k)
    drop = None
    if getattr(core, "uses_return", False):
        drop = sample_return_drop(B, cfg.diffusion.cond_drop, device=x0.device)
    cond = {key: batch[key] for key in core.cond_keys if key in batch}
    eps = model(xk, k, cond, drop)
    huber = cfg.train.loss == "huber"  # authors' variant: Huber, first action x10
    return schedule.loss(eps, noise, batch.get(keys.BATCH_MASK), kind=cfg.train.loss,
                         first_weight=10.0 if huber else 1.0)


class EMA:
    """Exponential moving average of a model's weights (decay `TrainConfig.ema_decay`)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights (buffers copied)."""
        src = dict(model.named_parameters())
        for name, p in self.shadow.named_parameters():
            p.lerp_(src[name].detach().to(p.dtype), 1.0 - self.decay)
        for (_, b), (_, sb) in zip(model.named_buffers(), self.shadow.named_buffers(),
                                   strict=True):
            sb.copy_(b)


def save_checkpoint(path: str | Path, *, model: nn.Module, ema: EMA,
                    optimizer: torch.optim.Optimizer, step: int, meta: dict[str, Any]) -> Path:
    """Write ``checkpoint.pt`` atomically into folder `path`."""
    core = model.module if hasattr(model, "module") else model
    state = {"model": core.state_dict(), "ema": ema.shadow.state_dict(),
             "optimizer": optimizer.state_dict(), "step": int(step), "meta": json.dumps(meta)}
    out = Path(path) / CHECKPOINT_FILE
    atomic_write(out, lambda tmp: torch.save(state, tmp))
    return out


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a folder holding ``checkpoint.pt``, or the file) without pickle."""
    p = Path(path)
    f = p / CHECKPOINT_FILE if p.is_dir() else p
    if not f.exists():
        raise CheckpointError(f"no checkpoint at {path} (expected {f}); train one with "
                              "`python pipelines/train.py ... --out DIR` and pass DIR or the "
                              "checkpoint folder it prints")
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{f} cannot be read as a checkpoint ({type(e).__name__}: {e}); "
                              "it is damaged or not an mtdiff checkpoint") from None
    missing = [k for k in ("model", "ema", "step", "meta") if k not in state]
    if missing:
        raise CheckpointError(f"{f} lacks {missing}: not an mtdiff checkpoint")
    state["meta"] = json.loads(state["meta"])
    return state


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
    from mtdiff.config import from_dict
    from mtdiff.train.stage import find_checkpoint

    state = load_checkpoint(find_checkpoint(path), map_location=device)
    meta = state["meta"]
    cfg = from_dict(meta["config"])
    model = build_model(cfg.model, **meta["build"])
    model.load_state_dict(state["ema" if ema else "model"])
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(model, Normalizer.from_state_dict(meta["normalizer"]),
                       DiffusionSchedule.from_config(cfg.diffusion).to(device), cfg, meta,
                       int(state["step"]))
