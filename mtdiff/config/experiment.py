"""The experiment grid's config section (`mtdiff.experiment.grid` expands it into jobs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated
from mtdiff.config.suites import MUJOCO_SUITES


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
    # Method names of `mtdiff.methods.METHODS`; each runs on the suites it applies to
    # (Maze2D: MTDiff-P and Prompt-DT). Paper: Table 1's methods, the U-Net ablation
    # (Table 3) and MTDiff-S (Tables 2, 4).
    # mtdiff-p-distill (ours, issue 16: MTDiff-P's few-step student) is not the paper's; it
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
    # Trainings at once (None: as many as the nodes' CPUs / GPUs can host side by side).
    max_concurrent_train: int | None = None
    # Windows per task in a Cheetah-vel / Ant-dir training batch (None: data.batch_per_task).
    # Those suites have few training tasks where a preset has few (2 at `local`: batch 16 at
    # M = 8), so a preset can give them more samples per step without raising Meta-World's.
    mujoco_batch_per_task: int | None = None

    def method_names(self) -> list[str]:
        """The methods the grid runs: `methods`, or all of them with grid="full"."""
        from mtdiff.methods import METHODS

        return list(METHODS) if self.grid == "full" else list(self.methods)

    def view_names(self) -> list[str]:
        """The Meta-World views the planners train on: `views`, both with grid="full"."""
        return ["near-optimal", "sub-optimal"] if self.grid == "full" else list(self.views)

    def _validate(self) -> None:
        from mtdiff.methods import METHODS

        _check(len(self.methods) > 0, "ExperimentConfig.methods", "needs at least one method")
        unknown = [m for m in self.methods if m not in METHODS]
        _check(not unknown, "ExperimentConfig.methods",
               f"unknown method(s) {unknown}; known: {sorted(METHODS)}")
        orphans = [f"{m} (teacher {METHODS[m].teacher})" for m in self.methods
                   if METHODS[m].teacher and METHODS[m].teacher not in self.methods]
        _check(self.grid == "full" or not orphans, "ExperimentConfig.methods",
               f"{', '.join(orphans)} distil(s) a teacher the grid does not train; add the "
               "teacher to experiment.methods")
        _check(len(self.seeds) > 0, "ExperimentConfig.seeds", "needs at least one seed")
        if self.mujoco_batch_per_task is not None:
            _positive(self, "mujoco_batch_per_task")
        _check(len(set(self.seeds)) == len(self.seeds), "ExperimentConfig.seeds",
               f"seeds repeat: {self.seeds}")
        _check(all(v in ("near-optimal", "sub-optimal") for v in self.views),
               "ExperimentConfig.views", f"{self.views}: views are near-optimal, sub-optimal")
        _check(len(self.views) > 0, "ExperimentConfig.views", "needs at least one view")
        known = ("maze2d", "metaworld", *MUJOCO_SUITES)
        _check(all(s in known for s in self.suites), "ExperimentConfig.suites",
               f"{self.suites}: known suites are {', '.join(known)}")
        _check(self.retries >= 0, "ExperimentConfig.retries", "must be >= 0")
        if self.max_concurrent_train is not None:
            _positive(self, "max_concurrent_train")
