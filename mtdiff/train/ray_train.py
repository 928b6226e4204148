"""Training on Ray Train (V2): `train_loop_per_worker` + a function that builds the trainer.

DDP over GPUs when the *cluster* has them (decided from `ray.cluster_resources()`; the
driver may sit on a CPU-only head), CPU workers otherwise. Every worker samples its own
per-task balanced windows; the paper's batch of M windows per task is split over the
workers (ceil(M / workers) each). Checkpoints go through `ray.train.report`; a failed
worker group restarts from the latest one (`FailureConfig`), and running the same
command again (same output folder and run name) resumes from it too.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mtdiff.config import Config, config_hash


def train_loop_per_worker(loop_cfg: dict[str, Any]) -> None:
    """One Ray Train worker: build, maybe restore, then step / log / checkpoint."""
    import ray.train
    import ray.train.torch

    from mtdiff.config import from_dict
    from mtdiff.runtime import pause_for_tests, set_torch_threads
    from mtdiff.train.core import (
        EMA,
        build_setup,
        diffusion_step_loss,
        load_checkpoint,
        save_checkpoint,
        to_torch,
    )

    cfg = from_dict(loop_cfg["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_torch_threads(int(loop_cfg.get("threads", 1)))
    device = ray.train.torch.get_device()
    per_worker = math.ceil(cfg.data.batch_per_task / world)
    setup = build_setup(cfg, loop_cfg["data_dir"], seed=cfg.train.seed * 1000 + rank,
                        batch_per_task=per_worker)
    torch.manual_seed(cfg.train.seed * 1000 + rank)
    model = setup.model.to(device)
    ema = EMA(model, cfg.train.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    start = 0
    # Two sources, the later step wins: Ray's own restore (a worker group restarted within
    # this fit, or Ray's recorded run state) and the driver's pick from disk (after the
    # driver was killed, Ray's run state may lag a checkpoint already in storage).
    candidates = []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            candidates.append(load_checkpoint(d, map_location=device))
    if loop_cfg.get("resume_from"):
        candidates.append(load_checkpoint(loop_cfg["resume_from"], map_location=device))
    state = max(candidates, key=lambda s: int(s["step"]), default=None)
    if state is not None:
        model.load_state_dict(state["model"])
        ema.shadow.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        setup.meta["resumed_from"] = start  # recorded in later checkpoints
        # A fresh sampling stream after a restart (not a replay of the first batches).
        setup.sampler.rng = __import__("numpy").random.default_rng(
            (cfg.train.seed * 1000 + rank) * 100_003 + start)
    model = ray.train.torch.prepare_model(model)  # DDP when world > 1
    schedule = setup.schedule.to(device)
    tracker = _RankZeroTracker(loop_cfg.get("mlflow"), rank)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.train.bf16)
    t_last, n_last, loss_sum, loss_n = time.perf_counter(), start, 0.0, 0
    for step in range(start + 1, cfg.train.steps + 1):
        batch = to_torch(setup.sampler.sample(), device)
        with autocast:
            loss = diffusion_step_loss(model, schedule, batch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        ema.update(model.module if hasattr(model, "module") else model)
        loss_sum += loss.detach()
        loss_n += 1
        is_ckpt = step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps
        if step % cfg.train.log_every == 0 or is_ckpt:
            now = time.perf_counter()
            samples = (step - n_last) * setup.sampler.batch_size * world
            metrics = {"loss": float(loss_sum) / max(loss_n, 1), "grad_norm": float(grad_norm),
                       "step": step, "samples_per_s": samples / max(now - t_last, 1e-9)}
            t_last, n_last, loss_sum, loss_n = now, step, 0.0, 0
            tracker.log(metrics, step)
            if rank == 0:
                print(f"[train] step {step}/{cfg.train.steps} loss {metrics['loss']:.4f} "
                      f"{metrics['samples_per_s']:.1f} samples/s", flush=True)
        if is_ckpt:
            # Only checkpoints go through ray.train.report: each report waits for the
            # controller's next poll (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s) when the previous
            # one is still queued, so reporting every log step throttled training to that
            # poll rate. Metrics go to MLflow from rank 0 directly.
            with tempfile.TemporaryDirectory() as d:
                if rank == 0:
                    save_checkpoint(d, model=model, ema=ema, optimizer=optimizer, step=step,
                                    meta=setup.meta)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                                 if rank == 0 else None)
            pause_for_tests("checkpoint_step", step)  # kill tests: wait here to be killed
    tracker.close()


class _RankZeroTracker:
    """MLflow logging from rank 0 into a run the driver created (with system metrics)."""

    def __init__(self, spec: dict[str, str] | None, rank: int) -> None:
        self.active = spec is not None and rank == 0
        if self.active:
            import mlflow

            mlflow.set_tracking_uri(spec["uri"])
            mlflow.start_run(run_id=spec["run_id"], log_system_metrics=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.active:
            import mlflow

            mlflow.log_metrics({k: v for k, v in metrics.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.active:
            import mlflow

            mlflow.end_run()


def use_gpu_from_cluster() -> bool:
    """True when the Ray cluster has GPUs (asking for them otherwise hangs forever)."""
    from mtdiff.runtime import cluster_gpus

    return cluster_gpus() > 0


def build_trainer(cfg: Config, data_dir: str | Path, out: str | Path, *,
                  run_name: str | None = None, mlflow_spec: dict[str, str] | None = None,
                  cpus_per_worker: int | None = None,
                  resume_from: str | Path | None = None) -> Any:
    """A `TorchTrainer` for `cfg` on the dataset at `data_dir`, storing under `out`.

    `resume_from`: a checkpoint folder the workers start from when Ray has none to restore.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from mtdiff.config import to_dict
    from mtdiff.runtime import cluster_cpus

    gpu = use_gpu_from_cluster()
    n = cfg.train.num_workers
    cpus = (cpus_per_worker or cfg.train.cpus_per_worker
            or max(1, int(cluster_cpus() // n) if not gpu else 2))
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": to_dict(cfg), "data_dir": str(Path(data_dir).resolve()),
                           "threads": cpus, "mlflow": mlflow_spec,
                           "resume_from": str(resume_from) if resume_from else None},
        scaling_config=ScalingConfig(num_workers=n, use_gpu=gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=run_name or f"train-{cfg.model.kind}-{config_hash(cfg)}",  # stage passes one
            storage_path=str(Path(out).resolve()),
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
