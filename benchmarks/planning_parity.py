"""Success parity of fast planners: teacher DDIM-20 vs its compiled loop vs the student
(and vs the teacher at fewer sampler steps, `fewer`: DDIM-10 as the local preset plans).

Every setting plays the same episodes: the evaluation stage's jobs (`plan_jobs`: Maze2D
training + unseen maps, or Meta-World tasks; no wrong-prompt runs), the same seeds, start
states, goals and prompts, run by the stage's own `run_job` in this process (or in
--workers processes). Per setting it prints the success rate with a stratified
bootstrap 95% CI (episodes resampled within each task / map), the paired difference
against the teacher with its CI (the same resampled episodes for both), and env steps/s
(planning included; per wall second, and per CPU second of the one-thread worker, which
a shared machine's load moves far less; "speed" is the CPU-second ratio against the
teacher). A setting is "at parity" only if the difference's CI contains 0 and is
narrower than 10 points.

    python benchmarks/planning_parity.py --checkpoint TEACHER --student STUDENT \\
        --suite maze2d --episodes 40 [--settings teacher compiled student fewer] [--out FILE]
    python benchmarks/planning_parity.py --checkpoint TEACHER --student STUDENT \\
        --suite metaworld --tasks MT10 --episodes 20

--out writes the JSON that `benchmarks/planning_speed.py --parity` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.config import DiffusionConfig, from_dict
from mtdiff.eval.suites import EvalJob, run_job


def _job(args: tuple[EvalJob, str, DiffusionConfig, float]) -> dict[str, Any]:
    """One evaluation job, plus the CPU seconds it used (this process, one thread)."""
    c0 = time.process_time()
    res = run_job(*args)
    return {**res, "cpu_seconds": time.process_time() - c0}


def bootstrap(success: np.ndarray, groups: np.ndarray, reps: int, seed: int) -> np.ndarray:
    """Means (reps, S) of success (E, S) over episodes resampled within each group (E,)."""
    rng = np.random.default_rng(seed)
    total = np.zeros((reps, success.shape[1]))
    for g in np.unique(groups):
        x = success[groups == g]  # (n_g, S)
        idx = rng.integers(0, len(x), size=(reps, len(x)))  # (reps, n_g)
        total += x[idx].sum(axis=1)  # (reps, S)
    return total / len(success)


def settings_for(args: argparse.Namespace, teacher_cfg: Any) -> list[dict[str, Any]]:
    """(name, method, checkpoint, diffusion) of each requested setting."""
    base = dataclasses.replace(teacher_cfg.diffusion, sampler=args.teacher_sampler,
                               sample_steps=args.teacher_steps, compile="off")
    teacher_method = f"{args.teacher_sampler.upper()}-{args.teacher_steps}"
    out = []
    for s in args.settings:
        if s == "teacher":
            out.append({"name": f"teacher {teacher_method}", "method": teacher_method,
                        "checkpoint": args.checkpoint, "diffusion": base})
        elif s == "compiled":
            out.append({"name": f"teacher {teacher_method} compiled ({args.compile})",
                        "method": teacher_method, "checkpoint": args.checkpoint,
                        "diffusion": dataclasses.replace(base, compile=args.compile)})
        elif s == "fewer":
            fewer = f"{args.teacher_sampler.upper()}-{args.fewer_steps}"
            out.append({"name": f"teacher {fewer}", "method": fewer,
                        "checkpoint": args.checkpoint,
                        "diffusion": dataclasses.replace(base, sample_steps=args.fewer_steps)})
        elif s == "student":
            if not args.student:
                raise SystemExit("error: the 'student' setting needs --student CKPT")
            from mtdiff.artifacts import Checkpoint

            meta = Checkpoint.find(args.student).meta
            if "student" not in meta:
                raise SystemExit(f"error: {args.student} is not a distilled student checkpoint")
            steps = meta["student"]["steps"]
            out.append({"name": f"student-{steps}", "method": f"student-{steps}",
                        "checkpoint": args.student,
                        "diffusion": from_dict(meta["config"]).diffusion})
    return out


def main() -> None:
    """Evaluate every setting on the same episodes and print the parity table."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="the teacher (MTDiff-P) checkpoint")
    p.add_argument("--student", help="a distilled student checkpoint (pipelines/distill.py)")
    p.add_argument("--suite", choices=("maze2d", "metaworld"), required=True)
    p.add_argument("--episodes", type=int, default=20, help="per task / map and seed")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--tasks", nargs="+", help="Meta-World tasks (default: the trained ones)")
    p.add_argument("--maps", nargs="+", help="Maze2D maps (default: training + unseen)")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--settings", nargs="+", default=["teacher", "compiled", "student"],
                   choices=("teacher", "compiled", "student", "fewer"))
    p.add_argument("--teacher-sampler", default="ddim", choices=("ddim", "ddpm", "dpmsolver"))
    p.add_argument("--teacher-steps", type=int, default=20)
    p.add_argument("--fewer-steps", type=int, default=10,
                   help="the 'fewer' setting: the teacher's own sampler at this many steps "
                        "(the local preset plans with DDIM-10)")
    p.add_argument("--compile", default="inductor", help="diffusion.compile of 'compiled'")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--bootstrap", type=int, default=10_000)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()

    from mtdiff.artifacts import Checkpoint
    from mtdiff.eval.stage import plan_jobs

    meta = Checkpoint.find(args.checkpoint).meta
    cfg = from_dict(meta["config"])
    ecfg = dataclasses.replace(cfg.eval, episodes=args.episodes, seeds=tuple(args.seeds),
                               max_steps=args.max_steps or cfg.eval.max_steps)
    jobs = [dataclasses.replace(j, keep_paths=False) for j in plan_jobs(
        args.suite, meta, cfg, ecfg, tasks=args.tasks, maps=args.maps, wrong_prompt=False)]
    settings = settings_for(args, cfg)
    print(f"{args.suite}: {len(jobs)} jobs x {args.episodes} episodes, settings "
          f"{[s['name'] for s in settings]}", flush=True)
    results = []
    for s in settings:
        work = [(j, str(Path(s["checkpoint"]).resolve()), s["diffusion"],
                 ecfg.target_return) for j in jobs]
        t0 = time.time()
        if args.workers > 1:
            with ProcessPoolExecutor(args.workers) as ex:
                res = list(ex.map(_job, work))
        else:
            res = [_job(w) for w in work]
        wall = time.time() - t0
        steps = sum(r["env_steps"] for r in res)
        results.append({**s, "jobs": res, "wall": wall, "env_steps": steps,
                        "env_steps_per_s": steps / sum(r["seconds"] for r in res),
                        "env_steps_per_cpu_s": steps / sum(r["cpu_seconds"] for r in res),
                        "compile_seconds": sum(r["compile_seconds"] for r in res),
                        "plan_seconds": sum(r["plan_seconds"] for r in res)})
        sr = np.mean(np.concatenate([r["success"] for r in res]))
        print(f"  {s['name']:<36} success {sr:.3f}  {results[-1]['env_steps_per_s']:.1f} env "
              f"steps/s, {results[-1]['env_steps_per_cpu_s']:.1f} per CPU s ({wall:.0f} s)",
              flush=True)
    report(args, results)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    """Bootstrap CIs, paired differences against the first setting, the table and JSON."""
    groups = np.concatenate([[f"{r['task']}/{r['seed']}"] * len(r["success"])
                             for r in results[0]["jobs"]])
    succ = np.stack([np.concatenate([np.asarray(r["success"], float) for r in s["jobs"]])
                     for s in results], axis=1)  # (episodes, settings), same episode order
    means = bootstrap(succ, groups, args.bootstrap, seed=0)  # (reps, settings)
    lo, hi = np.percentile(means, [2.5, 97.5], axis=0)
    diff = means - means[:, :1]
    dlo, dhi = np.percentile(diff, [2.5, 97.5], axis=0)
    base_rate = results[0]["env_steps_per_cpu_s"]
    print(f"\n{args.suite}, {len(succ)} episodes per setting ({len(np.unique(groups))} task/seed"
          f" groups), bootstrap {args.bootstrap} stratified\n")
    print(f"{'setting':<38}{'success':>8}{'95% CI':>16}{'diff vs ' + results[0]['method']:>16}"
          f"{'95% CI of diff':>20}{'parity':>8}{'env steps/s':>13}{'per CPU s':>11}"
          f"{'speed':>7}")
    rows = []
    for i, s in enumerate(results):
        width = dhi[i] - dlo[i]
        at = bool(i > 0 and dlo[i] <= 0.0 <= dhi[i] and width < 0.10)
        mark = "-" if i == 0 else ("yes" if at else "no")
        print(f"{s['name']:<38}{succ[:, i].mean():>8.3f}{f'[{lo[i]:.3f}, {hi[i]:.3f}]':>16}"
              f"{succ[:, i].mean() - succ[:, 0].mean():>+16.3f}"
              f"{f'[{dlo[i]:+.3f}, {dhi[i]:+.3f}]':>20}{mark:>8}"
              f"{s['env_steps_per_s']:>13.1f}{s['env_steps_per_cpu_s']:>11.1f}"
              f"{s['env_steps_per_cpu_s'] / base_rate:>6.1f}x")
        rows.append({"name": s["name"], "method": s["method"], "checkpoint": s["checkpoint"],
                     "success": float(succ[:, i].mean()), "ci": [float(lo[i]), float(hi[i])],
                     "diff": float(succ[:, i].mean() - succ[:, 0].mean()),
                     "diff_ci": [float(dlo[i]), float(dhi[i])], "at_parity": at,
                     "env_steps_per_s": s["env_steps_per_s"], "env_steps": s["env_steps"],
                     "env_steps_per_cpu_s": s["env_steps_per_cpu_s"],
                     "wall_seconds": s["wall"], "plan_seconds": s["plan_seconds"],
                     "compile_seconds": s["compile_seconds"],
                     "diffusion": dataclasses.asdict(s["diffusion"])})
    by_group = {}
    for g in np.unique(groups):
        by_group[str(g)] = [float(succ[groups == g, i].mean()) for i in range(len(results))]
    print("\nper task/map (success per setting): " + "; ".join(
        f"{g}: {' / '.join(f'{v:.2f}' for v in vals)}" for g, vals in by_group.items()))
    if args.out:
        from mtdiff.data.io import atomic_write_json

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(args.out), {
            "suite": args.suite, "episodes": int(len(succ)), "seeds": args.seeds,
            "episodes_per_task": args.episodes, "bootstrap": args.bootstrap,
            "parity_rule": "CI of the difference contains 0 and is narrower than 0.10",
            "settings": rows, "by_group": by_group})
        print(f"results: {args.out}")


if __name__ == "__main__":
    main()
