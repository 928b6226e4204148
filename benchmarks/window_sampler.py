"""Window-sampler throughput for the paper's batch shape (50 tasks x 8, H=32, J=20, L=2).

Writes a Meta-World-shaped dataset (obs 39, act 4, 500-step episodes) of real Parquet
shards to a temp folder, loads it, and times `WindowSampler.sample` against a
per-window Python loop (the obvious baseline) in the same process. Prints batches/s,
latency percentiles, the ratio, and memory.

    python benchmarks/window_sampler.py [--transitions-per-task 20000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import psutil

from mtdiff import keys
from mtdiff.data.normalize import Normalizer
from mtdiff.data.prompts import load_prompts
from mtdiff.data.random_data import write_random_dataset
from mtdiff.data.reader import load_dataset
from mtdiff.data.windows import WindowSampler

OBS, ACT, T = 39, 4, 500


def naive_sample(s: WindowSampler, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Baseline: one window at a time in Python (what a straightforward Dataset does)."""
    acts, hists, trans, rets, proms, masks = [], [], [], [], [], []
    for tid in s.task_ids:
        row = s.offsets[tid] + rng.integers(s.sizes[tid])
        end, start = s.ep_end[row], s.ep_start[row]
        a = np.zeros((s.H, s.act.shape[1]), np.float32)
        tr = np.zeros((s.H, s.obs.shape[1] + s.act.shape[1] + 1), np.float32)
        m = np.zeros(s.H, np.float32)
        for j in range(s.H):
            if row + j < end:
                a[j] = s.act[row + j]
                tr[j] = np.r_[s.obs[row + j], s.act[row + j], s.rew[row + j]]
                m[j] = 1
        hists.append(np.stack([s.obs[max(row - k, start)] for k in range(s.L - 1, -1, -1)]))
        acts.append(a)
        trans.append(tr)
        masks.append(m)
        rets.append([s.ret[row]])
        proms.append(s.prompts[tid, rng.integers(s.prompt_counts[tid])])
    return {keys.BATCH_ACTIONS: np.stack(acts), keys.BATCH_HISTORY: np.stack(hists),
            keys.BATCH_TRANSITIONS: np.stack(trans), keys.BATCH_RETURN: np.array(rets),
            keys.BATCH_PROMPT: np.stack(proms), keys.BATCH_MASK: np.stack(masks)}


def timeit(fn, seconds: float) -> tuple[float, np.ndarray]:
    """Calls per second and per-call latencies (s) over about `seconds`."""
    lat = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    lat_a = np.array(lat)
    return len(lat_a) / lat_a.sum(), lat_a


def main() -> None:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=50)
    p.add_argument("--transitions-per-task", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    proc = psutil.Process(os.getpid())
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        write_random_dataset(root, tasks=args.tasks, episodes=args.transitions_per_task // T,
                             episode_len=T, obs_dim=OBS, act_dim=ACT)
        t_build = time.perf_counter() - t0
        rss0 = proc.memory_info().rss
        t0 = time.perf_counter()
        ds = load_dataset(root)
        s = WindowSampler(ds, load_prompts(root), Normalizer(ds.stats), horizon=32, history=2,
                          prompt_len=20, batch_per_task=8, seed=0)
        t_load = time.perf_counter() - t0
        rss1 = proc.memory_info().rss
        n = args.tasks * args.transitions_per_task
        print(f"dataset: {args.tasks} tasks x {args.transitions_per_task} transitions "
              f"({n / 1e6:.2f}M rows), write {t_build:.1f}s, load+index {t_load:.2f}s, "
              f"memory +{(rss1 - rss0) / 2**20:.0f} MiB")
        print(f"batch: {s.batch_size} windows (8 per task), H=32, L=2, J=20")
        rng = np.random.default_rng(0)
        rows = []
        for name, fn in [
            ("vectorised, all fields", s.sample),
            ("vectorised, planner fields", lambda: _with_fields(s, "planner")),
            ("vectorised, synth fields", lambda: _with_fields(s, "synth")),
            ("naive per-window loop", lambda: naive_sample(s, rng)),
        ]:
            rate, lat = timeit(fn, args.seconds)
            rows.append((name, rate, np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3))
        print(f"{'sampler':<30}{'batches/s':>11}{'windows/s':>12}{'p50 ms':>9}{'p99 ms':>9}")
        for name, rate, p50, p99 in rows:
            print(f"{name:<30}{rate:>11.1f}{rate * s.batch_size:>12.0f}{p50:>9.2f}{p99:>9.2f}")
        print(f"speed-up of the vectorised sampler over the loop: {rows[0][1] / rows[-1][1]:.1f}x")
        print(f"peak RSS: {proc.memory_info().rss / 2**20:.0f} MiB")


def _with_fields(s: WindowSampler, fields: str) -> dict[str, np.ndarray]:
    old, s.fields = s.fields, fields
    try:
        return s.sample()
    finally:
        s.fields = old


if __name__ == "__main__":
    main()
