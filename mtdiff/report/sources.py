"""Find what a full reproduction wrote: evaluation JSONs, their checkpoints, datasets.

Layout (`mtdiff/repro.py`)::

    <out>/data/<suite>-<hash>/manifest.json            datasets (config_hash, tasks, ...)
    <out>/train/<suite>/train-<kind>-<hash>/...         checkpoints
    <out>/eval/<suite>-train-<kind>-<hash>/eval-<suite>.json   `mtdiff.eval.stage.run`

An evaluation JSON holds ``{"summary": ..., "episodes": [...]}``; the model kind comes
from its folder name, the preset and dataset view from the checkpoint's metadata when
that checkpoint can be read (else the caller's preset and that preset's default view,
marked as assumed).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

KINDS: Final = ("mtdiff-p", "mtdiff-p-onehot", "mtdiff-s")
_EVAL_DIR: Final = re.compile(r"^(maze2d|metaworld)-train-(.+)-([0-9a-f]{6,})$")


@dataclass
class EvalRun:
    """One evaluation JSON and what it was run on."""

    suite: str  # "metaworld" | "maze2d"
    kind: str  # "mtdiff-p" | "mtdiff-p-onehot" | "mtdiff-s" | "unknown"
    path: Path  # the eval JSON
    summary: dict[str, Any]
    episodes: list[dict[str, Any]]
    preset: str  # "smoke" | "local" | "paper" | "unknown"
    preset_source: str  # "checkpoint" | "eval json" | "given" | "none"
    view: str | None  # "near-optimal" | "sub-optimal" | None when unknown
    view_assumed: bool = False  # True: the preset's default, the checkpoint was unreadable
    dataset_hash: str | None = None
    trained_tasks: list[str] = field(default_factory=list)
    mtime: float = 0.0

    @property
    def group(self) -> dict[str, Any]:
        """The summary of the tasks it was trained on ("train"), else of all tasks."""
        return self.summary.get("train") or self.summary["all"]

    @property
    def seeds(self) -> list[int]:
        """Evaluation seeds."""
        return list(self.summary["all"].get("seeds", []))

    @property
    def episodes_per_task(self) -> int | None:
        """Episodes per task and seed, as configured."""
        return self.summary.get("eval", {}).get("episodes")

    @property
    def label(self) -> str:
        """E.g. "mtdiff-p (near-optimal)"; Maze2D has no dataset views: just the kind."""
        if self.suite != "metaworld":
            return self.kind
        view = self.view or "view unknown"
        return f"{self.kind} ({view}{', assumed' if self.view_assumed else ''})"


def checkpoint_meta(checkpoint: str | Path) -> dict[str, Any]:
    """The metadata saved with a training checkpoint, or {} when it cannot be read.

    Only imports torch when the file exists.
    """
    p = Path(checkpoint)
    f = p / "checkpoint.pt" if p.is_dir() else p
    if not f.is_file():
        return {}
    try:
        from mtdiff.train.checkpoints import load_checkpoint

        return dict(load_checkpoint(f)["meta"])
    except Exception as e:  # noqa: BLE001 - a report is built even if one checkpoint is bad
        print(f"[report] cannot read {f}: {type(e).__name__}: {e}", file=sys.stderr)
        return {}


def _preset_view(preset: str) -> str | None:
    from mtdiff.config import ConfigError, get_preset

    try:
        return get_preset(preset).data.view
    except ConfigError:
        return None


def load_eval(path: str | Path, *, preset: str | None = None,
              read_checkpoint: bool = True) -> EvalRun:
    """Read one evaluation JSON and resolve its model kind, preset and dataset view."""
    path = Path(path)
    doc = json.loads(path.read_text())
    summary, episodes = doc["summary"], doc.get("episodes", [])
    suite = summary.get("suite", path.stem.removeprefix("eval-"))
    meta = checkpoint_meta(summary["checkpoint"]) if read_checkpoint else {}
    m = _EVAL_DIR.match(path.parent.name)
    kind = meta.get("kind") or (m.group(2) if m else "unknown")
    cfg_preset = meta.get("config", {}).get("preset")
    if cfg_preset:
        found, source = cfg_preset, "checkpoint"
    elif summary.get("preset"):
        found, source = summary["preset"], "eval json"
    elif preset:
        found, source = preset, "given"
    else:
        found, source = "unknown", "none"
    dataset = meta.get("dataset", {})
    view = dataset.get("view") or summary.get("view")
    assumed = False
    if view is None and found != "unknown" and suite == "metaworld":
        view, assumed = _preset_view(found), True
    return EvalRun(suite=suite, kind=kind, path=path, summary=summary, episodes=episodes,
                   preset=found, preset_source=source, view=view, view_assumed=assumed,
                   dataset_hash=dataset.get("hash"), trained_tasks=list(meta.get("tasks", [])),
                   mtime=path.stat().st_mtime)


def find_evals(out_dir: str | Path, *, preset: str | None = None,
               read_checkpoints: bool = True) -> tuple[list[EvalRun], list[str]]:
    """Every `<out>/eval/*/eval-*.json`, oldest first, and a line per unreadable file."""
    runs: list[EvalRun] = []
    problems: list[str] = []
    for p in sorted(Path(out_dir).glob("eval/*/eval-*.json")):
        try:
            runs.append(load_eval(p, preset=preset, read_checkpoint=read_checkpoints))
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"{p}: unreadable ({type(e).__name__}: {e})")
    runs.sort(key=lambda r: r.mtime)
    return runs, problems


def latest(runs: list[EvalRun], *, suite: str, kind: str | None = None,
           view: str | None = None) -> EvalRun | None:
    """The newest run of `suite` (and `kind`, `view` when given), or None."""
    sel = [r for r in runs if r.suite == suite and (kind is None or r.kind == kind)
           and (view is None or r.view == view)]
    return sel[-1] if sel else None


def datasets(out_dir: str | Path) -> list[dict[str, Any]]:
    """One line of facts per dataset manifest under `<out>/data/` (path, suite, hash, size)."""
    found = []
    for m in sorted(Path(out_dir).glob("data/*/manifest.json")):
        try:
            man = json.loads(m.read_text())
            tasks = man.get("tasks", {})
            found.append({"path": str(m.parent), "suite": man.get("suite", "?"),
                          "config_hash": man.get("config_hash", "?"),
                          "source": man.get("source", "?"), "tasks": len(tasks),
                          "transitions": sum(int(t.get("transitions", 0))
                                             for t in tasks.values())})
        except (OSError, ValueError, AttributeError) as e:
            found.append({"path": str(m.parent), "error": f"{type(e).__name__}: {e}"})
    return found


def task_set_name(tasks: list[str]) -> str:
    """E.g. "10 (MT10)", "50 (MT50)", "3" — the count and a named Meta-World set if equal."""
    from mtdiff.envs.metaworld import TASK_SETS

    for name, members in TASK_SETS.items():
        if set(tasks) == set(members):
            return f"{len(tasks)} ({name})"
    return str(len(tasks))
