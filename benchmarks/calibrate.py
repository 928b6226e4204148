"""Measure this node's rates for the cost model and write a calibration file.

Every rate `mtdiff.experiment.rates.RATES` names is measured through the project's own
code paths, one torch thread (as a Ray task or a 1-CPU training worker runs), in "busy"
seconds: process CPU time when other work took the core for a while (a shared machine),
else wall time, so the rates are those of one core of the node (Ray start-ups are wall
time):

- collection: the Maze2D and Meta-World collection jobs (`collect.*._maze_job`,
  `_scripted_job`) on one map / task, in process;
- data: `write_subset` and `load_dataset` of a random 10-task Meta-World-shaped dataset;
- training: the methods' learners (`build_learner(...).update`) at several sizes and
  batches per network family; each family's ``fixed_s`` and ``flops_per_s`` are the least-
  squares line through (FLOPs per step from the config, seconds per step);
- planning: whole evaluation batches (`mtdiff.eval.suites.run_job`) of untrained
  checkpoints at 1 and more environments, their `plan_seconds` per denoiser / policy call;
- environments: the reference policies' batches (`run_policy_job`, zero action);
- SAC and TD3-BC: their update steps (`SACAgent.update`, `TD3BC.train`), SAC's acting
  loop, TD3-BC's evaluation (`evaluate_policy`);
- Ray: a task's start in a new and in a reused worker, each suite's first env in a new
  process, a training through `mtdiff.train.run` (its fixed cost and the CPUs its start
  keeps busy), a checkpoint, a report.

    python benchmarks/calibrate.py [--out FILE] [--node NAME] [--only SECTION ...]

A few minutes on 2 cores. Prints a table; writes FILE (default
mtdiff/experiment/calibration/<node>.json), each rate with its source.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cpu_meter import descendants_cpu  # benchmarks/cpu_meter.py, beside this script

from mtdiff.artifacts import Dataset, Inputs
from mtdiff.config import Config, apply_overrides, get_preset
from mtdiff.experiment.flops import network
from mtdiff.experiment.rates import CALIBRATION_DIR, RATES, from_dict
from mtdiff.experiment.workload import sac_update_flops
from mtdiff.experiment.workload_offline import td3bc_update_flops
from mtdiff.runtime import set_torch_threads

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


# ----------------------------------------------------------------------------------------
# Datasets (collection rates on the way)
# ----------------------------------------------------------------------------------------


def collect_maze(c: Calibrator) -> Path:
    """One Maze2D map of goal episodes through the collection job; its rate and the mean
    episode length (the local preset's settings)."""
    from mtdiff.collect.maze2d import _maze_job, plan_maze2d
    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("local"), ["maze2d.train_maps=train-0",
                                                "maze2d.unseen_maps=unseen-0",
                                                "maze2d.episodes_per_map=60"])
    root = c.tmp / "maze"
    plan = plan_maze2d(cfg)
    with Clock() as clk:
        prompts = {j.task: _maze_job(j, cfg, str(root)) for j in plan.jobs}
    secs = clk.busy
    with Clock() as clk:
        write_prompts(root, prompts, plan.obs_dim, plan.act_dim)
        man = finalize_dataset(root, suite="maze2d", source="calibration", tasks=["train-0"],
                               config={}, config_hash="calibration")
    c.put("finalize_s", clk.busy + 0.5, "s",
          "prompts + manifest of a 1-map Maze2D dataset, + 0.5 s for a summary plot")
    rows = read_manifest(root)["tasks"]["train-0"]["transitions"]
    episodes = man["tasks"]["train-0"]["episodes"]
    prompt_steps = 2 * cfg.collect.prompt_episodes * rows / episodes  # 2 maps' demos
    c.put("maze2d_collect_steps_per_s", (rows + prompt_steps) / secs, "steps/s",
          f"local preset's goal episodes, {episodes} episodes of map train-0 + prompts")
    c.put("maze2d_goal_episode_steps", rows / episodes, "steps",
          f"mean length of {episodes} local-preset goal episodes (noise 0.2) on train-0")
    return root


