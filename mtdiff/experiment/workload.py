"""What one job of the graph costs: its work, read from its own config, priced by a
calibration (`mtdiff.experiment.rates`).

    <kind>_work(job, cal) -> Work(tasks=(Task(need, seconds, ...), ...), lead_s, tail_s)

A `Task` is a piece of the job that holds resources while it runs: the job's own Ray task
(synthesis, TD3-BC, ...), a trainer's workers, or each Ray task it fans out (one per
collected env task, one per evaluated task and seed). ``lead_s`` / ``tail_s`` are the
driver's serial parts that hold nothing (its task starting; summaries and manifests).

What each kind does, and so what it is priced by:

- collect: per env task, its env steps (scripted experts, or SAC: env steps + updates +
  evaluation episodes), the expert episodes its prompts are cut from;
- reference: the evaluation's tasks x seeds, twice (zero action, uniform random): env steps;
- train: ``train.steps`` steps of the method's network at batch M x tasks, plus the
  trainer's start, the dataset's loading and the checkpoints;
- evaluate: per task and seed, ``episodes`` envs for ``max_steps`` steps, each step one
  plan (``sample_steps`` denoiser calls at 2 x envs rows when guided) and the env steps;
  the state-use check beside it (3 plans of its windows);
- synthesize, offline, quality, subset: `mtdiff.experiment.workload_offline`;
- distill, report: their own loops (see the functions).

`mtdiff.experiment.cost.job_work` picks a job's function by its kind.

Episodes are priced at their full length: a planner that succeeds early (Meta-World with
``eval.stop_on_success``, Maze2D at G) costs less, so these are upper bounds there.
FLOPs of a network call come from the config's sizes (`mtdiff.experiment.flops`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mtdiff.config import Config
from mtdiff.experiment.flops import Net, network, sac_update_flops
from mtdiff.experiment.jobs import Job
from mtdiff.experiment.rates import Calibration


@dataclass(frozen=True)
class Task:
    """A piece of a job holding `need` (per bundle) for `seconds`; `bundles` are placed
    together (a trainer's workers); `after`: indices of the job's tasks it waits for."""

    need: dict[str, float]
    seconds: float
    bundles: int = 1
    after: tuple[int, ...] = ()


@dataclass(frozen=True)
class Work:
    """A job's cost (module docstring)."""

    tasks: tuple[Task, ...] = ()
    lead_s: float = 0.0
    tail_s: float = 0.0
    detail: dict[str, float] = field(default_factory=dict)  # what it counted, for --plan --json


# ----------------------------------------------------------------------------------------
# The suites' shapes (from the collection plan: tasks, dims, rows)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteShape:
    """What a suite's dataset looks like under a config."""

    obs_dim: int
    act_dim: int
    tasks: tuple[str, ...]  # tasks with data
    rows_per_task: int  # planned rows of one task (an upper bound for goal episodes)
    plan: Any  # mtdiff.collect.pipeline.SuitePlan


_SHAPES: dict[tuple[str, str], SuiteShape] = {}


def suite_shape(cfg: Config, suite: str) -> SuiteShape:
    """The suite's collection plan under `cfg` (cached by its collection hash)."""
    # (pulls in numpy: imported on use)
    from mtdiff.collect.pipeline import _plan

    key = (suite, cfg.collection_hash(suite))
    if key not in _SHAPES:
        plan = _plan(cfg, suite)
        data = [j for j in plan.jobs if j.rows]
        rows = data[0].rows if data else 0
        if suite == "maze2d" and cfg.maze2d.episodes == "goal":
            rows = cfg.maze2d.episodes_per_map * cfg.maze2d.episode_steps  # capped below
        _SHAPES[key] = SuiteShape(plan.obs_dim, plan.act_dim, tuple(j.task for j in data),
                                  rows, plan)
    return _SHAPES[key]


def _maze_episode_steps(cfg: Config, cal: Calibration) -> float:
    m = cfg.maze2d
    if m.episodes == "goal":  # ends at G: the measured mean length, up to the cap
        return min(m.episode_steps, cal.value("maze2d_goal_episode_steps"))
    return m.episode_steps


def task_rows(cfg: Config, suite: str, cal: Calibration) -> float:
    """Rows one task of the suite's dataset holds (expected, for Maze2D goal episodes)."""
    if suite == "maze2d":
        return cfg.maze2d.episodes_per_map * _maze_episode_steps(cfg, cal)
    return suite_shape(cfg, suite).rows_per_task


def _guided(cfg: Config, net: Net) -> bool:
    g = cfg.diffusion.guidance
    return net.diffusion and cfg.model.kind != "mtdiff-s" and g not in (0.0, 1.0)


def plan_s(cfg: Config, net: Net, rows: int, cal: Calibration, *,
           student: bool = False) -> float:
    """Seconds of one plan (or policy call) for `rows` environments on `cal`'s device; a
    distilled `student` makes `distill.student_steps` unguided calls."""
    if not net.diffusion:
        return cal.call_s(f"act.{net.family}", rows * net.call_flops, net.size)
    calls = cfg.distill.student_steps if student else cfg.diffusion.sample_steps
    width = rows * (2 if _guided(cfg, net) and not student else 1)
    return calls * cal.call_s(f"denoise.{net.family}", width * net.call_flops, net.size)


# ----------------------------------------------------------------------------------------
# Start-up costs
# ----------------------------------------------------------------------------------------

# Of a job's own Ray tasks, the share that start a new worker process (Ray keeps idle
# workers and reuses them; a job's task often finds one). The tasks a job fans out start
# in new ones: their driver holds its own worker meanwhile, and they come many at once.
NEW_WORKER_SHARE = 0.25


def fanned_out_start_s(cal: Calibration, suite: str | None = None) -> float:
    """A fanned-out task's start: a new worker, and the first env of `suite` in it."""
    return cal.value("worker_start_s") + (cal.value(f"import_s.{suite}") if suite else 0.0)


def job_start_s(cal: Calibration, suite: str | None = None) -> float:
    """A job's own task's start (`NEW_WORKER_SHARE` of them in a new worker, which pays
    for the imports and the first env of `suite`)."""
    return NEW_WORKER_SHARE * fanned_out_start_s(cal, suite) \
        + (1 - NEW_WORKER_SHARE) * cal.value("task_start_s")


# ----------------------------------------------------------------------------------------
# Per kind
# ----------------------------------------------------------------------------------------


def on_gpu(need: dict[str, float]) -> bool:
    """Whether a piece of work that holds `need` runs on a GPU."""
    return need.get("GPU", 0.0) > 0


def own_need(job: Job) -> dict[str, float]:
    """The CPUs and GPUs the job's own Ray task holds."""
    return {k: float(v) for k, v in job.resources.items() if k in ("CPU", "GPU") and v}


def inner_need(job: Job) -> dict[str, float]:
    """The CPUs and GPUs each Ray task the job fans out holds."""
    return {k: float(v) for k, v in job.inner.items() if k in ("CPU", "GPU") and v}


def _sac_run_s(cfg: Config, suite: str, steps: int, starts: int, episode_steps: int,
               od: int, ad: int, cal: Calibration) -> float:
    """A SAC run of `steps` env steps: the steps, the updates, the evaluation episodes."""
    sc = cfg.sac
    env = cal.value(f"sac_env_steps_per_s.{suite}")
    updates = max(0, steps - max(starts, sc.batch_size)) * sc.updates_per_step
    evals = (steps // sc.eval_every) * sc.eval_episodes * episode_steps
    return (steps + evals) / env + updates * cal.call_s("sac_update",
                                                       sac_update_flops(cfg, od, ad))


def collect_work(job: Job, cal: Calibration) -> Work:
    """One task per env task of the suite's collection plan (`TaskJob.after` kept)."""
    cfg, suite = job.cfg, job.params["suite"]
    shape = suite_shape(cfg, suite)
    c = cfg.collect
    start = fanned_out_start_s(cal, suite)
    names = [j.task for j in shape.plan.jobs]
    tasks, total_rows = [], 0.0
    for tj in shape.plan.jobs:
        need = {"CPU": c.num_cpus_per_task, **({"GPU": c.num_gpus_per_task}
                                               if tj.rows and c.num_gpus_per_task else {})}
        host = cal.on(on_gpu(need))
        if suite == "maze2d":
            ep = _maze_episode_steps(cfg, cal)
            rate = host.value("maze2d_collect_steps_per_s")
            rows = cfg.maze2d.episodes_per_map * ep if tj.rows else 0.0
            secs = (rows + c.prompt_episodes * ep) / rate
        elif suite == "metaworld":
            mw = cfg.metaworld
            prompts = c.prompt_episodes * mw.episode_steps / host.value(
                "metaworld_scripted_steps_per_s")
            rows = float(tj.rows)
            if not tj.rows:
                secs = prompts
            elif mw.source == "sac":
                secs = prompts + _sac_run_s(cfg, suite, tj.rows, cfg.sac.learning_starts,
                                            mw.episode_steps, shape.obs_dim, shape.act_dim,
                                            host)
            else:
                secs = prompts + tj.rows / host.value("metaworld_scripted_steps_per_s")
        else:  # Cheetah-vel, Ant-dir: SAC per task, expert episodes, prompts
            sc = cfg.suite_section(suite)
            T = sc.episode_steps
            train = tj.payload.role == "train"
            steps = sc.transitions_per_task if train else sc.heldout_transitions
            starts = 0 if getattr(tj.payload, "init_from", None) else cfg.sac.learning_starts
            policy_steps = c.prompt_episodes * T + (
                sc.expert_episodes * T if train and sc.dataset == "expert" else 0)
            rows = float(tj.rows)
            secs = _sac_run_s(cfg, suite, steps, starts, T, shape.obs_dim, shape.act_dim, host) \
                + policy_steps / host.value(f"sac_env_steps_per_s.{suite}")
        total_rows += rows
        tasks.append(Task(need, start + secs, after=tuple(names.index(a) for a in tj.after)))
    tail = cal.value("finalize_s") + total_rows / cal.value("load_rows_per_s")
    return Work(tuple(tasks), job_start_s(cal), tail,
                {"env_tasks": len(tasks), "rows": total_rows})


def _eval_jobs(cfg: Config, suite: str, shape: SuiteShape, wrong_prompt: bool) -> int:
    """How many (task or map, seed) batches `mtdiff.eval.stage.plan_jobs` makes."""
    seeds = len(cfg.eval.seeds)
    if suite == "maze2d":
        unseen = len(cfg.maze2d.unseen_maps)
        return (len(shape.tasks) + unseen * (2 if wrong_prompt else 1)) * seeds
    if suite == "metaworld":
        return len(shape.tasks) * seeds
    held = [t for t in shape.plan.jobs if not t.rows]
    return (len(shape.tasks) + len(held)) * seeds


def _eval_steps(cfg: Config, suite: str) -> int:
    if cfg.eval.max_steps:
        return cfg.eval.max_steps
    if suite == "maze2d":
        return cfg.maze2d.eval_episode_steps
    if suite == "metaworld":
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.metaworld import MAX_EPISODE_STEPS

        return MAX_EPISODE_STEPS
    return cfg.suite_section(suite).episode_steps


def _rollout_s(cfg: Config, suite: str, cal: Calibration) -> tuple[float, float]:
    """(seconds of making the envs, seconds of stepping them) of one evaluation batch."""
    n = cfg.eval.episodes
    return (n * cal.value(f"env_make_s.{suite}"),
            n * _eval_steps(cfg, suite) / cal.value(f"env_steps_per_s.{suite}"))


def reference_work(job: Job, cal: Calibration) -> Work:
    """Zero-action and uniform-random policies over the evaluation's batches."""
    cfg, suite = job.cfg, job.params["suite"]
    shape = suite_shape(cfg, suite)
    need = inner_need(job)
    host = cal.on(False)
    make, steps = _rollout_s(cfg, suite, host)
    n = 2 * _eval_jobs(cfg, suite, shape, wrong_prompt=False)
    task = Task(need, fanned_out_start_s(cal, suite) + make + steps)
    rows = len(shape.tasks) * task_rows(cfg, suite, cal)  # the dataset's own numbers
    return Work((task,) * n, job_start_s(cal),
                cal.value("finalize_s") + rows / cal.value("load_rows_per_s"),
                {"batches": n, "env_steps": n * cfg.eval.episodes * _eval_steps(cfg, suite)})


def _data_tasks(job: Job, shape: SuiteShape) -> int:
    """Tasks in a training job's dataset: one for a single task's (Fig. 6: its cell names
    the task), else the tasks of its config's collection (Fig. 7's sets: the set's)."""
    return 1 if "task" in job.config else len(shape.tasks)


def train_step_s(cfg: Config, net: Net, batch: int, cal: Calibration) -> float:
    """Seconds of one training step at `batch` samples on `cal`'s device."""
    return cal.call_s(f"train.{net.family}", batch * net.train_flops, net.size)


def train_work(job: Job, cal: Calibration) -> Work:
    """A trainer: its start, the dataset's load, `train.steps` steps, the checkpoints."""
    cfg, suite = job.cfg, job.config["suite"]
    shape = suite_shape(cfg, suite)
    n_tasks = _data_tasks(job, shape)
    net = network(cfg, suite, shape.obs_dim, shape.act_dim, len(shape.tasks))
    inner = dict(job.inner)
    workers = max(1, int(inner.get("workers", 1)))
    need = {k: inner.get(k, 0.0) / workers for k in ("CPU", "GPU") if inner.get(k)}
    dev = cal.on(on_gpu(need))
    batch = math.ceil(cfg.data.batch_per_task / workers) * n_tasks  # per worker
    t = cfg.train
    ckpts = math.ceil(t.steps / t.checkpoint_every)
    rows = n_tasks * task_rows(cfg, suite, cal)
    step = train_step_s(cfg, net, batch, dev)
    start = dev.value("trainer_start_s")
    # checksums, then the load (`train.stage.run`, `build_setup`)
    secs = (start + 2 * rows / cal.value("load_rows_per_s")
            + t.steps * step + ckpts * dev.value("checkpoint_s"))
    tasks = [Task(need, secs, bundles=workers)]
    # Ray Train's controller and helper actors reserve no CPU but keep more than the
    # worker's busy while the trainer starts: that work, as a task beside it
    extra = max(0.0, dev.value("trainer_start_cpus") - need.get("CPU", 0.0))
    if extra > 0:
        tasks.append(Task({"CPU": min(1.0, extra)}, start * extra / min(1.0, extra)))
    return Work(tuple(tasks), job_start_s(cal), 0.0,
                {"steps": t.steps, "batch": batch * workers, "step_s": step,
                 "gflop_per_step": batch * net.train_flops / 1e9})


def distill_work(job: Job, cal: Calibration) -> Work:
    """Teacher trajectories (guided, `teacher_steps` calls per batch), then the student's
    steps at `batch_size x student_steps` rows."""
    cfg, suite = job.cfg, job.config["suite"]
    shape = suite_shape(cfg, suite)
    dc = cfg.distill
    net = network(cfg, suite, shape.obs_dim, shape.act_dim, len(shape.tasks))
    need = own_need(job)
    dev = cal.on(on_gpu(need))
    width = 2 if _guided(cfg, net) else 1
    teacher = math.ceil((dc.samples + dc.val_samples) / dc.teacher_batch) * dc.teacher_steps \
        * dev.call_s(f"denoise.{net.family}", width * dc.teacher_batch * net.call_flops,
                     net.size)
    student = dc.steps * train_step_s(cfg, net, dc.batch_size * dc.student_steps, dev)
    rows = len(shape.tasks) * task_rows(cfg, suite, cal)
    secs = (job_start_s(cal) + dev.value("policy_load_s")
            + rows / cal.value("load_rows_per_s") + teacher + student
            + math.ceil(dc.steps / dc.checkpoint_every) * dev.value("checkpoint_s"))
    return Work((Task(need, secs),), 0.0, 0.0, {"steps": dc.steps})


def evaluate_work(job: Job, cal: Calibration) -> Work:
    """Per (task or map, seed): `episodes` envs stepped together, one plan per step; and
    the state-use check (3 plans of its windows) beside them."""
    cfg, suite = job.cfg, job.params["suite"]
    shape = suite_shape(cfg, suite)
    student = str(job.config.get("method", "")).endswith("-distill")
    net = network(cfg, suite, shape.obs_dim, shape.act_dim, len(shape.tasks))
    need = inner_need(job)
    dev, host = cal.on(on_gpu(need)), cal.on(False)
    n_jobs = _eval_jobs(cfg, suite, shape, wrong_prompt=True)
    make, env = _rollout_s(cfg, suite, host)
    steps = _eval_steps(cfg, suite)
    plans = steps * plan_s(cfg, net, cfg.eval.episodes, dev, student=student)
    start = fanned_out_start_s(cal, suite) + dev.value("policy_load_s")
    tasks = [Task(need, start + make + env + plans)] * n_jobs
    w = cfg.eval.state_use_windows
    if w:
        rows = len(shape.tasks) * task_rows(cfg, suite, cal)
        windows = w * len(shape.tasks)
        tasks.append(Task(need, start + rows / cal.value("load_rows_per_s")
                          + 3 * plan_s(cfg, net, windows, dev, student=student)))
    return Work(tuple(tasks), job_start_s(cal), cal.value("finalize_s"),
                {"batches": n_jobs, "plans": n_jobs * steps,
                 "env_steps": n_jobs * steps * cfg.eval.episodes})


def report_work(job: Job, cal: Calibration) -> Work:
    """The report: a fixed part and one record read per job of the graph."""
    n = len(job.params.get("graph", ()))
    secs = job_start_s(cal) + cal.value("report_s") + n * cal.value("report_job_s")
    return Work((Task(own_need(job) or {"CPU": 1.0}, secs),), 0.0, 0.0, {"records": n})
