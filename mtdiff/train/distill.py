"""The distillation stage: a few-step student of a trained MTDiff-P (`mtdiff.diffusion.distill`).

`run(cfg, teacher=..., data=..., out=...)` is idempotent: the run folder is named by the
teacher checkpoint and the distillation settings; a finished run is skipped, an
unfinished one resumes from its latest checkpoint (the teacher's trajectories are kept
on disk, so they are not sampled again). The student's checkpoint is an ordinary
`checkpoint.pt` (tensors only) whose meta carries ``student`` (steps, teacher path,
method, α, β), so `mtdiff.load_planner` plans with it through `Planner.plan`.
Next to the checkpoint folders, ``distill.json`` records the result.

Single process, plain PyTorch (no Ray Train): the student is the teacher's size and its
batches are small; on a GPU machine it runs on the GPU.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff import keys, tracking
from mtdiff.artifacts import Checkpoint, Inputs
from mtdiff.config import Config, flatten, from_dict, to_dict
from mtdiff.data.io import atomic_write, atomic_write_json
from mtdiff.data.windows import checkpoint_return_info, resolve_target
from mtdiff.diffusion.distill import (
    CITATION,
    StudentNet,
    StudentSpec,
    distill_loss,
    distill_targets,
    plan_error,
    student_sample,
    teacher_ddim,
    teacher_states,
)
from mtdiff.layout import distill_run_name
from mtdiff.runtime import matmul_tf32
from mtdiff.train.compiled import adam, clip_grad_norm, compile_fn, step_mode
from mtdiff.train.core import EMA, build_setup, load_model, save_checkpoint

RESULT_FILE = "distill.json"
TRAJ_FILE = "teacher-trajectories.pt"
COND_KEYS = (keys.BATCH_PROMPT, keys.BATCH_TASK_ID, keys.BATCH_HISTORY, keys.BATCH_RETURN)


def run_name(cfg: Config, teacher_ckpt: Path, teacher_step: int) -> str:
    """Folder name: the teacher checkpoint and everything that shapes the student."""
    d = cfg.diffusion
    return distill_run_name({"teacher": str(teacher_ckpt), "step": teacher_step,
                             "distill": cfg.distill, "guidance": d.guidance,
                             "temperature": d.temperature,
                             "target_return": cfg.eval.target_return})


def _conditions(sampler: Any, n: int, target: float, p_target: float,
                rng: np.random.Generator, cond_keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """n conditions from training windows; a share p_target asks for R = target."""
    parts: dict[str, list[np.ndarray]] = {}
    got = 0
    while got < n:
        b = sampler.sample()
        for k in cond_keys:
            if k in b:
                parts.setdefault(k, []).append(b[k])
        got += len(b[keys.BATCH_TASK_ID])
    cond = {k: torch.from_numpy(np.concatenate(v)[:n]) for k, v in parts.items()}
    if keys.BATCH_RETURN in cond:
        use_target = torch.from_numpy(rng.random(n) < p_target)
        cond[keys.BATCH_RETURN] = torch.where(use_target[:, None], torch.tensor(float(target)),
                                              cond[keys.BATCH_RETURN].float())
    return cond


def _trajectories(teacher: Any, cond: dict[str, torch.Tensor], spec: StudentSpec, *,
                  batch: int, seed: int, device: torch.device) -> torch.Tensor:
    """Teacher states (n + 1, N, H, D) for N conditions, sampled in chunks (CPU tensor)."""
    N = len(next(iter(cond.values())))
    act_dim, H = int(teacher.meta["build"]["act_dim"]), int(teacher.meta["build"]["horizon"])
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for i in range(0, N, batch):
        c = {k: v[i:i + batch].to(device) for k, v in cond.items()}
        n = len(next(iter(c.values())))
        out.append(teacher_states(teacher.model, teacher.schedule, c, (n, H, act_dim), spec,
                                  generator=gen, device=device).cpu())
        print(f"[distill] teacher trajectories {min(i + batch, N)}/{N}", flush=True)
    return torch.cat(out, dim=1)


def _validate(teacher: Any, student: StudentNet, val: dict[str, torch.Tensor], spec: StudentSpec,
              device: torch.device, seed: int) -> dict[str, float]:
    """Student (n steps) and teacher DDIM-n against the teacher's DDIM-`teacher_steps` plans."""
    cond = {k: v.to(device) for k, v in val["cond"].items()}
    ref = val["states"][-1].to(device)
    shape = tuple(ref.shape)

    def gen() -> torch.Generator:  # x_K of the reference trajectories
        return torch.Generator(device=device).manual_seed(seed)

    x = student_sample(student, teacher.schedule, cond, shape, spec, generator=gen(),
                       device=device)
    base = teacher_ddim(teacher.model, teacher.schedule, cond, shape, spec, spec.steps,
                        generator=gen(), device=device)
    s, b = plan_error(x, ref), plan_error(base, ref)
    return {"val_rmse": s["rmse"], "val_first_action_rmse": s["first_action_rmse"],
            "teacher_ddim_n_rmse": b["rmse"],
            "teacher_ddim_n_first_action_rmse": b["first_action_rmse"]}