def collect_metaworld(c: Calibrator, rows: int = 2500) -> Path:
    """reach-v3 through the scripted collection job (the local preset's settings)."""
    from mtdiff.collect.metaworld import _scripted_job, plan_metaworld
    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("local"), ["metaworld.tasks=reach-v3",
                                                f"metaworld.transitions_per_task={rows}"])
    root = c.tmp / "mw"
    plan = plan_metaworld(cfg)
    job = next(j for j in plan.jobs if j.task == "reach-v3")
    with Clock() as clk:
        prompts = {"reach-v3": _scripted_job(job, cfg, str(root))}
    secs = clk.busy
    write_prompts(root, prompts, plan.obs_dim, plan.act_dim)
    finalize_dataset(root, suite="metaworld", source="scripted", tasks=["reach-v3"],
                     config={}, config_hash="calibration")
    steps = job.rows + cfg.collect.prompt_episodes * cfg.metaworld.episode_steps
    c.put("metaworld_scripted_steps_per_s", steps / secs, "steps/s",
          f"scripted reach-v3, {job.rows} rows + {cfg.collect.prompt_episodes} prompt demos")
    return root


def data_rates(c: Calibrator) -> Path:
    """A random 10-task dataset (the training points' data); subset write and load rates."""
    from mtdiff.data.random_data import write_random_dataset
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.subset import write_subset

    root = c.tmp / "random10"
    write_random_dataset(root, tasks=10, episodes=8, episode_len=500, obs_dim=39, act_dim=4)
    rows = 10 * 8 * 500
    secs = timed(lambda: load_dataset(root), min_s=1.0, warmup=1)
    c.put("load_rows_per_s", rows / secs, "rows/s", f"load_dataset of {rows} rows (10 tasks)")
    tasks = [f"task-{i:02d}" for i in range(5)]
    n = [0]

    def write() -> None:
        n[0] += 1
        write_subset(root, c.tmp / f"subset-{n[0]}", tasks)

    secs = timed(write, min_s=1.0, warmup=0)
    c.put("write_rows_per_s", rows / 2 / secs, "rows/s",
          f"write_subset of 5 tasks ({rows // 2} rows: read, write, statistics)")
    return root


# ----------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------


def _cfg(kind: str, size: list[str], *more: str) -> Config:
    from mtdiff.methods import get_method

    m = get_method(kind)
    return apply_overrides(get_preset("local"), [f"model.kind={m.kind}", *m.overrides, *size,
                                                 "model.dropout=0.0", *more])


def train_points(data: Path, kind: str, size: list[str], batches: list[int],
                 min_s: float = 1.5) -> list[tuple[str, float, float]]:
    """(model size, FLOPs per step, seconds per step) of the method's learner at each
    batch per task."""
    from mtdiff.train.core import build_setup, to_torch
    from mtdiff.train.learner import build_learner

    pts = []
    for m in batches:
        cfg = _cfg(kind, size, f"data.batch_per_task={m}")
        setup = build_setup(cfg, data, batch_per_task=m)
        learner = build_learner(cfg, setup, torch.device("cpu"))
        net = network(cfg, "metaworld", 39, 4, len(setup.meta["tasks"]))
        batch = setup.sampler.batch_size
        secs = timed(lambda lr=learner, st=setup: lr.update(to_torch(st.sampler.sample(), "cpu")),
                     min_s=min_s, warmup=2)
        pts.append((net.size, batch * net.train_flops, secs))
        print(f"    {kind} {net.size} batch {batch}: {secs * 1e3:.1f} ms/step",
              flush=True)
    return pts


def training(c: Calibrator, data: Path) -> None:
    """The four families' training steps."""
    gpt = (train_points(data, "mtdiff-p", SMOKE, [1, 4])
           + train_points(data, "mtdiff-p", LOCAL, [2, 8])
           + train_points(data, "mtdiff-s", LOCAL, [8])
           + train_points(data, "mtdiff-p", PAPER, [1, 4], min_s=2.0))
    c.put_line("train.gpt2", gpt, "DiffusionLearner.update, MTDiff-P smoke/local/paper-sized "
               "and MTDiff-S local-sized, 10-task Meta-World-shaped batches")
    c.put_line("train.unet", train_points(data, "mtdiff-p-unet", LOCAL, [2, 8]),
               "DiffusionLearner.update, U-Net backbone at d_model 128 (dim 32)")
    c.put_line("train.dt", train_points(data, "promptdt", LOCAL, [2, 8])
               + train_points(data, "mtdt", LOCAL, [8]),
               "PromptDTLearner / MTDTLearner.update, local-sized GPT-2, context 20")
    c.put_line("train.mlp", train_points(data, "mtbc", [], [8])
               + train_points(data, "mtiql", [], [8, 40]) + train_points(data, "mtcql", [], [8]),
               "MTBC / MTIQL / MTCQL learners' update at the paper's widths")


