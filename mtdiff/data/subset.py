"""A dataset made of some of another dataset's tasks.

Used to train a model on fewer tasks than were collected (MTDiff-S-single of Fig. 6: one
task's data; Fig. 7's task sets) without collecting again. The selected tasks' shards and
indexes are copied as they are (checksums stay valid), their prompt sets kept (and those
of `prompt_tasks`, prompts without data, as a collection keeps its held-out tasks'), and
a new manifest written last with the subset's own normalisation statistics: a model
trained on the subset normalises with the statistics of what it saw, as if the subset had
been collected alone.

    python pipelines/dataset.py subset SRC --tasks push-v3 --out DIR

`run(cfg, inputs, out)` is the graph's stage (`inputs.data`, `inputs.tasks`,
`inputs.prompt_tasks`); `write_subset` the work.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtdiff.artifacts import Dataset, Inputs
from mtdiff.config import Config
from mtdiff.data.prompts import load_prompts, write_prompts
from mtdiff.data.reader import check_tasks, read_manifest
from mtdiff.data.schema import DatasetError
from mtdiff.data.writer import MANIFEST, finalize_dataset, task_dir
from mtdiff.layout import subset_hash

PARTIAL = ".subset-partial"  # marks a folder this module is still writing


def run(cfg: Config, inputs: Inputs, out: Path) -> Dataset:
    """The subset of `inputs.data` of `inputs.tasks` (or `inputs.task`; with
    `inputs.prompt_tasks`' prompts)
    in `out` (`write_subset`). `cfg` is unused: a subset is its source's tasks as they are."""
    tasks = list(inputs.tasks) or [inputs.need("task")]
    root = write_subset(inputs.need("data").path, out, tasks, inputs.prompt_tasks)
    return Dataset.at(root)


def write_subset(src: str | Path, out: str | Path, tasks: list[str],
                 prompt_tasks: Sequence[str] = ()) -> Path:
    """Write the dataset of `tasks` from `src` into `out`, with the prompts of `tasks`
    and of `prompt_tasks` (tasks of `src` with prompts: no data is copied for them);
    returns `out`. The statistics are accumulated in the order of `tasks`, as a
    collection of `tasks` accumulates them.

    Idempotent: a finished subset of the same source and tasks is returned as it is; a
    folder left by a killed call (marked `.subset-partial`) is started over. Raises
    DatasetError for unknown tasks, prompt tasks without prompts, or when `out` holds
    something else.
    """
    src, out = Path(src), Path(out)
    man = read_manifest(src)
    if not tasks:
        raise DatasetError(f"a subset of {src} needs at least one task")
    check_tasks(tasks, list(man["tasks"]), str(src))
    prompts = load_prompts(src)
    missing = [t for t in prompt_tasks if t not in prompts]
    if missing:
        raise DatasetError(f"{src} has no prompts of {missing} (its prompt tasks: "
                           f"{sorted(prompts)}); a subset keeps only prompts it has")
    want = subset_hash(man["config_hash"], tasks, prompt_tasks)
    if (out / MANIFEST).exists():
        have = read_manifest(out).get("config_hash")
        if have == want:
            return out
        raise DatasetError(f"{out} already holds another dataset (config hash {have}); "
                           "write the subset into a new folder")
    if out.exists() and any(out.iterdir()) and not (out / PARTIAL).exists():
        raise DatasetError(f"{out} is not empty and is not a dataset; choose a new folder")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / PARTIAL).touch()
    for task in tasks:
        shutil.copytree(task_dir(src, task), task_dir(out, task))
    entry = man["tasks"][tasks[0]]
    kept = {t: prompts[t] for t in [*tasks, *prompt_tasks] if t in prompts}
    write_prompts(out, kept, int(entry["obs_dim"]), int(entry["act_dim"]))
    extra: dict[str, Any] = {"prompt_tasks": sorted(kept)}
    if "details" in man:  # the collector's, for these tasks
        extra["details"] = {**man["details"], "tasks": list(tasks),
                            "heldout_prompt_tasks": [t for t in prompt_tasks if t not in tasks]}
    finalize_dataset(out, suite=man["suite"], source=man.get("source", "unknown"), tasks=tasks,
                     config={"subset_of": str(src.resolve()), "source_hash": man["config_hash"],
                             "tasks": tasks, "prompt_tasks": list(prompt_tasks)},
                     config_hash=want, extra=extra)
    (out / PARTIAL).unlink()
    return out
