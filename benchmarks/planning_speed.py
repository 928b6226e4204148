"""Seconds per plan: the paper's DDPM-200 against DDIM-20 (eager, compiled), the student
and, with `--samplers`, DDIM / DPM-Solver++ at other step counts; with `--synthesis`,
MTDiff-S synthesis throughput against its DDPM-200.

For the paper-sized (d=256, 6 layers, H=32) and the local-sized (d=128, 3 layers, H=16)
MTDiff-P (`--sizes tiny`: d=32, 1 layer, H=8, a quick check) on Meta-World shapes (obs 39,
act 4, J=20, L=2), guided (α=1.2, both branches in one batch), at 1 and 50 environments,
all in one run:

    DDPM-200 eager        the paper's planner (App. A; 1.9 s per plan on a 3090, App. F)
    DDIM-20 eager         `sample`, the local preset's planner
    SAMPLER-k eager       --samplers: e.g. DDIM-50, DDIM-10, DPMSOLVER-20 (DPM-Solver++),
                          named as `planning_parity.py` names its methods
    DDIM-20 compiled      `FastSampler` (inductor on CPU, CUDA graphs on CUDA; compile /
                          capture cost reported apart; batches padded to a power of two)
    student-n eager       a distilled student's plan: n unguided calls (untrained weights:
                          the time of a plan does not depend on them)

Columns: seconds per plan (median of --reps after a warm-up; process CPU seconds on a
one-thread CPU run, where a shared machine's load moves wall time, else wall seconds;
the compile cost is wall time), speed-up against DDPM-200 of the same model and batch,
achieved GFLOP/s (torch's FlopCounterMode per call x calls) and its share of the fp32
matmul rate measured in the same run (before and after the rows, the faster counts), and
peak memory (process RSS so far on CPU; CUDA peak per row).

`--synthesis [BATCH]` adds a table per size: MTDiff-S (same size) sampling BATCH
sequences of H transitions at temperature 1 (Alg. 2) with DDPM-200, DDIM-20 and the
--samplers settings: seconds per batch, transitions/s and the ratio to DDPM-200.

The last line is one JSON object: `speedup_vs_ddpm200` and `setting` of the fastest row
whose method has success parity. Parity comes from `benchmarks/planning_parity.py`
result files (--parity, all must agree); without them only DDIM-20 (the reference; its
compiled loop equals it within 1e-4, tested) counts.

    python benchmarks/planning_speed.py [--envs 1 50] [--sizes paper local]
        [--student-steps 1 2 4] [--samplers [ddim-50 dpmsolver-20 ...]]
        [--synthesis [64]] [--parity runs/parity/maze2d.json ...] [--threads 1]

`gpu_check.py` builds its planning rows from this file's helpers (torch and `mtdiff`'s
torch parts only: no Ray, MLflow or MuJoCo at import).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from mtdiff import keys
from mtdiff.config import DiffusionConfig, ModelConfig
from mtdiff.diffusion import DiffusionSchedule, guided_model_fn, make_sampler, sample
from mtdiff.diffusion.compiled import FastSampler, bucket_size, resolve_mode
from mtdiff.diffusion.distill import StudentNet
from mtdiff.models import build_model

OBS, ACT, J, L = 39, 4, 20, 2
SIZES = {"paper": (ModelConfig(dropout=0.0), 32),
         "local": (ModelConfig(d_model=128, n_layer=3, n_head=4, dropout=0.0), 16),
         "tiny": (ModelConfig(d_model=32, n_layer=1, n_head=2, dropout=0.0), 8)}
SAMPLERS = ("ddim-50", "ddim-10", "dpmsolver-20", "dpmsolver-10")  # `--samplers` alone


def sync(dev: torch.device) -> None:
    """Wait for the device (timings on CUDA are otherwise launch times)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# The clock of every timed row: process CPU seconds on a one-thread CPU run (a shared
# machine's load moves wall time by 2-5x within a run, CPU time far less), else wall time.
CLOCK = {"clock": time.perf_counter}


