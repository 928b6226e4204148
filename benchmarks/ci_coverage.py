"""How often the report's seed-level 95% intervals cover the true value, by simulation.

Draws n per-seed scores from a distribution of known mean, makes a cell of them with the
report's own functions (`mtdiff.report.stats.summarize`: Student's t over seeds) and
counts how often its interval holds the mean; the same for the difference of two cells
(`stats.difference`): over the same seeds (paired t on the per-seed differences) and over
different seeds (Welch's t). Beside them, in the same run, the percentile bootstrap over
seeds (`stats.bootstrap_ci`), which the report used before: on the values, and on the
per-seed differences (what a paired difference was).

    python benchmarks/ci_coverage.py --dist normal --draws 2000 --seed 0

Distributions (A; B for differences): normal N(50, 10^2), N(40, 10^2); lognormal
LN(0, 1), LN(-0.5, 1); bernoulli B(0.5), B(0.3). Ends with one JSON line: coverage_n<k>
(t), coverage_diff_n<k> (paired t), coverage_welch_n<k>, and bootstrap_coverage_n<k>,
bootstrap_coverage_diff_n<k> for the old method, at n = 2, 3, 5, 10 seeds.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence

import numpy as np

from mtdiff.report import stats

NS = (2, 3, 5, 10)
Draw = Callable[[np.random.Generator, int], np.ndarray]


def _dists() -> dict[str, tuple[Draw, float, Draw, float]]:
    """name -> (draw A, mean of A, draw B, mean of B)."""
    return {
        "normal": (lambda g, n: g.normal(50.0, 10.0, n), 50.0,
                   lambda g, n: g.normal(40.0, 10.0, n), 40.0),
        "lognormal": (lambda g, n: g.lognormal(0.0, 1.0, n), math.exp(0.5),
                      lambda g, n: g.lognormal(-0.5, 1.0, n), 1.0),
        "bernoulli": (lambda g, n: (g.random(n) < 0.5).astype(float), 0.5,
                      lambda g, n: (g.random(n) < 0.3).astype(float), 0.3),
    }


def _covers(ci: tuple[float | None, float | None], value: float) -> bool:
    lo, hi = ci
    return lo is not None and hi is not None and lo <= value <= hi


def coverage(dist: str, draws: int, seed: int, ns: Sequence[int] = NS,
             resamples: int = stats.RESAMPLES) -> dict[str, float]:
    """Coverage of each interval at each n, over `draws` simulated experiments."""
    draw_a, mu_a, draw_b, mu_b = _dists()[dist]
    rng = np.random.default_rng(seed)
    hits: dict[str, int] = {}
    for n in ns:
        for key in ("", "diff_", "welch_", "bootstrap_", "bootstrap_diff_"):
            hits[f"{key}n{n}"] = 0
        for _ in range(draws):
            a, b = draw_a(rng, n), draw_b(rng, n)
            cell_a = stats.summarize(dict(enumerate(a)))
            paired = stats.difference(cell_a, stats.summarize(dict(enumerate(b))))
            welch = stats.difference(cell_a, stats.summarize({n + i: v for i, v in
                                                             enumerate(b)}))
            assert paired is not None and welch is not None
            assert (paired.method, welch.method) == ("t", "welch")
            hits[f"n{n}"] += _covers((cell_a.ci_low, cell_a.ci_high), mu_a)
            hits[f"diff_n{n}"] += _covers((paired.ci_low, paired.ci_high), mu_a - mu_b)
            hits[f"welch_n{n}"] += _covers((welch.ci_low, welch.ci_high), mu_a - mu_b)
            hits[f"bootstrap_n{n}"] += _covers(stats.bootstrap_ci(a, resamples=resamples),
                                               mu_a)
            hits[f"bootstrap_diff_n{n}"] += _covers(
                stats.bootstrap_ci(a - b, resamples=resamples), mu_a - mu_b)
    return {f"coverage_{k}" if not k.startswith("bootstrap") else
            f"bootstrap_coverage_{k[len('bootstrap_'):]}": v / draws for k, v in hits.items()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dist", choices=sorted(_dists()), default="normal",
                   help="the distribution of the per-seed scores")
    p.add_argument("--draws", type=int, default=2000, help="simulated experiments per n")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulation")
    p.add_argument("--resamples", type=int, default=stats.RESAMPLES,
                   help="the old percentile bootstrap's resamples (the report's default)")
    args = p.parse_args(argv)
    if args.draws < 1:
        p.error(f"--draws must be >= 1, got {args.draws}")
    cov = coverage(args.dist, args.draws, args.seed, resamples=args.resamples)
    print(f"coverage of the true value by nominal {stats.LEVEL:.0%} intervals over seeds; "
          f"{args.dist}, {args.draws} draws per n, seed {args.seed}")
    print(f"{'n':>3} {'t':>7} {'bootstrap':>10} {'diff: paired t':>15} {'bootstrap':>10} "
          f"{'Welch t':>8}")
    for n in NS:
        print(f"{n:>3} {cov[f'coverage_n{n}']:>7.3f} {cov[f'bootstrap_coverage_n{n}']:>10.3f} "
              f"{cov[f'coverage_diff_n{n}']:>15.3f} "
              f"{cov[f'bootstrap_coverage_diff_n{n}']:>10.3f} {cov[f'coverage_welch_n{n}']:>8.3f}")
    print(json.dumps({"dist": args.dist, "draws": args.draws, "seed": args.seed,
                      "level": stats.LEVEL, **cov}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
