"""TD3-BC update throughput and nearest-neighbour (L2 distance from dataset) throughput.

1. TD3-BC updates/s at the paper-default shape (batch 256, 256x256 MLPs, obs 39, act 4),
   next to the same process's plain matmul GFLOP/s (the ceiling the update's FLOPs could
   reach), so the number reads as a fraction of the machine's peak.
2. Nearest-neighbour queries/s of `mtdiff.synth.quality.nearest_distance` (cdist blocks,
   a running min over reference chunks so 1M references fit in 128 MiB, exact recompute
   of the winner) against brute force (numpy broadcast differences), scipy's cKDTree and
   a single torch.cdist + min block (all references at once: the memory-unbounded upper
   bound), for queries against a reference set in D dims (default: 10k x 43, the shape
   of (s, a) rows; --dim 83 for whole transitions). Each method runs on as many queries
   as fit in about --seconds; the extrapolated time for --target-queries is shown.

    python benchmarks/offline_td3bc.py [--seconds 5] [--ref 10000] [--dim 43]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from mtdiff.config import OfflineConfig
from mtdiff.data.transitions import Transitions
from mtdiff.offline.td3bc import TD3BC
from mtdiff.synth.quality import nearest_distance

OBS, ACT = 39, 4


def update_flops(batch: int, hidden: int, obs: int = OBS, act: int = ACT,
                 delay: int = 2) -> float:
    """FLOPs of one TD3-BC update (multiply-adds x 2; backward = 2 x forward)."""
    def net(i: int, o: int) -> float:
        return 2.0 * batch * (i * hidden + hidden * hidden + hidden * o)

    actor, q = net(obs, act), net(obs + act, 1)
    critic_step = (actor + 2 * q) + 3 * (2 * q)  # targets forward; twin Q fwd + bwd
    actor_step = 3 * (actor + q)  # pi and Q_1 forward + backward
    return critic_step + actor_step / delay


def bench_td3bc(seconds: float, device: str) -> None:
    """Updates/s with the default config on random data, and the matmul ceiling."""
    rng = np.random.default_rng(0)
    n = 100_000
    data = Transitions.from_arrays(rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)),
                                   rng.random(n), rng.normal(size=(n, OBS)))
    cfg = OfflineConfig()
    agent = TD3BC(OBS, ACT, cfg, device=device)
    agent.fit_normalizer(data.observations)
    sample = agent.batches(data)
    agent.train(sample, 20, log_every=10**9)  # warm-up
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        agent.train(sample, 50, log_every=10**9)
        done += 50
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    rate = done / dt
    flops = update_flops(cfg.batch_size, cfg.hidden)
    a = torch.randn(256, 256, device=device)
    mm_done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(100):
            a @ a
        mm_done += 100
    if device == "cuda":
        torch.cuda.synchronize()
    mm_gflops = mm_done * 2 * 256**3 / (time.perf_counter() - t0) / 1e9
    print(f"TD3-BC ({device}, {torch.get_num_threads()} thread(s)), batch {cfg.batch_size}, "
          f"{cfg.hidden}x{cfg.hidden} MLPs:")
    print(f"  {rate:8.1f} updates/s  {1e3 / rate:6.2f} ms/update  "
          f"{rate * flops / 1e9:6.1f} GFLOP/s ({flops / 1e6:.0f} MFLOP/update)")
    print(f"  256x256 matmul alone: {mm_gflops:6.1f} GFLOP/s -> the update runs at "
          f"{rate * flops / 1e9 / mm_gflops:.0%} of it")
    print(f"  1M updates (TD3-BC default): {1e6 / rate / 3600:.1f} h; 20k: {2e4 / rate:.0f} s")


def brute_force(q: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Baseline: numpy broadcast differences, 64 queries at a time."""
    out = np.empty(len(q), np.float32)
    for lo in range(0, len(q), 64):
        d = q[lo:lo + 64, None, :] - ref[None]  # (64, M, D)
        out[lo:lo + 64] = np.sqrt((d * d).sum(-1).min(1))
    return out


def cdist_min(q: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Baseline: torch.cdist + min per 4096-query chunk (no running min over references)."""
    r = torch.from_numpy(ref)
    return np.concatenate([torch.cdist(torch.from_numpy(q[lo:lo + 4096]), r).min(1).values
                           .numpy() for lo in range(0, len(q), 4096)])


def bench_nn(seconds: float, n_ref: int, dim: int, target: int) -> None:
    """Queries/s of each method on the same data; checks they agree."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(n_ref, dim)).astype(np.float32)
    t0 = time.perf_counter()
    tree = cKDTree(ref)
    build = time.perf_counter() - t0
    methods: list[tuple[str, Callable[[np.ndarray], np.ndarray], int]] = [
        ("ours: chunked cdist, running min", lambda q: nearest_distance(q, ref, device="cpu"),
         8192),
        ("torch.cdist + min, one block", lambda q: cdist_min(q, ref), 4096),
        ("scipy cKDTree.query", lambda q: tree.query(q, k=1)[0].astype(np.float32), 256),
        ("brute force (numpy broadcast)", lambda q: brute_force(q, ref), 64),
    ]
    check = rng.normal(size=(256, dim)).astype(np.float32)
    truth = brute_force(check, ref)
    print(f"\nnearest neighbour, reference {n_ref} x {dim} (float32, CPU, "
          f"{torch.get_num_threads()} thread(s)); cKDTree build {build:.2f}s")
    print(f"{'method':<36}{'queries/s':>12}{'max |err|':>11}{f'{target:,} queries':>16}")
    rates = {}
    for name, fn, step in methods:
        err = float(np.abs(fn(check) - truth).max())
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(rng.normal(size=(step, dim)).astype(np.float32))
            n += step
        rates[name] = n / (time.perf_counter() - t0)
        print(f"{name:<36}{rates[name]:>12,.0f}{err:>11.1e}{target / rates[name]:>15.0f}s")
    ours = rates[methods[0][0]]
    print(f"ours vs brute force: {ours / rates[methods[-1][0]]:.0f}x, vs cKDTree: "
          f"{ours / rates[methods[2][0]]:.0f}x")


def main() -> None:
    """Run both benchmarks and print their tables."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--ref", type=int, default=10_000)
    p.add_argument("--dim", type=int, default=43)
    p.add_argument("--target-queries", type=int, default=1_000_000)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    bench_td3bc(args.seconds, "cpu")
    if torch.cuda.is_available():
        bench_td3bc(args.seconds, "cuda")
    bench_nn(args.seconds, args.ref, args.dim, args.target_queries)


if __name__ == "__main__":
    main()