def _checkpoint(data: Path, kind: str, size: list[str], out: Path) -> tuple[Path, Config]:
    """An untrained checkpoint of `kind` on `data` (as the Ray Train loop writes one)."""
    from mtdiff.train.checkpoints import write_checkpoint
    from mtdiff.train.core import build_setup
    from mtdiff.train.learner import build_learner

    cfg = _cfg(kind, size, "diffusion.sample_steps=10", "diffusion.sampler=ddim")
    setup = build_setup(cfg, data)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, **learner.state_dict(), step=0, meta=setup.meta)
    return out, cfg


def planning(c: Calibrator, mw: Path) -> None:
    """Evaluation batches of untrained checkpoints on reach-v3: seconds per denoiser or
    policy call from their plan time."""
    from mtdiff.eval.policy import load_policy
    from mtdiff.eval.suites import EvalJob, run_job

    lines: dict[str, list[tuple[str, float, float]]] = {}
    loads = []
    runs = (("mtdiff-p", SMOKE, (2, 8), 5), ("mtdiff-p", LOCAL, (1, 8), 10),
            ("mtdiff-p", PAPER, (1, 4), 5), ("mtdiff-p-unet", LOCAL, (1, 8), 10),
            ("promptdt", LOCAL, (1, 8), 0), ("mtdt", LOCAL, (1, 8), 0),
            ("mtbc", [], (1, 8), 0), ("mtiql", [], (8,), 0))
    for i, (kind, size, envs, steps) in enumerate(runs):
        ckpt, cfg = _checkpoint(mw, kind, size, c.tmp / f"ckpt-{i}")
        if steps:
            cfg = apply_overrides(cfg, [f"diffusion.sample_steps={steps}"])
        net = network(cfg, "metaworld", 39, 4, 1)
        with Clock() as clk:
            load_policy(ckpt, diffusion=cfg.diffusion)
        loads.append(clk.busy)
        for n in envs:
            # past the Decision Transformers' context (20 steps): their calls at full length
            T = 12 if net.diffusion else 45
            res = run_job(EvalJob("metaworld", "reach-v3", 0, n, T, stop_on_success=False),
                          str(ckpt), cfg.diffusion, None, cfg=cfg)
            with Clock() as clk:  # the second: warm
                res = run_job(EvalJob("metaworld", "reach-v3", 1, n, T, stop_on_success=False),
                              str(ckpt), cfg.diffusion, None, cfg=cfg)
            per_plan = res["plan_seconds"] * clk.share / T
            if net.diffusion:
                rows, calls = 2 * n, cfg.diffusion.sample_steps
                key = f"denoise.{net.family}"
            else:
                rows, calls = n, 1
                key = f"act.{net.family}"
            lines.setdefault(key, []).append((net.size, rows * net.call_flops, per_plan / calls))
            print(f"    {kind} {size[0] if size else ''} {n} envs: {per_plan * 1e3:.2f} ms/plan",
                  flush=True)
    how = {"denoise.gpt2": "run_job plan time of MTDiff-P smoke/local/paper-sized planners "
                           "(guided DDIM) / denoiser calls, 1-8 envs on reach-v3",
           "denoise.unet": "run_job plan time of the U-Net planner (d_model 128) / calls",
           "act.dt": "run_job policy time of Prompt-DT and MT-DT (local-sized), 1 and 8 envs",
           "act.mlp": "run_job policy time of MTBC and MTIQL, 1 and 8 envs"}
    for key, pts in lines.items():
        c.put_line(key, pts, how[key])
    c.put("policy_load_s", float(np.median(loads)), "s",
          "load_policy of untrained checkpoints (median over the methods)")


def envs(c: Calibrator, maze: Path, mw: Path) -> None:
    """Evaluation env steps/s and env making, through the reference (zero-action) jobs."""
    from mtdiff.eval.reference import ZeroPolicy
    from mtdiff.eval.suites import EvalJob, make_envs, run_policy_job

    cfg = get_preset("local")
    for suite, task, steps in (("maze2d", "train-0", 100), ("metaworld", "reach-v3", 100),
                               ("cheetah-vel", "cheetah-vel-0", 100),
                               ("ant-dir", "ant-dir-0", 100)):
        n = 6
        job = EvalJob(suite, task, 0, n, steps, stop_on_success=False)
        with Clock() as clk:
            made, name = make_envs(job)
        make = clk.busy / n
        obs_act = made[0].observation_space.shape[0] + made[0].action_space.shape[0]
        policy = ZeroPolicy(made[0].action_space, {name: np.zeros((4, 20, obs_act), np.float32)},
                            20)
        with Clock() as clk:
            res = run_policy_job(job, policy, cfg, made, name)
        secs = clk.busy
        c.put(f"env_make_s.{suite}", make, "s", f"make_envs of {n} {task} envs / {n}")
        c.put(f"env_steps_per_s.{suite}", res["env_steps"] / secs, "steps/s",
              f"run_policy_job, zero action, {n} {task} envs x {steps} steps")


