"""GPU check: training and planning throughput of the paper-sized MTDiff-P, in one table.

For a GPU machine lent for ~15 minutes with Python, torch (CUDA), numpy and pyarrow only
(no Ray, MLflow, MuJoCo, Meta-World, gymnasium, scipy, no network): it imports only the
torch parts of `mtdiff` and the timing and model helpers of `planning_speed.py` and
`train_throughput.py` (which import no more), makes its own batches, and stops starting
sections when its time budget (default 8 min) would be passed. Run from the repository
root:

    PYTHONPATH=. python benchmarks/gpu_check.py [--budget 8] [--tiny]

Rows, all measured in this run:
- matmul rate (fp32, tf32, bf16): the yardstick for the GFLOP/s and utilisation columns;
- training steps/s of the paper model and batch (400 = 8 x 50 tasks, H=32, J=20, d=256,
  6 layers) through `DiffusionLearner.update`: fp32, `train.tf32` and `train.bf16`
  (autocast), one process;
- DDP: 2 processes on the one GPU with NCCL (NCCL usually refuses two ranks on one
  device), else gloo, else 1 process; steady steps/s of the whole 400 batch;
- planning latency (guided, α=1.2) at 1 and 50 environments: DDPM-200 eager (the
  paper's), DDIM-20 eager (`sample`), DDIM-20 through `FastSampler` with CUDA graphs,
  inductor and torch.compile's reduce-overhead, and a 4-step student (untrained weights:
  the time of a plan does not depend on them) eager and with CUDA graphs; DDIM-20 with
  TF32 matmuls (`diffusion.tf32`) eager and as a CUDA graph, with how far a TF32 plan lies
  from the fp32 one drawn from the same noise. Compiled rows at 50 environments run a
  bucket of 64 (the batch is padded to a power of two).
- the compiled training step (`train.compile`): eager, inductor and reduce-overhead (CUDA
  graphs) with TF32, each with its kernels per step and GPU-busy share (torch.profiler);
`--skip train,ddp,compile` leaves sections out (a second, shorter call on a lent machine).
On a CPU-only machine the CUDA-only rows print "skipped (no CUDA)" (`--tiny`: a tiny
model, so the tests can run this file on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import time
from typing import Any

# benchmarks/planning_speed.py and train_throughput.py, beside this script: neither imports
# Ray, MLflow or MuJoCo
import planning_speed as ps
import torch
from train_throughput import step_rate

from mtdiff import keys
from mtdiff.config import ModelConfig, get_preset
from mtdiff.diffusion import DiffusionSchedule, guided_model_fn, sample
from mtdiff.diffusion.compiled import FastSampler, bucket_size
from mtdiff.diffusion.distill import StudentNet
from mtdiff.models import build_model
from mtdiff.runtime import matmul_tf32
from mtdiff.train.core import TrainSetup
from mtdiff.train.learner import DiffusionLearner

ROWS: list[tuple[str, str, str, str]] = []  # section, setting, result, note


def row(section: str, setting: str, result: str, note: str = "") -> None:
    """Record a table row and echo it (a crash still leaves the rows so far)."""
    ROWS.append((section, setting, result, note))
    print(f"  {section:<10} {setting:<34} {result:<22} {note}", flush=True)


class Budget:
    """Wall-clock guard: sections start only if their estimated need fits."""

    def __init__(self, minutes: float) -> None:
        self.end = time.perf_counter() + 60 * minutes

    def left(self) -> float:
        """Seconds left."""
        return self.end - time.perf_counter()

    def allows(self, need_s: float, section: str, setting: str) -> bool:
        """True if `need_s` fits; otherwise records a skipped row."""
        if self.left() >= need_s:
            return True
        row(section, setting, "skipped (time)", f"needs ~{need_s:.0f} s, {self.left():.0f} left")
        return False


def matmul(dev: torch.device, dtype: torch.dtype, n: int) -> float:
    """Measured FLOP/s of an n x n matmul: ~2 TFLOP per timing on CUDA, 20 GFLOP on CPU."""
    reps = max(2, int((2e12 if dev.type == "cuda" else 2e10) / (2 * n**3)))
    return ps.matmul_rate(dev, n, dtype, reps=reps, rounds=2)


def size(tiny: bool) -> tuple[ModelConfig, int]:
    """(model config, horizon H) of the paper's MTDiff-P, or of a tiny one (CPU test run)."""
    return ps.SIZES["tiny" if tiny else "paper"]


