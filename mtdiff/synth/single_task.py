"""MTDiff-S-single (paper §5.3, Fig. 6): MTDiff-S trained on one task's data alone.

For a task MTDiff-S was trained on, the same model (architecture, diffusion, sampler,
steps) is trained on that task's rows only (`mtdiff.data.subset`: the task's shards with
its own normalisation statistics), synthesizes for the task from the same kind of
1-demonstration prompt, and its augmented data goes to TD3-BC beside the multi-task
model's. What differs is only how many tasks the model saw.

Batch: the single-task model gets the multi-task model's whole batch from its one task
(`data.batch_per_task` x the number of tasks), so both see as many windows per step for
the same number of steps; with 8 windows per step it would see N times fewer samples and
the comparison would measure compute, not data sharing. The paper does not say how its
single-task runs were sized.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mtdiff.config import Config

METHOD = "mtdiff-s-single"  # its column in the Fig. 6 contract (`contracts.SINGLE_METHODS`)


def single_config(cfg: Config, trained_tasks: int) -> Config:
    """MTDiff-S on one task with the multi-task model's batch (`trained_tasks` x M)."""
    return replace(cfg, model=replace(cfg.model, kind="mtdiff-s"),
                   data=replace(cfg.data, batch_per_task=cfg.data.batch_per_task * trained_tasks))


def train_single(cfg: Config, task: str, data: str | Path, out: str | Path,
                 trained_tasks: int) -> Path:
    """Train (or resume, or find finished) MTDiff-S-single of `task`; its checkpoint.

    The task's subset of `data` goes to `<out>/data/`, the run to `<out>/train/metaworld/`
    (named by the subset's hash like any training run).
    """
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.subset import subset_hash, write_subset
    from mtdiff.train import run as train

    out = Path(out)
    h = subset_hash(read_manifest(data)["config_hash"], [task])
    sub = write_subset(data, out / "data" / f"metaworld-single-{task}-{h[-12:]}", [task])
    print(f"[offline] {task}: training MTDiff-S-single on {sub}")
    return train(single_config(cfg, trained_tasks), data=sub, out=out / "train" / "metaworld",
                 track=False)