def _latest(run_dir: Path) -> Checkpoint | None:
    return Checkpoint.latest(run_dir) if run_dir.exists() else None


def run(cfg: Config, inputs: Inputs, out: Path) -> Checkpoint:
    """Distil the teacher `inputs.model` into a `cfg.distill.student_steps`-step student.

    inputs.model: an MTDiff-P (or -P-onehot) checkpoint; inputs.data: its training
    dataset (prompts, histories and returns are drawn from it); out: where the run folder
    goes. Uses `cfg.distill`, `cfg.diffusion.guidance` / `temperature` (the teacher's
    sampling to copy), `cfg.eval.target_return`, `cfg.tracking`; the network is the
    teacher's own (its checkpoint's config). On a GPU when there is one.
    Returns the student's checkpoint (an existing one when already finished).
    """
    dc = cfg.distill
    teacher_ckpt = inputs.need("model")
    data = inputs.need("data").path
    t_ckpt, meta = teacher_ckpt.path, teacher_ckpt.meta
    if meta["kind"] not in ("mtdiff-p", "mtdiff-p-onehot") or "student" in meta:
        what = "a student already" if "student" in meta else meta["kind"]
        raise ValueError(f"{t_ckpt} is {what}; distil an MTDiff-P teacher checkpoint")
    name = run_name(cfg, t_ckpt, teacher_ckpt.step)
    run_dir = Path(out).resolve() / name
    latest = _latest(run_dir)
    if latest is not None and latest.step >= dc.steps and (run_dir / RESULT_FILE).exists():
        print(f"[distill] {run_dir} already finished ({dc.steps} steps); skipping")
        return latest
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t_cfg = from_dict(meta["config"])
    tm = load_model(t_ckpt, device=dev)
    spec = StudentSpec(steps=dc.student_steps, teacher_steps=dc.teacher_steps,
                       guidance=cfg.diffusion.guidance, temperature=cfg.diffusion.temperature,
                       param=dc.param)
    grid = spec.timesteps(tm.schedule.num_steps)
    setup = build_setup(t_cfg, data, seed=dc.seed)
    if setup.meta["dataset"]["hash"] != meta["dataset"]["hash"]:
        raise ValueError(f"{data} is not the teacher's training dataset (hash "
                         f"{setup.meta['dataset']['hash']} vs {meta['dataset']['hash']} at "
                         f"{meta['dataset']['path']}); pass that dataset")
    with matmul_tf32(cfg.diffusion.tf32, dev):  # the teacher's plans
        trajs = _teacher_data(tm, setup, cfg, spec, run_dir, dev)

    # The student: the teacher's network and weights, no dropout (`spec.param` says how its
    # output is read).
    s_cfg = dataclasses.replace(
        t_cfg, model=dataclasses.replace(t_cfg.model, dropout=0.0),
        diffusion=dataclasses.replace(t_cfg.diffusion, sampler="ddim",
                                      sample_steps=spec.steps, guidance=spec.guidance,
                                      temperature=spec.temperature),
        distill=dc, eval=cfg.eval, tracking=cfg.tracking)
    net = copy.deepcopy(tm.model).train().requires_grad_(True)
    student = StudentNet(net, tm.schedule, spec.param).to(dev)
    ema = EMA(net, dc.ema_decay)
    mode = step_mode(cfg.train.compile, dev)
    opt = adam(net.parameters(), lr=dc.lr, fast=mode is not None)
    start = 0
    if latest is not None:
        st = latest.state  # (on the CPU: load_state_dict copies to the device)
        net.load_state_dict(st["model"])
        ema.shadow.load_state_dict(st["ema"])
        opt.load_state_dict(st["optimizer"])
        start = int(st["step"])
        print(f"[distill] resuming {run_dir} from step {start}")
    s_meta = {**meta, "config": to_dict(s_cfg),
              "student": {**spec.to_meta(), "teacher": str(t_ckpt),
                          "teacher_step": teacher_ckpt.step, "citation": CITATION,
                          "timesteps": grid}}

    params = {k: v for k, v in flatten(cfg).items()
              if k.startswith(("distill.", "diffusion.", "eval.target_return"))}
    t0 = time.time()
    with tracking.stage_run(cfg, "distill", name=name, output=run_dir,
                            track=cfg.tracking.enabled,
                            params=params, teacher=str(t_ckpt)) as tracked:
        with matmul_tf32(cfg.train.tf32, dev):
            metrics = _train(student, ema, opt, trajs, spec, grid, tm, dc, start, run_dir,
                             s_meta, dev, tracked is not None, mode)
        final = _latest(run_dir)
        assert final is not None
        result = {"checkpoint": str(final.path), "teacher": str(t_ckpt), "method": spec.method,
                  "citation": CITATION, "student_steps": spec.steps,
                  "teacher_steps": spec.teacher_steps, "guidance": spec.guidance,
                  "temperature": spec.temperature, "steps": dc.steps,
                  "seconds_this_run": time.time() - t0, **metrics}
        atomic_write_json(run_dir / RESULT_FILE, result)
        tracking.log_metrics({k: v for k, v in metrics.items() if isinstance(v, float)})
        tracking.log_artifact(run_dir / RESULT_FILE)
        tracking.set_tags({"checkpoint": final.path})
    print(f"[distill] {spec.steps}-step student: val RMSE {metrics['val_rmse']:.4f} vs the "
          f"teacher's DDIM-{spec.steps} {metrics['teacher_ddim_n_rmse']:.4f} -> {final.path}")
    return final