def train_rate(dev: torch.device, tiny: bool, B: int, steps: int, *, prec: str,
               wrap: Any = None, compile_: str = "off",
               profile: dict[str, float] | None = None) -> tuple[float, float]:
    """(steps/s, FLOPs per step) of the project's training step (`DiffusionLearner.update`:
    loss, backward, clipping, Adam, EMA) with `train.tf32` / `train.bf16` set by `prec` and
    `train.compile` by `compile_`. `profile`, when given, gets the kernels per step and the
    share of the wall time the GPU is busy (torch.profiler over `steps` steps)."""
    cfg = get_preset("paper")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, tf32=prec == "tf32", bf16=prec == "bf16", compile=compile_))
    mcfg, H = size(tiny)
    model = build_model(dataclasses.replace(mcfg, dropout=0.1), obs_dim=ps.OBS, act_dim=ps.ACT,
                        horizon=H, history=ps.L, prompt_len=ps.J, num_tasks=50)
    setup = TrainSetup(model, None, None, DiffusionSchedule.from_config(cfg.diffusion), {})  # type: ignore[arg-type]
    learner = DiffusionLearner(cfg, setup, dev)
    if wrap is not None:
        learner.prepare(wrap)
    batch = {**ps.plan_cond(B, dev), keys.BATCH_ACTIONS: torch.randn(B, H, ps.ACT, device=dev),
             keys.BATCH_MASK: torch.ones(B, H, device=dev)}  # the window sampler's keys

    def step() -> None:
        learner.update(batch)

    if compile_ != "off":
        for _ in range(3):  # compile / capture before anything is timed
            step()
    rate, flops = step_rate(step, steps, dev)
    if profile is not None:
        profile.update(kernel_profile(step, dev, steps))
    return rate, flops


def kernel_profile(step: Any, dev: torch.device, steps: int) -> dict[str, float]:
    """Kernels launched per step and the GPU-busy share of the wall time (sum of kernel
    times / elapsed), from torch.profiler over `steps` steps."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    ps.sync(dev)
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        ps.sync(dev)
    wall = time.perf_counter() - t0
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.device_time_total for e in kernels) / 1e6 if kernels else 0.0
    return {"kernels_per_step": len(kernels) / steps, "busy": busy / wall}


def _ddp_worker(rank: int, world: int, backend: str, port: int, tiny: bool, steps: int,
                queue: Any) -> None:
    """One DDP rank on GPU 0: a batch of 400 / world, report steps/s from rank 0."""
    import torch.distributed as dist

    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group(backend, rank=rank, world_size=world)
        dev = torch.device("cuda", 0)
        torch.cuda.set_device(dev)
        rate, _ = train_rate(dev, tiny, 400 // world, steps, prec="fp32", wrap=lambda m:
                             torch.nn.parallel.DistributedDataParallel(m, device_ids=[0]))
        dist.barrier()
        if rank == 0:
            queue.put(("ok", rate))
        dist.destroy_process_group()
    except Exception as e:  # noqa: BLE001 - reported as the row's result
        queue.put(("error", f"{type(e).__name__}: {str(e).splitlines()[0][:60]}"))


def ddp_rate(backend: str, world: int, tiny: bool, steps: int,
             timeout: float) -> tuple[str, float | str]:
    """Run `world` DDP processes; ("ok", steps/s) or ("error"/"timeout", message)."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [ctx.Process(target=_ddp_worker, args=(r, world, backend, port, tiny, steps, q))
             for r in range(world)]
    for p in procs:
        p.start()
    end = time.perf_counter() + timeout
    result: tuple[str, float | str] = ("timeout", f"no result in {timeout:.0f} s")
    while time.perf_counter() < end:
        if not q.empty():
            result = q.get()
            break
        if all(not p.is_alive() for p in procs) and q.empty():
            time.sleep(0.5)
            result = q.get() if not q.empty() else ("error", "workers exited")
            break
        time.sleep(0.2)
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
    return result


def sampling_rows(dev: torch.device, tiny: bool, budget: Budget, peak: float) -> None:
    """Planning latency rows at 1 and 50 environments."""
    mcfg, H = size(tiny)
    model = ps.build_net(mcfg, H, dev)
    sched = DiffusionSchedule.vp(200).to(dev)
    student = StudentNet(model, sched).to(dev).eval()
    for n in (1, 50):
        _sampling_at(n, model, student, sched, dev, tiny, H, budget, peak)


