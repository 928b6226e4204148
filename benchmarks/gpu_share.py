"""GPU sharing: the summed training throughput of 1, 2 and 4 trainings on one GPU.

Measures what `experiment.gpu_share_*` bets on: that jobs leaving a GPU mostly idle (small
models, small batches) run side by side on one GPU at close to their lone speed each.
Every training is a process of its own, as Ray runs the jobs that share a GPU (their CUDA
contexts take turns on the GPU; no MPS), stepping the project's update on random batches
of the datasets' shapes:

- mtdiff-p/400: the paper's MTDiff-P at the paper's batch (8 x 50 tasks): a whole GPU in
  the grid;
- mtdiff-p/80: the same model at Fig. 7's 10-task batch (8 x 10): a small-batch share;
- td3bc/256: TD3-BC's update (256-wide MLPs, batch 256): the offline jobs' share, and
  the size class of the MLP baselines.

For each workload and each concurrency n, n processes build their training, warm up,
meet at a barrier, step for --seconds and report their steps; a row gives the summed
samples/s, the mean per process, and the sum over the lone process's. Torch, numpy and
pyarrow only (no Ray, MLflow, MuJoCo). Run from the repository root:

    PYTHONPATH=. python benchmarks/gpu_share.py [--concurrency 1 2 4] [--seconds 20]
    PYTHONPATH=. python benchmarks/gpu_share.py --tiny --seconds 1   # CPU: checks the script

`--set section.field=value` changes the paper config (e.g. `--set train.tf32=false`).
Workloads stop starting when `--budget` minutes would be passed. The last line is one
JSON object: {"device", "rows": [...], "summed_speedup": {workload: {n: ratio}}}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch

from mtdiff import keys

OBS, ACT, H, J, L = 39, 4, 32, 20, 2  # Meta-World widths, the paper's H, J, L
WORKLOADS = {"mtdiff-p/400": ("mtdiff-p", 400), "mtdiff-p/80": ("mtdiff-p", 80),
             "td3bc/256": ("td3bc", 256)}


def sync(dev: torch.device) -> None:
    """Wait for the device (CUDA timings are otherwise launch times)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def diffusion_step(batch: int, dev: torch.device, tiny: bool,
                   overrides: list[str]) -> Callable[[], Any]:
    """One `DiffusionLearner.update` (loss, backward, clipping, Adam, EMA) of MTDiff-P on
    a fixed random batch of `batch` windows."""
    from mtdiff.config import ModelConfig, apply_overrides, get_preset
    from mtdiff.diffusion import DiffusionSchedule
    from mtdiff.models import build_model
    from mtdiff.train.core import TrainSetup
    from mtdiff.train.learner import DiffusionLearner

    cfg = apply_overrides(get_preset("paper"), overrides)
    mcfg = ModelConfig(d_model=32, n_layer=1, n_head=2) if tiny else cfg.model
    model = build_model(mcfg, obs_dim=OBS, act_dim=ACT, horizon=H, history=L, prompt_len=J,
                        num_tasks=50)
    setup = TrainSetup(model, None, None, DiffusionSchedule.from_config(cfg.diffusion), {})  # type: ignore[arg-type]
    learner = DiffusionLearner(cfg, setup, dev)
    data = {keys.BATCH_ACTIONS: torch.randn(batch, H, ACT, device=dev),  # (B, H, act)
            keys.BATCH_HISTORY: torch.randn(batch, L, OBS, device=dev),  # (B, L, obs)
            keys.BATCH_PROMPT: torch.randn(batch, J, OBS + ACT, device=dev),  # (B, J, obs+act)
            keys.BATCH_RETURN: torch.rand(batch, 1, device=dev),  # (B, 1)
            keys.BATCH_MASK: torch.ones(batch, H, device=dev)}  # (B, H)
    return lambda: learner.update(data)