def _teacher_data(tm: Any, setup: Any, cfg: Config, spec: StudentSpec, run_dir: Path,
                  dev: torch.device) -> dict[str, Any]:
    """Training and held-out teacher trajectories: read from the run folder, else sampled."""
    dc = cfg.distill
    f = run_dir / TRAJ_FILE
    if f.exists():
        saved = torch.load(f, map_location="cpu", weights_only=True)
        if saved["states"].shape[1] == dc.samples:
            return {"train": {"cond": saved["cond"], "states": saved["states"]},
                    "val": {"cond": saved["val_cond"], "states": saved["val_states"]}}
    rng = np.random.default_rng(dc.seed)
    ck = tuple(getattr(tm.model, "cond_keys", COND_KEYS))
    target = resolve_target(checkpoint_return_info(tm.meta), cfg.eval.target_return)
    cond = _conditions(setup.sampler, dc.samples + dc.val_samples, target,
                       dc.target_return_prob, rng, ck)
    train = {k: v[:dc.samples] for k, v in cond.items()}
    val = {k: v[dc.samples:] for k, v in cond.items()}
    states = _trajectories(tm, train, spec, batch=dc.teacher_batch, seed=dc.seed, device=dev)
    val_states = _trajectories(tm, val, spec, batch=dc.teacher_batch, seed=dc.seed + 1,
                               device=dev)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {"cond": train, "states": states, "val_cond": val, "val_states": val_states}
    atomic_write(f, lambda tmp: torch.save(payload, tmp))
    return {"train": {"cond": train, "states": states}, "val": {"cond": val, "states": val_states}}


def _train(student: StudentNet, ema: EMA, opt: torch.optim.Optimizer, trajs: dict[str, Any],
           spec: StudentSpec, grid: list[int], tm: Any, dc: Any, start: int, run_dir: Path,
           meta: dict[str, Any], dev: torch.device, track: bool,
           mode: str | None = None) -> dict[str, Any]:
    """The optimisation loop: log, checkpoint (keeping the last two), final validation.
    `mode`: how the step runs (`mtdiff.train.compiled.step_mode`)."""
    states = trajs["train"]["states"]  # (n + 1, N, H, D), CPU
    targets, weights = distill_targets(states, grid, tm.schedule)
    weights = weights.to(dev)
    cond = trajs["train"]["cond"]
    N = states.shape[1]
    gen = torch.Generator().manual_seed(dc.seed * 100_003 + start)  # fresh stream on resume
    eval_student = StudentNet(ema.shadow, tm.schedule, spec.param).to(dev)
    first = _validate(tm, eval_student, trajs["val"], spec, dev, dc.seed + 1) if start == 0 \
        else None
    loss_fn = compile_fn(distill_loss, mode, dev)
    loss_sum, loss_n, t_last = 0.0, 0, time.perf_counter()
    for step in range(start + 1, dc.steps + 1):
        idx = torch.randint(0, N, (min(dc.batch_size, N),), generator=gen)
        loss = loss_fn(student, states[:, idx].to(dev), targets[:, idx].to(dev), weights,
                       {k: v[idx].to(dev) for k, v in cond.items()}, grid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(student.parameters(), 1.0, mode is not None)
        opt.step()
        ema.update(student.model)
        loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
        if step % dc.log_every == 0 or step == dc.steps:
            rate = loss_n / max(time.perf_counter() - t_last, 1e-9)
            print(f"[distill] step {step}/{dc.steps} loss {loss_sum / loss_n:.5f} "
                  f"({rate:.1f} steps/s)", flush=True)
            if track:
                tracking.log_metrics({"loss": loss_sum / loss_n, "steps_per_s": rate}, step=step)
            loss_sum, loss_n, t_last = 0.0, 0, time.perf_counter()
        if step % dc.checkpoint_every == 0 or step == dc.steps:
            ckpt = run_dir / f"checkpoint_{step:09d}"
            ckpt.mkdir(parents=True, exist_ok=True)
            save_checkpoint(ckpt, model=student.model, ema=ema, optimizer=opt, step=step,
                            meta=meta)
            for old in sorted(run_dir.glob("checkpoint_*"))[:-2]:
                shutil.rmtree(old, ignore_errors=True)
            if track:
                tracking.log_metrics(_validate(tm, eval_student, trajs["val"], spec, dev,
                                             dc.seed + 1), step=step)
    final = _validate(tm, eval_student, trajs["val"], spec, dev, dc.seed + 1)
    if first is not None:
        final["init_val_rmse"] = first["val_rmse"]
    return final
