"""The evaluation stage: fan jobs out over Ray, summarise, plot, write JSON, log to MLflow."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from mtdiff import tracking
from mtdiff.artifacts import Evaluation, Inputs
from mtdiff.config import Config, DiffusionConfig, EvalConfig, config_hash, to_dict
from mtdiff.config.suites import MUJOCO_SUITES, section_name
from mtdiff.data.io import atomic_write_json
from mtdiff.data.prompts import load_prompts
from mtdiff.data.windows import checkpoint_return_info, resolve_target
from mtdiff.eval.bootstrap import episode_intervals
from mtdiff.eval.state_use import check_checkpoint
from mtdiff.eval.state_use import metrics as state_use_metrics
from mtdiff.eval.suites import EvalJob, run_job, summarize
from mtdiff.layout import evaluation_file, evaluation_jobs_dir
from mtdiff.methods import get_method, method_of_meta
from mtdiff.runtime import init_ray, pause_for_tests


def plan_jobs(suite: str, meta: dict[str, Any], cfg: Config, ecfg: EvalConfig, *,
              tasks: list[str] | None, maps: list[str] | None,
              wrong_prompt: bool) -> list[EvalJob]:
    """Jobs for every (task or map, seed); Maze2D adds wrong-prompt runs on unseen maps."""
    jobs: list[EvalJob] = []
    if suite == "maze2d":
        # (pulls in gymnasium, mujoco: imported on use)
        from mtdiff.envs.maze2d import load_map

        steps = ecfg.max_steps or cfg.maze2d.eval_episode_steps
        names = maps or [*meta["tasks"], *cfg.maze2d.unseen_maps]
        train = set(meta["tasks"])
        for spec in names:
            name = load_map(spec).name
            group = "train" if name in train else "unseen"
            for seed in ecfg.seeds:
                jobs.append(EvalJob(suite, spec, seed, ecfg.episodes, steps, keep_paths=True,
                                    extra={"group": group, "prompt": "own", "spec": spec}))
                if wrong_prompt and group == "unseen":
                    other = next(t for t in meta["tasks"] if t != name)
                    jobs.append(EvalJob(suite, spec, seed, ecfg.episodes, steps,
                                        prompt_task=other,
                                        extra={"group": "unseen", "prompt": "wrong",
                                               "spec": spec}))
    elif suite in MUJOCO_SUITES:
        jobs = _mujoco_jobs(suite, meta, cfg, ecfg, tasks)
    else:
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.metaworld import MAX_EPISODE_STEPS, resolve_tasks

        steps = ecfg.max_steps or MAX_EPISODE_STEPS
        names = resolve_tasks(",".join(tasks)) if tasks else meta["tasks"]
        jobs = [EvalJob(suite, t, seed, ecfg.episodes, steps,
                        stop_on_success=ecfg.stop_on_success,
                        extra={"group": "train" if t in meta["tasks"] else "heldout",
                               "prompt": "own"})
                for t in names for seed in ecfg.seeds]
    return jobs


def _mujoco_jobs(suite: str, meta: dict[str, Any], cfg: Config, ecfg: EvalConfig,
                 tasks: list[str] | None) -> list[EvalJob]:
    """Cheetah-vel / Ant-dir: the trained tasks and the held-out tasks the dataset has
    prompts for (or `tasks`), `ecfg.episodes` full episodes each; scored by return."""
    # (pulls in gymnasium: imported on use)
    from mtdiff.envs.mujoco_tasks import resolve_tasks

    sc = cfg.suite_section(suite)
    steps = ecfg.max_steps or sc.episode_steps
    prompts_at = Path(meta["prompts"]).parent
    have = set(load_prompts(prompts_at)) if Path(meta["prompts"]).exists() else set()
    if tasks:
        names = resolve_tasks(",".join(tasks), suite=suite)
        missing = [t for t in names if t not in have and t not in meta["tasks"]]
        if missing:
            raise ValueError(f"no prompts for {', '.join(missing)} in {prompts_at}; collect "
                             f"them as held-out tasks ({section_name(suite)}.heldout_tasks)")
    else:
        held = resolve_tasks(sc.heldout_tasks, suite=suite) if sc.heldout_tasks.strip() else []
        names = [*meta["tasks"], *(t for t in held if t in have and t not in meta["tasks"])]
    return [EvalJob(suite, t, seed, ecfg.episodes, steps, stop_on_success=False,
                    extra={"group": "train" if t in meta["tasks"] else "heldout",
                           "prompt": "own"})
            for t in names for seed in ecfg.seeds]


class JobRecords:
    """Each finished evaluation job's result on disk (one JSON per job, written atomically),
    keyed by everything that decides it: the checkpoint (path and step), the sampler
    settings, the target return and the job (task, seed, episodes, steps, prompt). A rerun
    of a killed evaluation takes the finished jobs from here and runs only the rest; a
    change of any of those settings misses. Cleared once the evaluation's JSON is written."""

    def __init__(self, root: Path, checkpoint: Path, step: int | None,
                 diffusion: DiffusionConfig, target: float | None):
        self.root = root
        self._base = {"checkpoint": str(Path(checkpoint).resolve()), "step": step,
                      "diffusion": diffusion.identity(), "target_return": target}

    def _path(self, job: EvalJob) -> Path:
        return self.root / f"{config_hash({**self._base, 'job': job})}.json"

    def get(self, job: EvalJob) -> dict[str, Any] | None:
        path = self._path(job)
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, job: EvalJob, result: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path(job), result)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _maze_figure(results: list[dict[str, Any]], path: Path) -> Path:
    """Fig. 4's kind of picture: each map with the agent's paths (own prompt, first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from mtdiff.envs.maze2d import draw_maze, load_map

    shown = [r for r in results if r.get("prompt") == "own" and r["seed"] == results[0]["seed"]]
    n = len(shown)
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, r in zip(axes.flat, shown, strict=False):
        draw_maze(ax, load_map(r["spec"]), [np.asarray(p) for p in r["paths"][:10]])
        ax.set_title(f"{r['task']} ({r['group']}): {np.mean(r['success']):.0%}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(cfg: Config, inputs: Inputs, out: Path) -> Evaluation:
    """Evaluate the planner `inputs.model` (any planner method of `mtdiff.methods`) on the
    suite it was trained on, under `cfg` (resolved by the caller: `cfg.eval`, the sampler
    settings of `cfg.diffusion` for the diffusion planners, the suite's section for the
    prompts of maps the dataset has none of). `inputs.tasks` / `inputs.maps` restrict it,
    `inputs.wrong_prompt` adds Maze2D's wrong-prompt control. Writes the evaluation's JSON,
    plots and, when `tracking.enabled`, its MLflow run; resumes from finished Ray tasks."""
    import ray
    from tqdm import tqdm

    found = inputs.need("model")
    ckpt, meta, step = found.path, found.meta, found.step
    suite = meta["suite"]
    if inputs.suite is not None and inputs.suite != suite:
        raise ValueError(f"the checkpoint was trained on {suite!r}, not {inputs.suite!r}")
    ecfg, dcfg = cfg.eval, cfg.diffusion
    method = method_of_meta(meta)
    if method.role != "planner":
        raise ValueError(f"{ckpt} holds a {method.label} checkpoint, which does not act in an "
                         "environment; give a planner's checkpoint (e.g. MTDiff-P, a baseline)")
    jobs = plan_jobs(suite, meta, cfg, ecfg, tasks=list(inputs.tasks) or None,
                     maps=list(inputs.maps) or None, wrong_prompt=inputs.wrong_prompt)
    target = None  # methods that do not condition on a return ignore it
    if method.diffusion or method.fields == "sequence":  # fails fast on an unreachable R
        target = resolve_target(checkpoint_return_info(meta), ecfg.target_return)
    out = Path(out).resolve()
    records = JobRecords(evaluation_jobs_dir(out, suite), ckpt, step, dcfg, target)
    # Each result at its job's index, not in the order the tasks finished: the JSON (and
    # the report's task lists read from it) are the same on every run.
    results: list[dict[str, Any]] = [records.get(j) or {} for j in jobs]
    todo = [i for i, r in enumerate(results) if not r]
    if len(todo) < len(jobs):
        print(f"[evaluate] {len(jobs) - len(todo)} of {len(jobs)} jobs finished by an "
              f"interrupted run of this evaluation ({records.root}); running the other "
              f"{len(todo)}")
    init_ray()
    # "DEFAULT": the jobs go to any node, not into the placement group of a caller that
    # holds one (a Tune trial evaluating what it trained), whose bundle they may not fit.
    remote = ray.remote(run_job).options(num_cpus=ecfg.num_cpus_per_actor,
                                         num_gpus=ecfg.num_gpus_per_actor,
                                         scheduling_strategy="DEFAULT")
    t0 = time.time()
    # The state-use check runs beside the jobs (recomputed on a resumed evaluation: seconds).
    check = ray.remote(check_checkpoint).options(
        num_cpus=ecfg.num_cpus_per_actor, num_gpus=ecfg.num_gpus_per_actor,
        scheduling_strategy="DEFAULT").remote(
        str(ckpt), windows_per_task=ecfg.state_use_windows, diffusion=dcfg,
        target_return=target) if ecfg.state_use_windows else None
    index = {remote.remote(jobs[i], str(ckpt), dcfg, target, cfg=cfg): i for i in todo}
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"evaluate {suite}",
              unit="job") as bar:
        pending = list(index)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            results[i] = ray.get(done[0])
            records.put(jobs[i], results[i])  # a killed evaluation reruns only the rest
            bar.update(1)
            pause_for_tests("eval_jobs", len(jobs) - len(pending))  # kill tests
    state_use = _state_use(check)
    wall = time.time() - t0
    own = [r for r in results if r.get("prompt", "own") == "own"]
    summary: dict[str, Any] = {"suite": suite, "checkpoint": str(ckpt), "wall_seconds": wall,
                               "method": method.name, "diffusion": to_dict(dcfg),
                               "eval": to_dict(ecfg), "target_return": target,
                               "all": {**summarize(own), **episode_intervals(own)},
                               "state_use": state_use}
    for group in ("train", "unseen", "heldout"):
        sel = [r for r in own if r.get("group") == group]
        if sel:
            summary[group] = {**summarize(sel), **episode_intervals(sel)}
    wrong = [r for r in results if r.get("prompt") == "wrong"]
    if wrong:
        summary["unseen_wrong_prompt"] = {**summarize(wrong), **episode_intervals(wrong)}
    # Throughput of the jobs this call ran (a resumed evaluation's wall time excludes the
    # jobs it took from disk); how many it took is in the summary.
    summary["reused_jobs"] = len(jobs) - len(todo)
    summary["env_steps_per_s"] = sum(results[i]["env_steps"] for i in todo) / max(wall, 1e-9)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(evaluation_file(out, suite), {"summary": summary, "episodes": [
        {k: v for k, v in r.items() if k != "paths"} for r in results]})
    records.clear()  # the evaluation's JSON holds every job now
    artifacts = [evaluation_file(out, suite), _task_figure(summary, out / "success-per-task.png")]
    if suite == "maze2d":
        artifacts.append(_maze_figure(results, out / "maze2d-paths.png"))
    if cfg.tracking.enabled:
        _log(cfg, summary, artifacts, out, Path(ckpt).parent.name)
    groups = {g: summary[g]["success_mean"] for g in
              ("all", "train", "unseen", "unseen_wrong_prompt", "heldout") if g in summary}
    return Evaluation.of(out, suite, checkpoint=str(ckpt), success=groups,
                         env_steps_per_s=summary["env_steps_per_s"])


def _state_use(check: Any) -> dict[str, Any]:
    """The state-use check's result (`mtdiff.eval.state_use`); a check that failed is
    recorded as missing, with its error, rather than losing the evaluation's episodes."""
    import sys

    import ray

    if check is None:
        return {"missing": "off (eval.state_use_windows=0)"}
    try:
        return ray.get(check)
    except Exception as e:  # noqa: BLE001 - any failure of the check, reported in its place
        print(f"[evaluate] state-use check failed: {type(e).__name__}: {e}", file=sys.stderr)
        return {"missing": f"the check failed: {type(e).__name__}: {e}"}


