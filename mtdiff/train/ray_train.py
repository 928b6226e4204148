"""Training on Ray Train (V2): `train_loop_per_worker` + a function that builds the trainer.

DDP over GPUs when the *cluster* has them (decided from `ray.cluster_resources()`; the
driver may sit on a CPU-only head), CPU workers otherwise. Every worker samples its own
per-task balanced windows; the paper's batch of M windows per task is split over the
workers (ceil(M / workers) each). Checkpoints go through `ray.train.report`; a failed
worker group restarts from the latest one (`FailureConfig`), and running the same
command again (same output folder and run name) resumes from it too.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from mtdiff.artifacts import Checkpoint, CheckpointError
from mtdiff.config import Config, config_hash, from_dict, to_dict
from mtdiff.runtime import cluster_gpus, duration, largest_node, pause_for_tests, set_torch_threads
from mtdiff.tracking import RunLogger
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner

CHECKPOINT_TMP = "mtdiff-ckpt-"  # + host-pid-: a checkpoint's folder before Ray copies it


def checkpoint_tmpdir() -> tempfile.TemporaryDirectory:
    """The temporary folder a worker writes a checkpoint into before `ray.train.report`
    copies it to storage, named after its host and process: a worker killed meanwhile
    (SIGKILL, preemption) leaves it behind, and the next worker on that node removes it
    (`remove_stale_checkpoint_tmp`) instead of letting checkpoints pile up in /tmp."""
    return tempfile.TemporaryDirectory(
        prefix=f"{CHECKPOINT_TMP}{socket.gethostname()}-{os.getpid()}-")


def remove_stale_checkpoint_tmp(tmp: str | Path | None = None) -> list[Path]:
    """Delete the checkpoint folders (`checkpoint_tmpdir`) in `tmp` (default: the temporary
    directory) whose process on this host is gone; returns them."""
    host = socket.gethostname()
    prefix = f"{CHECKPOINT_TMP}{host}-"
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob(f"{prefix}*"):
        pid = d.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _resume_state(loop_cfg: dict[str, Any], device: torch.device) -> dict[str, Any] | None:
    """The state to start from: the later of Ray's own restore (a worker group restarted
    within this fit, or Ray's recorded run state) and the driver's pick from disk (after
    the driver was killed, Ray's run state may lag a checkpoint already in storage).
    Either may be damaged (a kill while Ray copied it): an unreadable one is skipped, so
    the newest *readable* checkpoint wins wherever it was looked up."""
    import ray.train

    candidates = []
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        try:
            with ckpt.as_directory() as d:
                candidates.append(Checkpoint.read(d))
        except CheckpointError as e:
            print(f"[train] Ray's latest checkpoint is unreadable, not resuming from it: {e}",
                  flush=True)
    if loop_cfg.get("resume_from"):
        try:
            candidates.append(Checkpoint.read(loop_cfg["resume_from"]))
        except CheckpointError as e:
            print(f"[train] {e}", flush=True)
    return max(candidates, key=lambda s: int(s["step"]), default=None)


def train_loop_per_worker(loop_cfg: dict[str, Any]) -> None:
    """One Ray Train worker: build, maybe restore, then step / log / checkpoint."""
    import numpy as np
    import ray.train
    import ray.train.torch

    # Ray Train logs every report at INFO from the worker ("Reporting training result", a
    # logger named by its module's file path): the progress line below says the same once.
    from ray.train.v2._internal.execution import context as _ctx

    logging.getLogger(_ctx.__file__).setLevel(logging.WARNING)
    remove_stale_checkpoint_tmp()  # a killed worker's half-written checkpoint folders
    cfg = from_dict(loop_cfg["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    set_torch_threads(int(loop_cfg.get("threads", 1)))
    device = ray.train.torch.get_device()
    per_worker = math.ceil(cfg.data.batch_per_task / world)
    seed = cfg.train.seed * 1000 + rank
    setup = build_setup(cfg, loop_cfg["data_dir"], seed=seed, batch_per_task=per_worker)
    torch.manual_seed(seed)
    learner = build_learner(cfg, setup, device)
    start = 0
    state = _resume_state(loop_cfg, device)
    if state is not None:
        learner.load_state_dict(state)
        start = int(state["step"])
        setup.meta["resumed_from"] = start  # recorded in later checkpoints
        # A fresh sampling stream after a restart (not a replay of the first batches).
        setup.sampler.rng = np.random.default_rng(seed * 100_003 + start)
    learner.prepare(ray.train.torch.prepare_model)  # DDP when world > 1

    tracker = RunLogger(loop_cfg.get("mlflow"), enabled=rank == 0)  # rank 0 logs
    t_last, n_last = time.perf_counter(), start
    sums: dict[str, torch.Tensor] = {}
    n_sum = 0
    for step in range(start + 1, cfg.train.steps + 1):
        out = learner.update(to_torch(setup.sampler.sample(), device))
        for k, v in out.items():
            sums[k] = sums[k] + v if k in sums else v
        n_sum += 1
        is_ckpt = step % cfg.train.checkpoint_every == 0 or step == cfg.train.steps
        if step % cfg.train.log_every == 0 or is_ckpt:
            now = time.perf_counter()
            batch_world = setup.sampler.batch_size * world
            samples = (step - n_last) * batch_world
            # Window means (one host sync per log step, not per step).
            metrics = {k: float(v) / max(n_sum, 1) for k, v in sums.items()}
            metrics["samples_per_s"] = samples / max(now - t_last, 1e-9)
            t_last, n_last, sums, n_sum = now, step, {}, 0
            tracker.log(metrics, step)
            if rank == 0:
                # The latest window's rate: the first window carries compile and warm-up.
                left = (cfg.train.steps - step) * batch_world / metrics["samples_per_s"]
                print(f"[train] step {step}/{cfg.train.steps} loss {metrics['loss']:.4f} "
                      f"{metrics['samples_per_s']:.1f} samples/s, ETA {duration(left)}",
                      flush=True)
        if is_ckpt:
            # Only checkpoints go through ray.train.report: each report waits for the
            # controller's next poll (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s) when the previous
            # one is still queued, so reporting every log step throttled training to that
            # poll rate. Metrics go to MLflow from rank 0 directly.
            with checkpoint_tmpdir() as d:
                if rank == 0:
                    write_checkpoint(d, **learner.state_dict(), step=step, meta=setup.meta)
                ray.train.report({**metrics, "step": step},
                                 checkpoint=ray.train.Checkpoint.from_directory(d)
                                 if rank == 0 else None)
            pause_for_tests("checkpoint_step", step)  # kill tests: wait here to be killed
    tracker.close()


def use_gpu_from_cluster() -> bool:
    """True when the Ray cluster has GPUs (asking for them otherwise hangs forever)."""
    return cluster_gpus() > 0


def default_cpus_per_worker(num_workers: int, gpu: bool) -> int:
    """CPUs a training worker reserves when the config does not say: 2 next to a GPU (data
    sampling, the rest is the GPU's), else the largest node's CPUs split over the workers
    that node would host. Never the cluster's total: a worker runs on one node, and a
    request no node can meet waits forever."""
    if gpu:
        return 2
    node_cpus = largest_node("CPU")
    return max(1, int(node_cpus // max(1, min(num_workers, int(node_cpus)))))


def build_trainer(cfg: Config, data_dir: str | Path, out: str | Path, *,
                  run_name: str | None = None, mlflow_spec: dict[str, str] | None = None,
                  cpus_per_worker: int | None = None, gpus_per_worker: float | None = None,
                  resume_from: str | Path | None = None) -> Any:
    """A `TorchTrainer` for `cfg` on the dataset at `data_dir`, storing under `out`.

    `gpus_per_worker`: on a GPU cluster, a share of a GPU per worker (None: a whole one).

    `resume_from`: a checkpoint folder the workers start from when Ray has none to restore.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    gpu = use_gpu_from_cluster()
    n = cfg.train.num_workers
    cpus = cpus_per_worker or cfg.train.cpus_per_worker or default_cpus_per_worker(n, gpu)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": to_dict(cfg), "data_dir": str(Path(data_dir).resolve()),
                           "threads": cpus, "mlflow": mlflow_spec,
                           "resume_from": str(resume_from) if resume_from else None},
        scaling_config=ScalingConfig(num_workers=n, use_gpu=gpu, resources_per_worker={
            "CPU": cpus, **({"GPU": gpus_per_worker} if gpu and gpus_per_worker else {})}),
        run_config=RunConfig(
            name=run_name or f"train-{cfg.model.kind}-{config_hash(cfg)}",  # stage passes one
            storage_path=str(Path(out).resolve()),
            failure_config=FailureConfig(max_failures=2),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
