"""What the stages hand each other, typed: every stage is ``run(cfg, inputs, out)`` and
returns one of these (`mtdiff.experiment.execute.STAGES` lists the stages).

    Dataset       a dataset folder (collected, a subset, or original + synthetic data)
    Checkpoint    a trained (or distilled) model
    Evaluation    an evaluation's results (a planner's, or a suite's reference rows)
    OfflineResult a TD3-BC run's result (Table 2), or a task's data-quality records (Table 4)
    Report        report.md and results.json

Each names its files through `mtdiff.layout` and turns into the JSON record a job of the
graph leaves (`to_record`, with "outputs": the files that must still exist for the record
to count) and back (`from_record`). `Inputs` is what a stage is given besides its config.

A trained model:

    ckpt = Checkpoint.find(run_or_checkpoint_folder)   # the newest readable one under it
    ckpt.step, ckpt.meta, ckpt.config, ckpt.method     # read from the file once
    ckpt.state["ema"]                                  # the tensors (on the CPU)

A checkpoint file is read once per process: `find` has to open every candidate to know its
step (a damaged copy is skipped, never "the newest folder"), and the state it read is what
`state` returns afterwards, for as long as the file is unchanged on disk. Consumers move
tensors to their device when they load them into a module (`load_state_dict` copies), so
everything is read on the CPU. The state is shared by everyone in the process who asks for
the same file: read it, never change it.

The checkpoint file is read here and written by training (`mtdiff.train.checkpoints`, which
also lists its fields and repairs what a kill left in a run folder); its name is the
layout's. `Checkpoint.find` (with `latest` / `at` / `read`) is the package's one entry point
for looking checkpoints up and loading them, raising `CheckpointError`. The helpers under it,
`load_checkpoint` (one file, without pickle, checked) and the lookup order, exist for the
format's own tests and drills; nothing else in the package calls them.

This module imports only what `mtdiff.config` and `mtdiff.layout` bring (those two, and
`mtdiff.methods`: the method registry config's sections are filled from), so any module may
import it (`tests/test_imports.py`).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mtdiff.config import Config, from_dict
from mtdiff.layout import CHECKPOINT_FILE, MANIFEST, evaluation_file
from mtdiff.methods import Method, method_of_meta

_REQUIRED = ("model", "ema", "step", "meta")  # a checkpoint state's keys (all of them)


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable; the message says where and what to do."""


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint (a folder holding ``checkpoint.pt``, or the file) without pickle,
    unkept. The package reads through `Checkpoint`; this is for the format's tests."""
    import torch

    p = Path(path)
    f = p / CHECKPOINT_FILE if p.is_dir() else p
    if not f.exists():
        raise CheckpointError(f"no checkpoint at {path} (expected {f}); train one with "
                              "`python pipelines/train.py ... --out DIR` and pass DIR or the "
                              "checkpoint folder it prints")
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{f} cannot be read as a checkpoint ({type(e).__name__}: {e}); "
                              "it is damaged or not an mtdiff checkpoint") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f} is not an mtdiff checkpoint (no state dict)")
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{f} lacks {missing}: not an mtdiff checkpoint")
    state["meta"] = json.loads(state["meta"])
    return state


def _candidates(p: Path) -> list[Path]:
    """The checkpoint folders at or under `p` (a checkpoint folder, its file, or a run
    folder), readable or not: `Checkpoint.latest` picks among them."""
    if (p / CHECKPOINT_FILE).exists():
        return [p]
    if p.is_file() and p.name == CHECKPOINT_FILE:
        return [p.parent]
    return [f.parent for f in sorted(p.glob(f"**/checkpoint_*/{CHECKPOINT_FILE}"))] \
        if p.is_dir() else []


# Checkpoint states read in this process, by (file, inode, size, mtime): the last two a
# lookup read (what `find` then hands on). Few, since evaluation workers live long and each
# state holds the weights, the EMA and the optimiser.
_READ: OrderedDict[tuple[str, int, int, int], dict[str, Any]] = OrderedDict()
_KEEP = 2