# ----------------------------------------------------------------------------------------
# SAC, TD3-BC, Table 4
# ----------------------------------------------------------------------------------------


def sac(c: Calibrator) -> None:
    """SAC updates (paper and smoke widths) and the acting loop per suite."""
    from mtdiff.collect.mujoco import sac_env_for
    from mtdiff.collect.sac import ReplayBuffer, make_agent
    from mtdiff.collect.sac_env import metaworld_sac_env

    pts = []
    for hidden, batch in ((256, 256), (64, 64)):
        cfg = apply_overrides(get_preset("paper"), [f"sac.hidden={hidden}",
                                                    f"sac.batch_size={batch}"])
        agent = make_agent(cfg, 39, 4, 0)
        buf = ReplayBuffer(5000, 39, 4, batch, agent.device)
        rng = np.random.default_rng(0)
        buf.add_many(rng.normal(size=(5000, 39)).astype(np.float32),
                     rng.uniform(-1, 1, (5000, 4)).astype(np.float32), rng.random(5000),
                     rng.normal(size=(5000, 39)).astype(np.float32), np.zeros(5000))
        secs = timed(lambda a=agent, b=buf: a.update(b), min_s=1.0, warmup=3)
        pts.append(("", sac_update_flops(cfg, 39, 4), secs))
    c.put_line("sac_update", pts, "SACAgent.update (hidden/batch 256/256 and 64/64)")
    cfg = get_preset("paper")
    for suite, task in (("metaworld", "reach-v3"), ("cheetah-vel", "cheetah-vel-0"),
                        ("ant-dir", "ant-dir-0")):
        spec = metaworld_sac_env(cfg) if suite == "metaworld" else sac_env_for(cfg, suite,
                                                                               "train")
        agent = make_agent(cfg, spec.obs_dim, spec.act_dim, 0)
        buf = ReplayBuffer(2000, spec.obs_dim, spec.act_dim, 256, agent.device)
        env = spec.make(task, 0)
        obs, _ = env.reset(seed=0)
        n = 600
        with Clock() as clk:
            for _ in range(n):
                a = agent.act(obs)
                nxt, r, term, trunc, _ = env.step(a)
                buf.add(obs, a, float(r), nxt, term)
                obs = nxt if not (term or trunc) else env.reset()[0]
        c.put(f"sac_env_steps_per_s.{suite}", n / clk.busy, "steps/s",
              f"SAC acting loop on {task}: act + env step + buffer add, {n} steps")
        env.close()


def td3bc(c: Calibrator, mw: Path) -> None:
    """TD3-BC updates (paper and smoke widths) and its evaluation on reach-v3."""
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.transitions import from_task
    from mtdiff.offline.evaluate import evaluate_policy
    from mtdiff.offline.td3bc import TD3BC

    data = from_task(load_dataset(mw).tasks["reach-v3"])
    pts = []
    agent = None
    for hidden, batch in ((256, 256), (32, 32)):
        cfg = apply_overrides(get_preset("paper"), [f"offline.hidden={hidden}",
                                                    f"offline.batch_size={batch}"])
        agent = TD3BC(39, 4, cfg.offline, seed=0)
        agent.fit_normalizer(data.observations)
        sample = agent.batches(data)
        secs = timed(lambda a=agent, s=sample: a.train(s, 20, log_every=10**9), min_s=1.0)
        pts.append(("", td3bc_update_flops(cfg, 39, 4), secs / 20))
    c.put_line("td3bc_update", pts, "TD3BC.train (hidden/batch 256/256 and 32/32)")
    assert agent is not None
    with Clock() as clk:
        evaluate_policy(agent.act, "reach-v3", episodes=5, num_envs=5, max_episode_steps=300)
    c.put("td3bc_eval_steps_per_s", 5 * 300 / clk.busy, "steps/s",
          "evaluate_policy, reach-v3, 5 envs x 300 steps (TD3-BC actor; local's eval_envs)")


