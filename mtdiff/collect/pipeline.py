"""The collection stage: one Ray task per environment task, then prompts and the manifest.

    run(cfg, suite="maze2d", out=DIR)

1. If DIR already holds a complete dataset of the same config hash, nothing is done.
2. Every task (Maze2D map, Meta-World task) runs as one Ray task that streams its
   transitions into ``DIR/data/<task>/`` through a resumable `TaskWriter`, and returns
   its prompt windows (J-step cuts of expert demonstrations). Tasks that only need
   prompts (unseen maps, held-out Meta-World tasks) run the same way without data.
3. The driver shows progress (transitions on disk, polled from the task indexes), then
   writes ``prompts.parquet`` and finally ``manifest.json``.

A killed run is resumed by running the same command: tasks already complete are
skipped, a task cut short restarts after its last committed shard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.collect.maze2d import plan_maze2d
from mtdiff.collect.metaworld import plan_metaworld
from mtdiff.collect.mujoco import plan_mujoco
from mtdiff.collect.plan import SuitePlan, TaskJob
from mtdiff.config import Config, to_dict
from mtdiff.data.prompts import write_prompts
from mtdiff.data.reader import validate_dataset
from mtdiff.data.schema import DatasetError
from mtdiff.data.writer import INDEX, MANIFEST, TaskIndex, finalize_dataset, task_dir
from mtdiff.runtime import init_ray, set_torch_threads
from mtdiff.tracking import remote as tracking_remote
from mtdiff.tracking.remote import live_parent


def _rows_on_disk(root: Path, task: str) -> int:
    path = task_dir(root, task) / INDEX
    try:
        return TaskIndex.load(path).rows if path.exists() else 0
    except (OSError, json.JSONDecodeError, TypeError):
        return 0


def _plan(cfg: Config, suite: str) -> SuitePlan:
    if suite == "maze2d":
        return plan_maze2d(cfg)
    if suite == "metaworld":
        return plan_metaworld(cfg)
    if suite in ("cheetah-vel", "ant-dir"):
        return plan_mujoco(cfg, suite)
    raise DatasetError(f"unknown suite {suite!r}; use 'maze2d', 'metaworld', 'cheetah-vel' "
                       "or 'ant-dir'")


def planned_tasks(cfg: Config, suite: str) -> int:
    """How many Ray tasks collecting `suite` under `cfg` starts (data and prompt-only)."""
    return len(_plan(cfg, suite).jobs)


def run(cfg: Config, *, suite: str, out: str | Path, progress: bool = True) -> Path:
    """Collect `suite` under `cfg` into `out` (resumable); returns the dataset folder."""
    import ray
    from tqdm import tqdm

    root = Path(out)
    chash = cfg.collection_hash(suite)
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        found = json.loads(manifest_path.read_text()).get("config_hash")
        if found != chash:
            raise DatasetError(f"{root} already holds a dataset of another configuration (hash "
                               f"{found}, this one is {chash}); choose another --out or delete it")
        problems = validate_dataset(root, checksum=False)
        if not problems:
            print(f"[collect] {root} is complete for config {chash}; nothing to do")
            return root
        raise DatasetError(f"{root} is complete but invalid:\n  " + "\n  ".join(problems) +
                           f"\ndelete {root} and collect again")
    root.mkdir(parents=True, exist_ok=True)
    plan = _plan(cfg, suite)
    init_ray()
    remote = ray.remote(_run_job)
    live = tracking_remote.active_spec()  # tasks log their curves live under this run
    refs, by_task = {}, {}
    for job in plan.jobs:
        deps = [by_task[t] for t in job.after]  # resolved by Ray before the job starts
        ref = remote.options(num_cpus=cfg.collect.num_cpus_per_task,
                             num_gpus=cfg.collect.num_gpus_per_task if job.rows else 0,
                             name=f"collect:{suite}:{job.task}").remote(job, cfg, str(root), live,
                                                                          *deps)
        refs[ref], by_task[job.task] = job, ref
    total = sum(j.rows for j in plan.jobs)
    data_jobs = [j for j in plan.jobs if j.rows]
    prompts: dict[str, np.ndarray] = {}
    t0 = time.time()
    with tqdm(total=total, unit="tr", desc=f"collect {suite}", disable=not progress) as bar:
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
            for r in ready:
                job = refs[r]
                try:
                    prompts[job.task] = ray.get(r)
                except ray.exceptions.RayTaskError as e:
                    for other in pending:  # their committed shards stay for the resume
                        ray.cancel(other)
                    raise RuntimeError(f"collection of task {job.task!r} failed: {e.cause!r}; "
                                       "fix the cause and rerun the same command to resume"
                                       ) from e.cause
            done_rows = sum(_rows_on_disk(root, j.task) for j in data_jobs)
            if done_rows != bar.n:  # redraw on progress only (a log file gets one line each)
                bar.n = done_rows
                bar.refresh()
        # Maze2D goal episodes end at G, so the planned rows are an upper bound: the bar
        # ends at what was written, not at 45%.
        bar.total = bar.n
        bar.refresh()
    elapsed = time.time() - t0
    write_prompts(root, prompts, plan.obs_dim, plan.act_dim)
    manifest = finalize_dataset(
        root, suite=suite, source=plan.source, tasks=[j.task for j in data_jobs],
        config=to_dict({"collect": cfg.collect, suite: cfg.suite_section(suite)}),
        config_hash=chash, extra={"details": plan.details, "prompt_tasks": sorted(prompts),
                                  "collect_seconds": round(elapsed, 2)},
    )
    print(f"[collect] {suite}: {sum(t['transitions'] for t in manifest['tasks'].values())} "
          f"transitions of {len(data_jobs)} tasks in {elapsed:.1f}s -> {root} (config {chash})")
    return root


def _run_job(job: TaskJob, cfg: Config, root: str, live: dict[str, str] | None,
             *_after: Any) -> np.ndarray:
    set_torch_threads(1)
    with live_parent(live):
        return job.fn(job, cfg, root)