def _read(folder: Path) -> dict[str, Any]:
    f = folder / CHECKPOINT_FILE
    try:
        st = os.stat(f)
    except OSError:
        return load_checkpoint(folder)  # raises the one-line "no checkpoint at ..."
    key = (str(f), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _READ:
        _READ[key] = load_checkpoint(folder)
        while len(_READ) > _KEEP:
            _READ.popitem(last=False)
    _READ.move_to_end(key)
    return _READ[key]


@dataclass(frozen=True)
class Checkpoint:
    """One trained model on disk: a folder holding ``checkpoint.pt`` (its fields:
    `mtdiff.train.checkpoints`, which writes it)."""

    path: Path  # the checkpoint folder

    @classmethod
    def find(cls, where: str | Path) -> Checkpoint:
        """The readable checkpoint with the highest step at or under `where` (a checkpoint
        folder, its file, or a run folder); raises `CheckpointError` in one line when there
        is none."""
        found = cls.latest(where)
        if found is None:
            raise CheckpointError(f"no readable checkpoint under {where}; train with `python "
                                  "pipelines/train.py --data DIR --out DIR` first (or check "
                                  "the path)")
        return found

    @classmethod
    def latest(cls, where: str | Path, *, quiet: bool = False) -> Checkpoint | None:
        """Like `find`, but None when there is no readable checkpoint (damaged ones are
        skipped with a note unless `quiet`)."""
        best: tuple[Checkpoint, int] | None = None
        for folder in _candidates(Path(where).resolve()):
            try:
                step = int(_read(folder)["step"])
            except CheckpointError as e:
                if not quiet:
                    print(f"[checkpoint] skipping unreadable checkpoint: {e}")
                continue
            if best is None or step > best[1]:
                best = (cls(folder), step)
        return best[0] if best else None

    @classmethod
    def at(cls, folder: str | Path) -> Checkpoint:
        """Exactly the checkpoint in `folder` (or that file), read now: raises
        `CheckpointError` when it is missing or damaged."""
        p = Path(folder).resolve()
        ckpt = cls(p.parent if p.name == CHECKPOINT_FILE else p)
        _read(ckpt.path)
        return ckpt

    @staticmethod
    def read(folder: str | Path) -> dict[str, Any]:
        """The state in exactly `folder`, read now and not kept (a training's resume state,
        which the learner copies and drops); raises `CheckpointError` like `at`."""
        return load_checkpoint(folder)

    @property
    def file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def state(self) -> dict[str, Any]:
        """model / ema / optimizer / step / meta (meta parsed), on the CPU; read-only."""
        return _read(self.path)

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def meta(self) -> dict[str, Any]:
        return self.state["meta"]

    @property
    def config(self) -> Config:
        """The config it was trained with."""
        return from_dict(self.meta["config"])

    @property
    def method(self) -> Method:
        """The method that trained it (`mtdiff.methods`)."""
        return method_of_meta(self.meta)

    def __str__(self) -> str:
        return str(self.path)

    def to_record(self) -> dict[str, Any]:
        rec = {"type": "checkpoint", "checkpoint": str(self.path), "run": str(self.path.parent),
               "steps": self.step, "method": self.method.name, "outputs": [str(self.file)]}
        if "student" in self.meta:
            rec["teacher"] = self.meta["student"]["teacher"]
        return rec

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]) -> Checkpoint:
        return cls(Path(rec["checkpoint"]))


@dataclass(frozen=True)
class _Recorded:
    """An artifact that is a folder (or file) plus the facts its record carries."""

    path: Path
    info: Mapping[str, Any] = field(default_factory=dict)  # the record's other fields

    TYPE: ClassVar[str] = ""
    PATH_KEY: ClassVar[str] = ""  # the record field holding `path`
    # Where a record without a "type" (an older graph's) holds it; else its first output.
    UNTYPED_KEYS: ClassVar[tuple[str, ...]] = ()

    def outputs(self) -> list[str]:
        return [str(self.path)]

    def to_record(self) -> dict[str, Any]:
        return {"type": self.TYPE, **self.info, self.PATH_KEY: str(self.path),
                "outputs": self.outputs()}

    @classmethod
    def from_record(cls, rec: Mapping[str, Any]):  # noqa: ANN206 - the subclass
        key = next((k for k in (cls.PATH_KEY, *cls.UNTYPED_KEYS) if k in rec), None)
        info = {k: v for k, v in rec.items() if k not in ("type", "outputs", key)}
        return cls(Path(rec[key] if key else rec["outputs"][0]), info)

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Dataset(_Recorded):
    """A dataset folder (`mtdiff.data`): a collection, a subset, or a synthesis's augmented
    data (whose record also names its `synthetic` part)."""

    TYPE: ClassVar[str] = "dataset"
    PATH_KEY: ClassVar[str] = "dataset"
    UNTYPED_KEYS: ClassVar[tuple[str, ...]] = ("augmented",)

    @classmethod
    def at(cls, folder: str | Path, **info: Any) -> Dataset:
        """The dataset in `folder` (made absolute), its hash, tasks and size from its
        manifest, plus `info`."""
        path = Path(folder).resolve()
        try:
            man = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"no readable dataset at {path} ({MANIFEST}: {e}); give a "
                             "dataset folder (`python pipelines/collect.py` makes one)") from e
        tasks = man["tasks"]
        return cls(path, {"hash": man["config_hash"], "tasks": sorted(tasks),
                          "transitions": sum(int(t["transitions"]) for t in tasks.values()),
                          **info})

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text())

    @property
    def hash(self) -> str:
        return str(self.info.get("hash") or self.manifest["config_hash"])

    @property
    def synthetic(self) -> Path | None:
        """A synthesis's generated part (None for other datasets)."""
        return Path(self.info["synthetic"]) if "synthetic" in self.info else None

    def outputs(self) -> list[str]:
        parts = [self.path] + ([self.synthetic] if self.synthetic else [])
        return [str(p / MANIFEST) for p in parts]


