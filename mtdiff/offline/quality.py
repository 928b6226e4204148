"""The data-quality stage (paper App. E.2: Table 4, Fig. 11): how far a task's MTDiff-S,
RAD and S4RL transitions are from its dynamics and from its original data, and a 2-D
embedding of them beside the original."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mtdiff import tracking
from mtdiff.artifacts import Inputs, OfflineResult
from mtdiff.config import Config
from mtdiff.data.io import atomic_write_json
from mtdiff.data.reader import load_dataset
from mtdiff.data.transitions import load_task
from mtdiff.layout import quality_file
from mtdiff.offline.stage import s4rl_data
from mtdiff.synth.augment import rad_augment
from mtdiff.synth.embedding import embedding_plot
from mtdiff.synth.quality import dynamics_error, episode_mocap_offsets, l2_distance_from_dataset

NAMES = {"mtdiff-s": "MTDiff-S", "rad": "RAD", "s4rl": "S4RL"}


def run(cfg: Config, inputs: Inputs, out: Path) -> OfflineResult:
    """Table 4's records of `inputs.task` (MTDiff-S from `inputs.synth`, RAD, S4RL with
    `inputs.agent`'s Q; seed `inputs.seed`, else `offline.seed`) against its original data
    `inputs.data` (view `inputs.view`, else `data.view`), and its embedding plot, under
    `out`."""
    o, task, out = cfg.offline, inputs.need("task"), Path(out)
    seed = o.seed if inputs.seed is None else int(inputs.seed)
    view = inputs.view or cfg.data.view
    dataset = inputs.need("data").path
    original = load_task(dataset, task, view)
    augmented = load_task(inputs.need("synth").path, task, "near-optimal")
    sets = {"mtdiff-s": augmented.subset(slice(len(original), None)),  # the synthetic rows
            "rad": rad_augment(original, low=o.rad_low, high=o.rad_high, seed=seed),
            "s4rl": s4rl_data(original, inputs.need("agent"), replace(o, augment_copies=1), 1)}
    offsets = episode_mocap_offsets(task, load_dataset(dataset, view=view,
                                                       tasks=[task]).tasks[task])
    recs = []
    for m, data in sets.items():
        off = None if m == "mtdiff-s" else offsets[data.rows]  # synthetic rows: unknown
        dyn = dynamics_error(task, data, mocap_offsets=off, max_samples=o.quality_samples,
                             seed=seed)
        l2 = l2_distance_from_dataset(data, original, seed=seed)
        recs.append({"task": task, "method": m, "dynamics_error": dyn.mse,
                     "l2_distance": float(l2.mean()), "samples": int(len(dyn.index)),
                     "unstable": dyn.unstable, "preset": cfg.preset})
        tracking.log_metrics({f"{m}/dynamics_error": dyn.mse,
                              f"{m}/l2_distance": float(l2.mean())})
    plot = embedding_plot({"original": original.transition_matrix(),
                           **{NAMES[m]: d.transition_matrix() for m, d in sets.items()}},
                          out / f"embedding-{task}.png", method=o.embedding,
                          max_points=max(o.quality_samples, 50), seed=seed,
                          title=f"{task}: original vs augmented transitions")
    atomic_write_json(quality_file(out), recs)
    return OfflineResult(quality_file(out), {"records": recs, "plot": str(plot)})
