"""What every part of `benchmarks/calibrate.py` measures with: the model sizes, the busy-
seconds clock, the least-squares line of a family's rates and the `Calibrator` that collects
the rates, each with its source."""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.config import Config, apply_overrides, get_preset

LOCAL = ["model.d_model=128", "model.n_layer=3", "model.n_head=4", "data.horizon=16"]
SMOKE = ["model.d_model=32", "model.n_layer=2", "model.n_head=2", "data.horizon=8",
         "data.prompt_len=5"]
PAPER = ["model.d_model=256", "model.n_layer=6", "model.n_head=4", "data.horizon=32"]


class Clock:
    """Wall and process CPU seconds of a block. `busy`: the CPU seconds when the process
    lost its core to other work for a while (a shared machine), else the wall seconds: a
    rate of one uncontended core, as the cost model gives each task its own."""

    def __enter__(self) -> Clock:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c

    @property
    def busy(self) -> float:
        return min(self.wall, self.cpu) if self.cpu > 0 else self.wall

    @property
    def share(self) -> float:
        """busy / wall: what a wall-clock figure measured inside the block is scaled by."""
        return self.busy / max(self.wall, 1e-12)


def timed(fn: Callable[[], Any], *, min_s: float = 1.5, min_reps: int = 2,
          warmup: int = 1) -> float:
    """Mean busy seconds (`Clock`) of one call after `warmup` calls, over at least
    `min_reps` calls and `min_s` seconds."""
    for _ in range(warmup):
        fn()
    n = 0
    with Clock() as clk:
        t0 = time.perf_counter()
        while n < min_reps or time.perf_counter() - t0 < min_s:
            fn()
            n += 1
    return clk.busy / n


def one_cpu(cfg: Config) -> Config:
    """A training config for timing it: one CPU per worker, not logged."""
    return apply_overrides(cfg, ["train.cpus_per_worker=1", "tracking.enabled=false"])


def fit_line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed_s, flops_per_s) of seconds = fixed_s + flops / flops_per_s, least squares
    over (flops, seconds) points, fixed_s >= 0."""
    x = np.array([p[0] for p in points], float)
    y = np.array([p[1] for p in points], float)
    if len(points) > 1 and np.ptp(x) > 0:
        slope, icpt = np.polyfit(x, y, 1)
        if slope > 0 and icpt >= 0:
            return float(icpt), float(1.0 / slope)
        if slope > 0:  # a negative intercept: through the origin
            return 0.0, float((x @ x) / (x @ y))
    i = int(np.argmax(x))  # one point, or no slope: all of it per FLOP at the largest
    return 0.0, float(x[i] / max(y[i], 1e-12))


class Calibrator:
    """Collects the rates, each with its source."""

    def __init__(self, node: str, tmp: Path) -> None:
        self.node, self.tmp = node, tmp
        self.rates: dict[str, dict[str, Any]] = {}
        load = os.getloadavg()[0]
        self.where = f"measured on {node} ({platform.processor() or platform.machine()}, " \
                     f"{os.cpu_count()} CPUs, host {socket.gethostname()}, " \
                     f"{time.strftime('%Y-%m-%d')}, load {load:.1f} at start) with " \
                     "benchmarks/calibrate.py, 1 torch thread, busy seconds"

    def put(self, name: str, value: float, unit: str, how: str) -> None:
        """A plain figure."""
        self.rates[name] = {"value": float(value), "unit": unit,
                            "source": f"{self.where}: {how}"}
        print(f"  {name:<34} {value:>12.5g} {unit}", flush=True)

    def put_line(self, name: str, points: list[tuple[str, float, float]], how: str) -> None:
        """A linear rate fitted to (size, flops, seconds) points: the family's line over all
        of them and, per model size, its own (two or more batches), or the family's slope
        through its one point."""
        fixed, rate = fit_line([(f, y) for _, f, y in points])
        pts = ", ".join(f"{z or '-'} {f / 1e9:.3g} GFLOP in {y * 1e3:.3g} ms"
                        for z, f, y in points)
        entry: dict[str, Any] = {"fixed_s": fixed, "flops_per_s": rate,
                                 "source": f"{self.where}: {how}; fitted to {pts}"}
        sizes: dict[str, Any] = {}
        for size in sorted({z for z, _, _ in points if z}):
            mine = [(f, y) for z, f, y in points if z == size]
            if len({f for f, _ in mine}) > 1:
                f0, r0 = fit_line(mine)
            else:
                f0, r0 = max(0.0, mine[0][1] - mine[0][0] / rate), rate
            sizes[size] = {"fixed_s": f0, "flops_per_s": r0}
        if len(sizes) > 1:
            entry["sizes"] = sizes
        self.rates[name] = entry
        print(f"  {name:<34} fixed {fixed * 1e3:8.3f} ms  {rate / 1e9:8.2f} GFLOP/s  "
              f"({len(points)} points)", flush=True)
        for size, line in sizes.items() if len(sizes) > 1 else ():
            print(f"    {size:<32} fixed {line['fixed_s'] * 1e3:8.3f} ms  "
                  f"{line['flops_per_s'] / 1e9:8.2f} GFLOP/s", flush=True)


def _cfg(kind: str, size: list[str], *more: str) -> Config:
    from mtdiff.methods import get_method

    m = get_method(kind)
    return apply_overrides(get_preset("local"), [f"model.kind={m.kind}", *m.overrides, *size,
                                                 "model.dropout=0.0", *more])