def timed(fn: Any, dev: torch.device, reps: int, warmup: bool = True) -> float:
    """Median seconds (`CLOCK`) of `reps` calls after one warm-up call (if `warmup`)."""
    clock = CLOCK["clock"]
    if warmup:
        fn()
        sync(dev)
    ts = []
    for _ in range(reps):
        t0 = clock()
        fn()
        sync(dev)
        ts.append(clock() - t0)
    return sorted(ts)[len(ts) // 2]


def matmul_rate(dev: torch.device, n: int = 1024, dtype: torch.dtype = torch.float32,
                reps: int | None = None, rounds: int = 3) -> float:
    """Measured FLOP/s of an n x n matmul in `dtype` with the current threads: median of
    `rounds` timings of `reps` products (default 8 on CPU, 200 on CUDA)."""
    a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
    reps = reps or (8 if dev.type == "cpu" else 200)
    return 2 * n**3 * reps / timed(lambda: [a @ b for _ in range(reps)], dev, rounds)


def peak_mib(dev: torch.device) -> float:
    """CUDA peak since the last reset, or this process's peak RSS (Linux: KiB)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_net(mcfg: ModelConfig, H: int, dev: torch.device) -> torch.nn.Module:
    """An inference-only model of `mcfg` (MTDiff-P or -S) on Meta-World shapes."""
    return build_model(mcfg, obs_dim=OBS, act_dim=ACT, horizon=H, history=L, prompt_len=J,
                       num_tasks=50).to(dev).eval().requires_grad_(False)


def plan_cond(n: int, dev: torch.device) -> dict[str, torch.Tensor]:
    """The planner's conditions (prompt, history, return) for n environments."""
    return {keys.BATCH_PROMPT: torch.randn(n, J, OBS + ACT, device=dev),
            keys.BATCH_HISTORY: torch.randn(n, L, OBS, device=dev),
            keys.BATCH_RETURN: torch.ones(n, 1, device=dev)}


def flops_per_env(model: torch.nn.Module, cond: dict[str, torch.Tensor], H: int) -> float:
    """FLOPs of one network call for one environment (FlopCounterMode)."""
    n = cond[keys.BATCH_PROMPT].shape[0]
    dev = cond[keys.BATCH_PROMPT].device
    with FlopCounterMode(display=False) as fc:
        model(torch.randn(n, H, ACT, device=dev), torch.zeros(n, dtype=torch.long, device=dev),
              cond)
    return fc.get_total_flops() / n


def sampler(name: str, steps: int, sched: DiffusionSchedule,
            temperature: float | None = None) -> Any:
    """`make_sampler` for `name` at `steps` steps on `sched`."""
    cfg = DiffusionConfig(sampler=name, sample_steps=steps)  # type: ignore[arg-type]
    return make_sampler(cfg, sched, temperature=temperature)


def compiled_timing(eng: FastSampler, cond: dict[str, torch.Tensor], shape: tuple[int, ...],
                    dev: torch.device, reps: int) -> tuple[float, float]:
    """(median seconds per plan, wall seconds of the first call: compile / capture)."""
    t0 = time.perf_counter()
    eng(cond, shape)
    first = time.perf_counter() - t0
    return timed(lambda: eng(cond, shape), dev, reps), first


def spec(s: str) -> tuple[str, int]:
    """'ddim-50' -> ('ddim', 50)."""
    name, _, steps = s.rpartition("-")
    if name not in ("ddpm", "ddim", "dpmsolver") or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"{s!r}: want ddpm|ddim|dpmsolver-STEPS")
    return name, int(steps)


def parity_methods(paths: list[str]) -> tuple[set[str], str]:
    """Methods ("DDIM-20", "student-4", ...) at parity in every given `planning_parity.py`
    result, and where from. Eager and compiled rows of a method share it (same outputs)."""
    if not paths:
        return {"DDIM-20"}, "none given: DDIM-20 is the reference, compiled equals it (tests)"
    found: set[str] | None = None
    for p in paths:
        res = json.loads(open(p).read())
        these = {"DDIM-20"} | {s["method"] for s in res["settings"] if s.get("at_parity")}
        found = these if found is None else found & these
    return found or {"DDIM-20"}, ", ".join(paths)


def bench_size(size: str, args: argparse.Namespace, mode: str | None, dev: torch.device,
               peak: float) -> list[dict[str, Any]]:
    """All plan rows for one model size."""
    mcfg, H = SIZES[size]
    model = build_net(mcfg, H, dev)
    sched = DiffusionSchedule.vp(200).to(dev)
    rows: list[dict[str, Any]] = []
    for n in args.envs:
        rows += _rows_at(n, size, H, model, sched, args, mode, dev, peak)
    return rows


