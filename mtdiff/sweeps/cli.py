"""What the sweep scripts over one checkpoint share: reading it, with user errors as one line."""

from __future__ import annotations

from mtdiff.artifacts import Checkpoint
from mtdiff.cli import fail
from mtdiff.config import Config, apply_overrides


def checkpoint_config(checkpoint: str, overrides: list[str], *, suite: str,
                      tasks: list[str] | None, maps: list[str] | None) -> tuple[str, Config]:
    """(absolute checkpoint folder, its training Config with `overrides`).

    The evaluation jobs are planned once here, so that a bad suite, task or map fails
    before any trial starts. A missing or unreadable checkpoint, a bad override or a bad
    task/map exits 2 with one line.
    """
    # (pulls in torch: imported on use)
    from mtdiff.eval.stage import plan_jobs

    try:
        found = Checkpoint.find(checkpoint)
        ckpt, meta = found.path, found.meta  # resolved: trials run in other folders
        cfg = apply_overrides(found.config, overrides)
        if meta["suite"] != suite:
            raise ValueError(f"the checkpoint was trained on {meta['suite']!r}, not {suite!r}")
        plan_jobs(suite, meta, cfg, cfg.eval, tasks=tasks, maps=maps, wrong_prompt=False)
    except (ValueError, KeyError) as e:  # CheckpointError, ConfigError, unknown task/map
        fail(str(e))
    return str(ckpt), cfg