def _sampling_at(n: int, model: torch.nn.Module, student: StudentNet, sched: DiffusionSchedule,
                 dev: torch.device, tiny: bool, H: int, budget: Budget, peak: float) -> None:
    """The sampling rows for n environments."""
    cond = ps.plan_cond(n, dev)
    flops_row = ps.flops_per_env(model, cond, H)
    shape = (n, H, ps.ACT)

    def report(setting: str, secs: float, rows_per_env: int, calls: int, note: str = "") -> None:
        gf = flops_row * n * rows_per_env * calls / secs
        row("sampling", f"{setting}, {n} env", f"{secs * 1e3:9.2f} ms/plan",
            f"{gf / 1e9:.3g} GFLOP/s ({gf / peak:.0%} of matmul) {note}")

    ddim, ddpm, s4 = (ps.sampler(m, k, sched) for m, k in (("ddim", 20), ("ddpm", 200),
                                                             ("ddim", 4)))
    fn = guided_model_fn(model, cond, 1.2)
    sfn = guided_model_fn(student, cond, None)
    one = ps.timed(lambda: sample(fn, shape, ddim, device=dev), dev, 3)
    if budget.allows(200 / 20 * one * 2 + 5, "sampling", f"DDPM-200 eager, {n} env"):
        report("DDPM-200 eager", ps.timed(lambda: sample(fn, shape, ddpm, device=dev), dev, 1),
               2, 200)
    report("DDIM-20 eager", one, 2, 20)
    if dev.type == "cuda":
        tf32_rows(fn, model, ddim, shape, cond, dev, report)
    report("student-4 eager", ps.timed(lambda: sample(sfn, shape, s4, device=dev), dev, 3), 1, 4)
    runs = [("DDIM-20 cudagraph", model, ddim, 1.2, "cudagraph", 10, 2, 20),
            ("student-4 cudagraph", student, s4, None, "cudagraph", 10, 1, 4),
            ("DDIM-20 inductor", model, ddim, 1.2, "inductor", 40 if tiny else 150, 2, 20),
            ("DDIM-20 reduce-overhead", model, ddim, 1.2, "reduce-overhead", 150, 2, 20)]
    for setting, net, smp, g, mode, need, rows_per_env, calls in runs:
        if mode in ("cudagraph", "reduce-overhead") and dev.type != "cuda":
            row("sampling", f"{setting}, {n} env", "skipped (no CUDA)")
            continue
        if not budget.allows(need, "sampling", f"{setting}, {n} env"):
            continue
        try:
            eng = FastSampler(net, smp, guidance=g, mode=mode, device=dev)  # type: ignore[arg-type]
            secs, first = ps.compiled_timing(eng, cond, shape, dev, 5)
            pad = f", bucket {bucket_size(n)}" if bucket_size(n) != n else ""
            report(setting, secs, rows_per_env, calls, f"(first call {first:.1f} s{pad})")
        except Exception as e:  # noqa: BLE001 - one failed mode must not end the check
            row("sampling", f"{setting}, {n} env", "failed", f"{type(e).__name__}: {e}"[:90])


def tf32_rows(fn: Any, model: torch.nn.Module, ddim: Any, shape: tuple[int, ...],
              cond: dict[str, torch.Tensor], dev: torch.device, report: Any) -> None:
    """DDIM-20 with TF32 matmuls, eager and as a CUDA graph; how far a TF32 plan and an fp32
    CUDA-graph plan lie from the eager fp32 one drawn from the same noise (max |difference|
    over the plan's std)."""
    def plan(tf32: bool) -> torch.Tensor:
        with matmul_tf32(tf32, dev):
            gen = torch.Generator(device=dev).manual_seed(0)
            return sample(fn, shape, ddim, device=dev, generator=gen)

    def gap(x: torch.Tensor, ref: torch.Tensor) -> str:
        return f"{(x - ref).abs().max().item() / ref.std().item():.1e} std"

    ref, alt = plan(False), plan(True)
    graph = FastSampler(model, ddim, guidance=1.2, mode="cudagraph", device=dev)  # fp32
    same = graph(cond, shape, generator=torch.Generator(device=dev).manual_seed(0))
    row("parity", f"DDIM-20, {shape[0]} env", f"tf32 {gap(alt, ref)}",
        f"fp32 CUDA graph vs eager: {gap(same, ref)} (same noise)")
    with matmul_tf32(True, dev):  # as `Planner.plan` runs with diffusion.tf32
        report("DDIM-20 eager tf32", ps.timed(lambda: sample(fn, shape, ddim, device=dev), dev, 3),
               2, 20)
        eng = FastSampler(model, ddim, guidance=1.2, mode="cudagraph", device=dev)
        eng(cond, shape)
        report("DDIM-20 cudagraph tf32", ps.timed(lambda: eng(cond, shape), dev, 5), 2, 20)