def _rows_at(n: int, size: str, H: int, model: torch.nn.Module, sched: DiffusionSchedule,
             args: argparse.Namespace, mode: str | None, dev: torch.device,
             peak: float) -> list[dict[str, Any]]:
    """The plan rows of one model size at n environments."""
    reps = args.reps
    student = StudentNet(model, sched).to(dev).eval()
    cond = plan_cond(n, dev)
    flops_env = flops_per_env(model, cond, H)
    shape = (n, H, ACT)
    rows: list[dict[str, Any]] = []

    def add(setting: str, secs: float, calls: int, rows_per_env: int,
            first: float | None = None) -> None:
        gf = flops_env * n * rows_per_env * calls / secs
        mem = peak_mib(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        rows.append({"size": size, "envs": n, "setting": setting, "s_per_plan": secs,
                     "network_calls": calls, "gflops": gf / 1e9, "of_matmul": gf / peak,
                     "peak_mib": mem, "first_call_s": first})
        print(f"  {size:<6}{n:>5} env  {setting:<20}{secs:>10.4f} s/plan{gf / 1e9:>8.1f} "
              f"GFLOP/s{gf / peak:>6.0%}{mem:>8.0f} MiB"
              + (f"  (first call {first:.1f} s)" if first is not None else ""), flush=True)

    def compiled(net: torch.nn.Module, s: Any, guidance: float | None) -> tuple[float, float]:
        eng = FastSampler(net, s, guidance=guidance, mode=mode, device=dev)  # type: ignore[arg-type]
        return compiled_timing(eng, cond, shape, dev, reps)

    fn = guided_model_fn(model, cond, 1.2)
    ddpm, ddim = sampler("ddpm", 200, sched), sampler("ddim", 20, sched)
    # DDIM first: it warms the same model and shapes up, so DDPM-200 (the slowest) runs once.
    ddim_s = timed(lambda: sample(fn, shape, ddim, device=dev), dev, reps)
    add("DDPM-200 eager", timed(lambda: sample(fn, shape, ddpm, device=dev), dev, 1, False),
        200, 2)
    add("DDIM-20 eager", ddim_s, 20, 2)
    for name, k in args.samplers:
        s = sampler(name, k, sched)
        add(f"{name.upper()}-{k} eager",
            timed(lambda s=s: sample(fn, shape, s, device=dev), dev, reps), k, 2)
    if mode is not None:
        secs, first = compiled(model, ddim, 1.2)
        add("DDIM-20 compiled", secs, 20, 2, first)
    sfn = guided_model_fn(student, cond, None)
    for k in args.student_steps:
        s = sampler("ddim", k, sched)
        add(f"student-{k} eager", timed(lambda s=s: sample(sfn, shape, s, device=dev), dev,
                                        reps), k, 1)
        if mode == "cudagraph":  # cheap to capture; inductor would compile once more per k
            secs, first = compiled(student, s, None)
            add(f"student-{k} compiled", secs, k, 1, first)
    return rows


def synthesis_rows(size: str, args: argparse.Namespace, dev: torch.device
                   ) -> list[dict[str, Any]]:
    """MTDiff-S of one size: seconds per batch of `args.synthesis` sequences, transitions/s
    and the ratio to DDPM-200, for DDPM-200, DDIM-20 and the --samplers settings."""
    mcfg, H = SIZES[size]
    synth = build_net(dataclasses.replace(mcfg, kind="mtdiff-s"), H, dev)
    sched = DiffusionSchedule.vp(200).to(dev)
    B = args.synthesis
    z = torch.randn(B, J, OBS + ACT, device=dev)
    shape = (B, H, OBS + ACT + 1)

    def secs(name: str, k: int, reps: int, warmup: bool = True) -> float:
        s = sampler(name, k, sched, temperature=1.0)
        return timed(lambda: sample(lambda x, t: synth(x, t, {keys.BATCH_PROMPT: z}), shape, s,
                                    device=dev), dev, reps, warmup)

    ddim = secs("ddim", 20, args.reps)  # warms up, so DDPM-200 runs once
    times = {"DDPM-200": secs("ddpm", 200, 1, False), "DDIM-20": ddim}
    for name, k in args.samplers:
        times[f"{name.upper()}-{k}"] = secs(name, k, args.reps)
    print(f"\nMTDiff-S synthesis, {size}-sized: {B} sequences x H={H} per batch, temperature 1")
    print(f"{'setting':<20}{'s/batch':>10}{'transitions/s':>15}{'vs DDPM-200':>13}")
    rows = []
    for setting, t in times.items():
        rows.append({"size": size, "setting": setting, "s_per_batch": t,
                     "transitions_per_s": B * H / t, "speedup_vs_ddpm200": times["DDPM-200"] / t})
        print(f"{setting:<20}{t:>10.3f}{B * H / t:>15.0f}{times['DDPM-200'] / t:>12.1f}x")
    return rows


def main() -> None:
    """Measure every row, print the table with speed-ups, then the JSON line."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", type=int, nargs="+", default=[1, 50])
    p.add_argument("--sizes", nargs="+", choices=tuple(SIZES), default=["paper", "local"])
    p.add_argument("--student-steps", type=int, nargs="*", default=[1, 2, 4])
    p.add_argument("--samplers", type=spec, nargs="*", default=None, metavar="NAME-STEPS",
                   help="also these eager plan rows (ddim-50, dpmsolver-20, ...); the flag "
                        f"alone: {' '.join(SAMPLERS)}")
    p.add_argument("--synthesis", type=int, nargs="?", const=64, default=0, metavar="BATCH",
                   help="also MTDiff-S synthesis throughput, BATCH sequences (flag alone: 64)")
    p.add_argument("--compile", default="auto",
                   help="compiled mode: auto (inductor on CPU, cudagraph on CUDA), inductor, "
                        "cudagraph, reduce-overhead or off")
    p.add_argument("--parity", nargs="*", default=[], help="planning_parity.py result files")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                   help="auto: process CPU time on a 1-thread CPU run, wall time otherwise")
    args = p.parse_args()
    if args.samplers is None:
        args.samplers = []
    elif not args.samplers:
        args.samplers = [spec(s) for s in SAMPLERS]
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cpu_clock = args.clock == "cpu" or (args.clock == "auto" and dev.type == "cpu"
                                        and args.threads == 1)
    CLOCK["clock"] = time.process_time if cpu_clock else time.perf_counter
    mode = resolve_mode(args.compile, dev) if args.compile != "auto" else (
        "cudagraph" if dev.type == "cuda" else "inductor")
    peak = matmul_rate(dev)
    print(f"{dev}, {args.threads} thread(s), {'CPU' if cpu_clock else 'wall'} seconds; "
          f"fp32 matmul rate {peak / 1e9:.1f} GFLOP/s; "
          f"compiled = {mode} (batches padded to {[bucket_size(n) for n in args.envs]})")
    rows = []
    with torch.no_grad():
        for size in args.sizes:
            rows += bench_size(size, args, mode, dev, peak)
    # On a shared machine the rate moves with the load: the yardstick is the faster of the
    # measurements before and after the rows (utilisation is then a lower bound).
    after = matmul_rate(dev)
    print(f"\nfp32 matmul rate after the rows: {after / 1e9:.1f} GFLOP/s")
    if after > peak:
        for r in rows:
            r["of_matmul"] *= peak / after
        peak = after
    base = {(r["size"], r["envs"]): r["s_per_plan"] for r in rows
            if r["setting"] == "DDPM-200 eager"}
    print(f"\n{'model':<7}{'envs':>5}  {'setting':<20}{'s/plan':>10}{'vs DDPM-200':>13}"
          f"{'calls':>7}{'GFLOP/s':>9}{'matmul':>8}{'peak MiB':>10}")
    for r in rows:
        r["speedup_vs_ddpm200"] = base[(r["size"], r["envs"])] / r["s_per_plan"]
        print(f"{r['size']:<7}{r['envs']:>5}  {r['setting']:<20}{r['s_per_plan']:>10.4f}"
              f"{r['speedup_vs_ddpm200']:>12.1f}x{r['network_calls']:>7}{r['gflops']:>9.1f}"
              f"{r['of_matmul']:>8.0%}{r['peak_mib']:>10.0f}")
    synth = []
    with torch.no_grad():
        for size in args.sizes if args.synthesis else ():
            synth += synthesis_rows(size, args, dev)
    ok, source = parity_methods(args.parity)
    best = max((r for r in rows if r["setting"].split()[0] in ok),
               key=lambda r: r["speedup_vs_ddpm200"])
    print(f"\nmethods counted as at success parity: {sorted(ok)} (from {source})")
    print(json.dumps({"speedup_vs_ddpm200": round(best["speedup_vs_ddpm200"], 2),
                      "setting": f"{best['setting']}, {best['size']}-sized, {best['envs']} env",
                      "s_per_plan": best["s_per_plan"], "parity_from": source,
                      "device": str(dev), "threads": args.threads,
                      "clock": "cpu" if cpu_clock else "wall",
                      "matmul_gflops": peak / 1e9,
                      "rows": [rounded(r) for r in rows],
                      "synthesis": [rounded(r) for r in synth]}))


def rounded(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its floats to 5 decimals (the JSON line)."""
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}


if __name__ == "__main__":
    main()