def _task_figure(summary: dict[str, Any], path: Path) -> Path:
    """Success per task (or map), mean ± std over seeds, one bar each; the average return
    where a suite has no success (Cheetah-vel, Ant-dir)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = summary["all"]["tasks"]
    names = [Path(t).stem for t in tasks]
    key = "success" if all(v["success_mean"] is not None for v in tasks.values()) else "return"
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(names) + 1.5), 3.2))
    ax.bar(range(len(names)), [v[f"{key}_mean"] for v in tasks.values()],
           yerr=[v[f"{key}_std"] or 0.0 for v in tasks.values()], capsize=2, color="tab:blue")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    if key == "success":
        ax.set_ylim(0, 1.05)
    ax.set_ylabel(key if key == "success" else "average return")
    ax.set_title(f"{summary['suite']}: {key} per task (seeds {summary['all']['seeds']})",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log(cfg: Config, summary: dict[str, Any], artifacts: list[Path], out: Path,
         run: str) -> None:
    """Into the job's run (or a run of its own): settings, headline and per-task success,
    the per-task table and the plots."""
    # The settings used (they override the checkpoint's config when given on the command
    # line); inside a job its run already holds them. The sampler's only for diffusion.

    settings = {"method": summary["method"],
                **{f"eval.{k}": v for k, v in summary["eval"].items()}}
    if get_method(summary["method"]).diffusion:
        settings.update({f"diffusion.{k}": v for k, v in summary["diffusion"].items()})
    with tracking.stage_run(cfg, "evaluate", name=f"evaluate-{summary['suite']}-{run}",
                            output=out, params=settings, suite=summary["suite"]):
        metrics = {"success_mean": summary["all"]["success_mean"],
                   "success_std": summary["all"]["success_std"],
                   "return_mean": summary["all"]["return_mean"],
                   "return_std": summary["all"]["return_std"],
                   "env_steps_per_s": summary["env_steps_per_s"],
                   "wall_seconds": summary["wall_seconds"],
                   "compile_seconds": summary["all"].get("compile_seconds", 0.0)}
        # 95% intervals over this seed's episodes (`bootstrap.episode_intervals`)
        bounds = [f"{m}_ci_{b}" for m in ("success", "return") for b in ("low", "high")]
        metrics.update({k: summary["all"].get(k) for k in bounds})
        for group in ("train", "unseen", "heldout", "unseen_wrong_prompt"):
            if group in summary:
                metrics[f"{group}_success_mean"] = summary[group]["success_mean"]
                metrics[f"{group}_return_mean"] = summary[group]["return_mean"]
                metrics.update({f"{group}_{k}": summary[group].get(k) for k in bounds})
        for t, v in summary["all"]["tasks"].items():
            metrics[f"success/{Path(t).stem}"] = v["success_mean"]
            metrics[f"return/{Path(t).stem}"] = v["return_mean"]
        metrics.update(state_use_metrics(summary.get("state_use", {})))
        # Success is undefined (None) where a suite has none (Cheetah-vel, Ant-dir).
        tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})
        tracking.log_table([{"task": Path(t).stem, **v}
                            for t, v in summary["all"]["tasks"].items()], "success_per_task.json")
        per_task = summary.get("state_use", {}).get("per_task", {})
        if per_task:
            tracking.log_table([{"task": t, **v} for t, v in per_task.items()],
                               "state_use_per_task.json")
        for a in artifacts:
            tracking.log_artifact(a)