def main() -> None:
    """Run the sections that fit the budget and print the table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=8.0, help="minutes (default 8)")
    p.add_argument("--tiny", action="store_true", help="a tiny model (CPU test run)")
    p.add_argument("--steps", type=int, default=10, help="training steps per measurement")
    p.add_argument("--skip", default="", help="sections to leave out, e.g. 'train,ddp'")
    args = p.parse_args()
    budget = Budget(args.budget)
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    steps = 2 if args.tiny else args.steps
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_check: torch {torch.__version__}, {name}, budget {args.budget} min"
          f"{', tiny model' if args.tiny else ', paper-sized MTDiff-P'}", flush=True)
    n = 256 if args.tiny else (8192 if cuda else 1024)
    peaks: dict[str, float] = {}
    for prec in ("fp32", "tf32", "bf16") if cuda else ("fp32", "bf16"):
        with matmul_tf32(prec == "tf32", dev):
            peaks[prec] = matmul(dev, torch.bfloat16 if prec == "bf16" else torch.float32, n)
        row("matmul", f"{prec} {n}x{n}", f"{peaks[prec] / 1e9:.0f} GFLOP/s")

    skip = set(filter(None, args.skip.split(",")))
    base = None
    for prec in ("fp32", "tf32", "bf16") if "train" not in skip else ():
        if prec == "tf32" and not cuda:
            row("train", "tf32, 1 process", "skipped (no CUDA)")
            continue
        if not budget.allows(5 if args.tiny else 30, "train", f"{prec}, 1 process"):
            continue
        rate, flops = train_rate(dev, args.tiny, 400, steps, prec=prec)
        base = base or rate
        row("train", f"{prec}, 1 process, batch 400", f"{rate:.2f} steps/s",
            f"{rate * flops / 1e9:.0f} GFLOP/s ({rate * flops / peaks[prec]:.0%} of matmul), "
            f"{rate / base:.2f}x fp32")

    # On CPU the compiled step is measured by benchmarks/train_throughput.py.
    compile_modes = ("off", "inductor", "reduce-overhead") if cuda else ()
    if not cuda and "compile" not in skip:
        row("compile", "train.compile", "skipped (no CUDA)")
    eager_rate: float | None = None
    for mode in compile_modes if "compile" not in skip else ():
        if not budget.allows(90, "compile", f"tf32, train.compile={mode}"):
            continue
        prec = "tf32"
        prof: dict[str, float] = {}
        rate, flops = train_rate(dev, args.tiny, 400, steps, prec=prec, compile_=mode,
                                 profile=prof)
        eager_rate = rate if mode == "off" else eager_rate
        row("compile", f"{prec}, train.compile={mode}", f"{rate:.2f} steps/s",
            f"{rate * flops / peaks[prec]:.0%} of matmul, "
            f"{prof['kernels_per_step']:.0f} kernels/step, GPU busy {prof['busy']:.0%}"
            + (f", {rate / eager_rate:.2f}x eager" if mode != "off" and eager_rate else ""))

    sampling_rows(dev, args.tiny, budget, peaks["fp32"])

    if not cuda and "ddp" not in skip:
        row("ddp", "2 processes, NCCL", "skipped (no CUDA)")
    elif "ddp" not in skip:
        for backend, world in (("nccl", 2), ("gloo", 2), ("nccl", 1)):
            if not budget.allows(60, "ddp", f"{world} process(es), {backend}"):
                break
            status, value = ddp_rate(backend, world, args.tiny, steps,
                                     min(150.0, budget.left() - 10))
            if status == "ok":
                row("ddp", f"{world} process(es), {backend}, batch 400",
                    f"{float(value):.2f} steps/s", f"{float(value) / (base or 1):.2f}x 1-proc fp32")
                break
            row("ddp", f"{world} process(es), {backend}", status, str(value))

    print(f"\n{'section':<10} {'setting':<34} {'result':<22} note")
    for section, setting, result, note in ROWS:
        print(f"{section:<10} {setting:<34} {result:<22} {note}")
    print(f"total {60 * args.budget - budget.left():.0f} s")


if __name__ == "__main__":
    main()