def quality(c: Calibrator, mw: Path) -> None:
    """Table 4's dynamics error per row and its embedding plot (t-SNE, 4 x 200 points)."""
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.transitions import from_task
    from mtdiff.synth.embedding import embedding_plot
    from mtdiff.synth.quality import dynamics_error

    data = from_task(load_dataset(mw).tasks["reach-v3"])
    with Clock() as clk:
        dynamics_error("reach-v3", data, max_samples=30, seed=0)
    c.put("quality_sample_s", clk.busy / 30, "s",
          "dynamics_error of 30 reach-v3 rows / 30")
    x = data.transition_matrix()
    with Clock() as clk:
        embedding_plot({k: x[:200] for k in ("original", "a", "b", "c")}, c.tmp / "emb.png",
                       method="tsne", max_points=200)
    c.put("embedding_s", clk.busy, "s", "embedding_plot, t-SNE, 4 x 200 rows")


# ----------------------------------------------------------------------------------------
# Ray
# ----------------------------------------------------------------------------------------


IMPORT_PROBE = """
import sys, time
import torch, mtdiff.experiment.runner, mtdiff.tracking  # a worker's imports, not timed
from mtdiff.eval.suites import EvalJob, make_envs
w, c = time.perf_counter(), time.process_time()
make_envs(EvalJob(sys.argv[1], sys.argv[2], 0, 1, 10))
print(min(time.perf_counter() - w, time.process_time() - c))
"""


def suite_imports(c: Calibrator) -> None:
    """The first env of each suite in a fresh process (its modules, its model), busy
    seconds, fastest of 2."""
    import subprocess
    import sys

    for suite, task in (("maze2d", "train-0"), ("metaworld", "reach-v3"),
                        ("cheetah-vel", "cheetah-vel-0"), ("ant-dir", "ant-dir-0")):
        secs = min(float(subprocess.run([sys.executable, "-c", IMPORT_PROBE, suite, task],
                                        capture_output=True, text=True, check=True
                                        ).stdout.split()[-1]) for _ in range(2))
        c.put(f"import_s.{suite}", secs, "s", f"first {task} env (make_envs) in a new "
              "process after torch and mtdiff's imports, fastest of 2")


def _started(t_submit: float) -> float:
    # what a job's task imports before its work (`mtdiff.experiment.execute`)
    import torch  # noqa: F401

    import mtdiff.experiment.execute  # noqa: F401
    import mtdiff.experiment.runner  # noqa: F401
    import mtdiff.tracking  # noqa: F401

    return time.time() - t_submit