def td3bc_step(batch: int, dev: torch.device, tiny: bool,
               overrides: list[str]) -> Callable[[], Any]:
    """One TD3-BC update on a batch sampled from 100k random transitions on the device."""
    from mtdiff.config import OfflineConfig
    from mtdiff.offline.td3bc import TD3BC

    agent = TD3BC(OBS, ACT, OfflineConfig(hidden=32 if tiny else 256, batch_size=batch),
                  device=dev, seed=0)
    n = 100_000
    buf = {"obs": torch.randn(n, OBS, device=dev), "act": torch.rand(n, ACT, device=dev) * 2 - 1,
           "rew": torch.randn(n, device=dev), "next_obs": torch.randn(n, OBS, device=dev),
           "done": torch.zeros(n, device=dev)}

    def step() -> Any:
        i = torch.randint(n, (batch,), device=dev, generator=agent.gen)
        return agent._update({k: v[i] for k, v in buf.items()})

    return step


def _worker(work: str, device: str, tiny: bool, seconds: float, warmup: int,
            overrides: list[str], barrier: Any, queue: Any) -> None:
    """One training process: build, warm up, meet the others, step for `seconds`."""
    try:
        torch.set_num_threads(1)  # a Ray task's one CPU; n processes share the host
        dev = torch.device(device)
        kind, batch = WORKLOADS[work]
        make = diffusion_step if kind == "mtdiff-p" else td3bc_step
        step = make(batch, dev, tiny, overrides)
        for _ in range(warmup):
            step()
        sync(dev)
        barrier.wait(timeout=600)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            step()
            n += 1
        sync(dev)
        queue.put(("ok", n * batch / (time.perf_counter() - t0)))
    except Exception as e:  # noqa: BLE001 - reported as the row's result
        barrier.abort()
        queue.put(("error", f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"))


def measure(work: str, n: int, device: str, tiny: bool, seconds: float, warmup: int,
            overrides: list[str]) -> list[float] | str:
    """Samples/s of each of `n` processes training `work` at once, or an error."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(work, device, tiny, seconds, warmup, overrides,
                                               barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=900) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    errors = [r for s, r in results if s != "ok"]
    return str(errors[0]) if errors else [float(r) for _, r in results]


def main() -> None:
    """Measure every workload at every concurrency; print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--seconds", type=float, default=20.0, help="timed stepping per process")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation)")
    p.add_argument("--budget", type=float, default=8.0, help="minutes for the whole run")
    p.add_argument("--tiny", action="store_true", help="tiny models (a CPU check)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.FIELD=VALUE", help="change the paper config")
    args = p.parse_args()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {name}; {args.seconds:g} s timed per process after {args.warmup} steps")
    print(f"  {'workload':<14} {'n':>2} {'summed samples/s':>17} {'per process':>12} "
          f"{'vs n=1':>7}")
    end = time.perf_counter() + 60 * args.budget
    rows: list[dict[str, Any]] = []
    speedup: dict[str, dict[int, float]] = {}
    for work in args.workloads:
        lone: float | None = None
        overhead = 60.0  # start-up and warm-up (compilation included), until measured
        for n in sorted(args.concurrency):
            started = time.perf_counter()
            if started + overhead + args.seconds > end:
                rows.append({"workload": work, "n": n, "result": "skipped (budget)"})
                print(f"  {work:<14} {n:>2} skipped (budget)")
                continue
            got = measure(work, n, args.device, args.tiny, args.seconds, args.warmup,
                          args.overrides)
            overhead = time.perf_counter() - started - args.seconds
            if isinstance(got, str):
                rows.append({"workload": work, "n": n, "result": got})
                print(f"  {work:<14} {n:>2} {got}")
                continue
            total = sum(got)
            lone = total if n == 1 else lone
            ratio = total / lone if lone else None
            if ratio is not None:
                speedup.setdefault(work, {})[n] = round(ratio, 3)
            rows.append({"workload": work, "n": n, "summed_samples_per_s": round(total, 1),
                         "per_process": [round(x, 1) for x in got],
                         "vs_one": ratio and round(ratio, 3),
                         "wall_s": round(time.perf_counter() - started, 1)})
            print(f"  {work:<14} {n:>2} {total:>17.1f} {total / n:>12.1f} "
                  f"{'' if ratio is None else f'{ratio:.2f}x':>7}")
    print(json.dumps({"device": name, "seconds": args.seconds, "tiny": args.tiny,
                      "overrides": args.overrides, "rows": rows, "summed_speedup": speedup}))


if __name__ == "__main__":
    main()
