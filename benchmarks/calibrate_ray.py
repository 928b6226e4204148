"""Process and Ray costs for `benchmarks/calibrate.py`: each suite's first environment in a
new process, a Ray task's start in a new and a reused worker, a training's fixed cost
through `mtdiff.train.run` and the CPUs its start keeps busy, a checkpoint, a report."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch
from calibrate_common import (  # benchmarks/, beside this script
    LOCAL,
    SMOKE,
    Calibrator,
    _cfg,
    one_cpu,
    timed,
)
from cpu_meter import descendants_cpu

from mtdiff.artifacts import Dataset, Inputs

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

    # Defined in here, not in the module, so Ray's cloudpickle ships it by value: a worker
    # runs it without importing this script's modules (nor finding benchmarks/ on its path),
    # and its start is timed with only the imports a job's task makes.
    def _started(t_submit: float) -> float:
        # what a job's task imports before its work (`mtdiff.experiment.execute`)
        import torch  # noqa: F401

        import mtdiff.experiment.execute  # noqa: F401
        import mtdiff.experiment.runner  # noqa: F401
        import mtdiff.tracking  # noqa: F401

        return time.time() - t_submit

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