def ray_costs(c: Calibrator, mw: Path) -> None:
    """A job task's start, a training's fixed cost and a checkpoint's, the report's. Wall
    times of several processes: each is the fastest of a few tries (another tenant's load
    only ever adds to them)."""
    import ray

    from mtdiff.runtime import init_ray
    from mtdiff.train.checkpoints import write_checkpoint
    from mtdiff.train.core import build_setup, to_torch
    from mtdiff.train.learner import build_learner
    from mtdiff.train.stage import run as train_stage

    init_ray()
    fresh = ray.remote(num_cpus=1, max_calls=1)(_started)  # a new worker process per call
    cold = min(ray.get(fresh.remote(time.time())) for _ in range(3))
    reused = ray.remote(num_cpus=1)(_started)
    ray.get(reused.remote(time.time()))
    warm = min(ray.get(reused.remote(time.time())) for _ in range(3))
    c.put("worker_start_s", cold, "s", "a Ray task importing what a job's task imports "
          "(torch, mtdiff's runner and tracking) in a new worker (max_calls=1), fastest of 3")
    c.put("task_start_s", warm, "s", "the same task in a worker that ran it before, "
          "fastest of 3")
    base = ["train.log_every=1000", "data.batch_per_task=4", *SMOKE]
    cfg = _cfg("mtdiff-p", LOCAL)
    setup = build_setup(cfg, mw)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    n = [0]

    def write() -> None:
        n[0] += 1
        d = c.tmp / f"ckpt-write-{n[0]}"
        d.mkdir()
        write_checkpoint(d, **learner.state_dict(), step=1, meta=setup.meta)

    poll = float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25"))
    ckpt = timed(write, min_s=0.5) + poll
    c.put("checkpoint_s", ckpt, "s", f"write_checkpoint of a local-sized MTDiff-P + the "
          f"Ray Train controller's poll ({poll} s) that a report waits for")
    cfg = _cfg("mtdiff-p", [], *base)
    setup = build_setup(cfg, mw)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    step = timed(lambda: learner.update(to_torch(setup.sampler.sample(), "cpu")), min_s=0.5)
    walls, cpus = [], []
    for seed in (1, 2):
        cfg = _cfg("mtdiff-p", [], *base, "train.steps=6", "train.checkpoint_every=6",
                   f"train.seed={seed}")
        before: dict[int, float] = {}
        descendants_cpu(os.getpid(), before)
        after = dict(before)
        done = threading.Event()

        def sample(seen: dict[int, float] = after, stop: threading.Event = done) -> None:
            while not stop.wait(0.5):  # the trainer's actors end with it: sample meanwhile
                descendants_cpu(os.getpid(), seen)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        train_stage(one_cpu(cfg), Inputs(data=Dataset.at(mw)), c.tmp / "ray-train")
        walls.append(time.perf_counter() - t0)
        done.set()
        sampler.join()
        descendants_cpu(os.getpid(), after)
        # CPU of this process and the Ray session's (raylet, its workers and actors)
        cpus.append(sum(v - before.get(k, 0.0) for k, v in after.items()) / walls[-1])
    start = max(0.0, min(walls) - 6 * step - ckpt)
    c.put("trainer_start_s", start, "s",
          f"mtdiff.train.run of 6 smoke-sized steps (fastest of {len(walls)}: "
          f"{min(walls):.1f} s) less the steps ({step * 1e3:.0f} ms each) and a checkpoint")
    c.put("trainer_start_cpus", min(cpus), "CPUs",
          "CPU seconds of the Ray session's processes (driver, raylet, workers, Ray Train's "
          "controller and actors: /proc, sampled every 0.5 s) over the wall time of "
          f"those runs ({', '.join(f'{x:.2f}' for x in cpus)}), the smaller")
    from mtdiff.report import build_report

    out = c.tmp / "report-run"
    out.mkdir()
    t0 = time.perf_counter()
    try:
        build_report(out, preset="smoke", graph=[])
        c.put("report_s", time.perf_counter() - t0, "s", "build_report of an empty graph")
    except Exception as e:  # noqa: BLE001 - an empty graph may be refused: keep a figure
        c.put("report_s", 1.0, "s", f"assumed (build_report of an empty graph failed: "
              f"{type(e).__name__})")
    c.put("report_job_s", 0.02, "s", "assumed: one job record and its rows read (~20 ms)")


SECTIONS = ("collection", "envs", "offline", "training", "planning", "ray")


def main() -> None:
    """Measure everything (or `--only` some sections) and write the file."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", default="cpu-2core", help="name of this node kind")
    p.add_argument("--out", help="output file (default mtdiff/experiment/calibration/"
                   "<node>.json)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                   help=f"measure only these ({', '.join(SECTIONS)}); the other rates are "
                   "kept from the existing output file")
    args = p.parse_args()
    set_torch_threads(1)
    out = Path(args.out or CALIBRATION_DIR / f"{args.node}.json")
    only = set(args.only or SECTIONS)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        c = Calibrator(args.node, Path(tmp))
        if only != set(SECTIONS):
            c.rates.update(json.loads(out.read_text())["rates"])
        print("collection and data", flush=True)  # the datasets every section uses
        maze, mw = collect_maze(c), collect_metaworld(c)
        rand = data_rates(c)
        if "envs" in only:
            print("environments", flush=True)
            envs(c, maze, mw)
            suite_imports(c)
        if "offline" in only:
            print("SAC, TD3-BC, Table 4", flush=True)
            sac(c)
            td3bc(c, mw)
            quality(c, mw)
        if "training" in only:
            print("training", flush=True)
            training(c, rand)
        if "planning" in only:
            print("planning", flush=True)
            planning(c, mw)
        if "ray" in only:
            print("Ray", flush=True)
            ray_costs(c, mw)
    missing = [k for k in RATES if k not in c.rates]
    if missing:
        raise SystemExit(f"not measured: {missing}")
    doc = {"node": args.node, "device": "cpu",
           "about": f"{args.node}: one CPU core per task (torch 1 thread), as a Ray task "
                    "with 1 CPU runs; written by benchmarks/calibrate.py",
           "rates": {k: c.rates[k] for k in RATES}}
    from_dict(doc, str(out))  # the checks the cost model makes
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({len(doc['rates'])} rates) in {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