@dataclass(frozen=True)
class Evaluation(_Recorded):
    """An evaluation's JSON (`mtdiff.eval.stage`: summary and episodes), or a suite's
    reference rows (`mtdiff.eval.reference`)."""

    TYPE: ClassVar[str] = "evaluation"
    PATH_KEY: ClassVar[str] = "eval_file"
    UNTYPED_KEYS: ClassVar[tuple[str, ...]] = ("reference_file",)

    @classmethod
    def of(cls, folder: str | Path, suite: str, **info: Any) -> Evaluation:
        """The evaluation of `suite` in `folder`, its record carrying `info`."""
        return cls(evaluation_file(Path(folder).resolve(), suite), {"suite": suite, **info})

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())

    @property
    def summary(self) -> dict[str, Any]:
        return self.doc["summary"]


@dataclass(frozen=True)
class OfflineResult(_Recorded):
    """A TD3-BC run's result file (Table 2; `info["agent"]`: its saved agent, when kept)
    or a task's data-quality records (Table 4; `info["records"]`, `info["plot"]`)."""

    TYPE: ClassVar[str] = "offline"
    PATH_KEY: ClassVar[str] = "result_file"

    @property
    def agent(self) -> Path | None:
        return Path(self.info["agent"]) if self.info.get("agent") else None

    def outputs(self) -> list[str]:
        extra = [self.info[k] for k in ("agent", "plot") if self.info.get(k)]
        return [str(self.path), *map(str, extra)]


@dataclass(frozen=True)
class Report(_Recorded):
    """The report (`mtdiff.report`): report.md, with results.json beside it."""

    TYPE: ClassVar[str] = "report"
    PATH_KEY: ClassVar[str] = "report"

    @property
    def results(self) -> Path:
        return Path(self.info["results"])

    def outputs(self) -> list[str]:
        return [str(self.path), str(self.results)]


Artifact = Dataset | Checkpoint | Evaluation | OfflineResult | Report
TYPES: dict[str, Any] = {"dataset": Dataset, "checkpoint": Checkpoint,
                         "evaluation": Evaluation, "offline": OfflineResult, "report": Report}


def from_record(rec: Mapping[str, Any]) -> Artifact:
    """The artifact a job's record describes."""
    return TYPES[rec["type"]].from_record(rec)


@dataclass(frozen=True)
class Inputs:
    """What a stage is given besides its config: the artifacts it reads, by role, and which
    part of the work it is (the graph fills it from a job's dependencies and fields, the
    commands from their arguments). A stage reads the fields it needs and says so when one
    is missing."""

    data: Dataset | None = None  # the dataset it reads
    model: Checkpoint | None = None  # a trained model (a student's teacher, a synthesizer)
    synth: Dataset | None = None  # a task's augmented data (TD3-BC on MTDiff-S, Table 4)
    agent: OfflineResult | None = None  # TD3-BC on the original data (S4RL's Q)
    suite: str | None = None  # collect, reference
    task: str | None = None  # synthesize, offline, quality
    tasks: tuple[str, ...] = ()  # a subset's tasks; an evaluation's (empty: all)
    prompt_tasks: tuple[str, ...] = ()  # a subset's tasks kept for their prompts only
    maps: tuple[str, ...] = ()  # an evaluation's Maze2D maps (empty: all)
    wrong_prompt: bool = True  # Maze2D's wrong-prompt control
    view: str | None = None  # the dataset view the offline stages read
    seed: int | None = None  # an offline stage's seed
    variant: str | None = None  # TD3-BC's data: original / rad / s4rl / mtdiff-s
    save_agent: bool = False  # keep TD3-BC's agent (S4RL's dependency)
    labels: Mapping[str, Any] = field(default_factory=dict)  # copied into the result
    graph: tuple[str, ...] | Mapping[str, str] = ()  # the report's jobs (or names -> keys)

    def need(self, name: str) -> Any:
        """Field `name`, which this stage cannot do without."""
        value = getattr(self, name)
        if value is None or value == ():
            raise ValueError(f"this stage needs inputs.{name}; pass it (the graph sets it "
                             "from the job, a command from its arguments)")
        return value
