"""The experiment grid's config section (`mtdiff.experiment.grid` expands it into jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated
from mtdiff.config.suites import MUJOCO_SUITES
from mtdiff.methods import all_methods, get_method


def _known(name: str) -> bool:
    try:
        get_method(name)
    except ValueError:  # ConfigError
        return False
    return True


@dataclass
class ExperimentConfig(_Validated):
    """The experiment grid `full_repro` expands into jobs (`mtdiff.experiment.grid`).

    Every (suite, method, dataset view, training seed) cell is a training job followed by
    an evaluation job (planners) or the synthesis + offline-RL jobs (MTDiff-S); Table 2's
    tasks and seeds, Fig. 6's and Fig. 7's cells come from `offline`. A new method or
    seed is one entry here, not new code.
    """

    # Paper: Meta-World and Maze2D (§5), Cheetah-vel and Ant-dir (App. H, Table 5: MTDiff-P
    # and Prompt-DT only).
    suites: tuple[str, ...] = ("maze2d", "metaworld", "cheetah-vel", "ant-dir")
    # Method names (`mtdiff.methods.get_method`); each runs on the suites it applies to
    # (Maze2D: MTDiff-P and Prompt-DT). Paper: Table 1's methods, the U-Net ablation
    # (Table 3) and MTDiff-S (Tables 2, 4).
    # mtdiff-p-distill (ours: MTDiff-P's few-step student) is not the paper's; it
    # runs with grid="full" or when named here.
    methods: tuple[str, ...] = ("mtdiff-p", "mtdiff-p-onehot", "mtbc", "mtiql", "mtcql",
                                "mtdt", "promptdt", "mtdiff-p-unet", "mtdiff-s")
    # Meta-World dataset views (paper: both). Maze2D has one dataset (no views); MTDiff-S
    # trains on `data.view` (Table 2 augments that view's data).
    views: tuple[str, ...] = ("near-optimal", "sub-optimal")
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds (paper: 3); `train.seed` per job
    # Fig. 7: MTDiff-S trained on each of these task sets (`metaworld.tasks` specs),
    # synthesizing for `offline.task_count_task`; () = not run.
    task_counts: tuple[str, ...] = ("tasks-10", "tasks-20", "tasks-30", "tasks-45")
    # "full": every method of `mtdiff.methods` on both views (whatever `methods` and `views`
    # say): Tables 1 and 3 in full at this preset's scale, e.g. `--set experiment.grid=full`
    # on top of `local`.
    grid: Literal["preset", "full"] = "preset"
    retries: int = 1  # a failed job is run again this many times before it counts as failed
    # Trainings at once (None: as many as the live nodes' CPUs / GPUs can host side by side;
    # re-read as nodes leave or join, so a shrunken cluster is not asked for the old one's).
    max_concurrent_train: int | None = None
    # Seconds a job may wait for a resource that no live node offers (its own task, or one
    # of its trainer's workers, needs more than any node has: a node was lost) before it is
    # failed with one line naming what it needs; a rerun resumes once the node is back.
    resource_wait_s: float = 600.0
    # Cheetah-vel / Ant-dir trainings: windows per task in a batch and gradient steps (None:
    # data.batch_per_task, train.steps). Those suites have few training tasks where a preset
    # has few (2 at `local`: batch 16 at M = 8), so a preset can give them more samples
    # without raising Meta-World's. Which way pays is measured (docs/results.md, "`local`,
    # re-budgeted"): at 4x `local`'s samples, 4x the steps beat 4x the batch.
    mujoco_batch_per_task: int | None = None
    mujoco_steps: int | None = None
    # Maze2D's trainings (MTDiff-P and Prompt-DT): windows per map and gradient steps (None:
    # data.batch_per_task, train.steps). Paper App. D: "After training with 512 batch size
    # for 2e5 gradient steps" -- 64 per map over the 8 training maps. `local` and `smoke`
    # size Maze2D as every other suite (None).
    maze2d_batch_per_task: int | None = 64
    maze2d_steps: int | None = 200_000
    # GPU share per job of the jobs that leave a GPU mostly idle (a GPU cluster only; on a
    # CPU cluster no job asks for a GPU). Their time goes to the host: environment steps,
    # Python and kernel launches of small models. Several then run on one GPU, each in its
    # own process, instead of one holding a whole GPU. Trainings of the diffusion models
    # and the DTs at `small_batch` windows or more keep a whole GPU per worker.
    # Evaluations: per Ray task of an evaluation (a batch of environments and its planner);
    # eval.num_gpus_per_actor, when set, wins.
    gpu_share_evaluate: float = 0.25
    # Synthesis: one MTDiff-S sampling 256 sequences at a time, then writing Parquet.
    gpu_share_synthesize: float = 0.5
    # TD3-BC (offline RL): 256-wide MLPs at batch 256, and its evaluations on the CPU.
    gpu_share_offline: float = 0.25
    # Trainings of the MLP baselines (MTBC, MTIQL, MTCQL): 3-layer MLPs at MTDiff's batch.
    gpu_share_baseline: float = 0.25
    # Trainings of fewer than `small_batch` windows per step (data.batch_per_task x training
    # tasks), e.g. Fig. 7's 10-task MTDiff-S (80 windows at M = 8): a step costs about as
    # many kernel launches as at the paper's 400 windows, for a fifth of the work.
    gpu_share_small_train: float = 0.5
    # 128: a third of the paper's Meta-World batch (400 = 8 x 50 tasks), below which a
    # training is "small"; benchmarks/gpu_share.py measures the summed samples/s of 1, 2
    # and 4 trainings sharing a GPU at a given batch.
    small_batch: int = 128

    def method_names(self) -> list[str]:
        """The methods the grid runs: `methods`, or all of them with grid="full"."""
        return all_methods() if self.grid == "full" else list(self.methods)

    def view_names(self) -> list[str]:
        """The Meta-World views the planners train on: `views`, both with grid="full"."""
        return ["near-optimal", "sub-optimal"] if self.grid == "full" else list(self.views)

    def _validate(self) -> None:
        _check(len(self.methods) > 0, "ExperimentConfig.methods", "needs at least one method")
        unknown = [m for m in self.methods if not _known(m)]
        _check(not unknown, "ExperimentConfig.methods",
               f"unknown method(s) {unknown}; known: {sorted(all_methods())}")
        teachers = {m: get_method(m).teacher for m in self.methods}
        orphans = [f"{m} (teacher {t})" for m, t in teachers.items()
                   if t and t not in self.methods]
        _check(self.grid == "full" or not orphans, "ExperimentConfig.methods",
               f"{', '.join(orphans)} distil(s) a teacher the grid does not train; add the "
               "teacher to experiment.methods")
        _check(len(self.seeds) > 0, "ExperimentConfig.seeds", "needs at least one seed")
        for name in ("mujoco_batch_per_task", "mujoco_steps", "maze2d_batch_per_task",
                     "maze2d_steps"):
            if getattr(self, name) is not None:
                _positive(self, name)
        for name in ("gpu_share_evaluate", "gpu_share_synthesize", "gpu_share_offline",
                     "gpu_share_baseline", "gpu_share_small_train"):
            _check(0.0 < getattr(self, name) <= 1.0, f"ExperimentConfig.{name}",
                   f"a share of one GPU, in (0, 1]; got {getattr(self, name)} (1 = a whole GPU)")
        _positive(self, "small_batch")
        _check(len(set(self.seeds)) == len(self.seeds), "ExperimentConfig.seeds",
               f"seeds repeat: {self.seeds}")
        _check(all(v in ("near-optimal", "sub-optimal") for v in self.views),
               "ExperimentConfig.views", f"{self.views}: views are near-optimal, sub-optimal")
        _check(len(self.views) > 0, "ExperimentConfig.views", "needs at least one view")
        known = ("maze2d", "metaworld", *MUJOCO_SUITES)
        _check(all(s in known for s in self.suites), "ExperimentConfig.suites",
               f"{self.suites}: known suites are {', '.join(known)}")
        _check(self.retries >= 0, "ExperimentConfig.retries", "must be >= 0")
        _check(self.resource_wait_s > 0, "ExperimentConfig.resource_wait_s", "must be > 0")
        if self.max_concurrent_train is not None:
            _positive(self, "max_concurrent_train")
