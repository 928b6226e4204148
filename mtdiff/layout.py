"""The run-folder layout, owned here (used by the experiment graph, the stages, the sweeps
and the report): every path a reproduction writes, by what made it.

    <out>/data/<suite>-<hash>/                       datasets (`Config.collection_hash`)
    <out>/data/metaworld-single-<task>-<hash>/       one task's subset (Fig. 6)
    <out>/data/metaworld-<set>-<hash>/               a task set's subset (Fig. 7)
    <out>/train/<suite>/train-<kind>-<hash>/         Ray Train runs (`train.stage.run_name`)
    <out>/distill/<suite>/distill-<hash>/            distilled students (`train.distill`)
    <out>/eval/<suite>-<train run>-<hash>/           evaluations (eval-<suite>.json, plots)
    <out>/reference/<suite>-<hash>/                  reference rows (reference-<suite>.json)
    <out>/offline/synth/<task>-<hash>/               MTDiff-S synthetic + augmented data
    <out>/offline/td3bc/<task>/<method>-s<seed>-<hash>/   TD3-BC results (result.json)
    <out>/offline/quality/<task>-<hash>/             Table 4 records and embedding plot
    <out>/offline/*.json                             report contracts (`report.contracts`)
    <out>/report/                                    report.md, results.json, CSVs, plots
    <out>/jobs/<job>.json                            each job's record (state, result, node)
    <out>/logs/<job>.log                             each job's output
    <out>/graph.json                                 the job graph (at the start, then per job)

Each folder is named by the content hash of exactly the config that made it, so a
changed setting makes a new folder and an unchanged one is found again (a rerun skips
it). Everything is absolute: paths are handed to Ray tasks on other nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mtdiff.config import Config, config_hash, to_dict


def train_run_name(cfg: Config, data_hash: str) -> str:
    """A training run's folder name: model kind (+ backbone) + the hash of the dataset and
    of everything that shapes the weights (`Config.training_hash`)."""
    kind = cfg.model.kind + ("-unet" if cfg.model.backbone == "unet" else "")
    return f"train-{kind}-{cfg.training_hash(data_hash)}"


# File names inside the folders above: spelled here only, for writers and readers alike.
def evaluation_file(folder: str | Path, suite: str) -> Path:
    """An evaluation's results (summary and episodes) in its folder."""
    return Path(folder) / f"eval-{suite}.json"


def evaluation_jobs_dir(folder: str | Path, suite: str) -> Path:
    """Where an evaluation keeps the results of its finished Ray tasks (what a rerun
    reuses)."""
    return Path(folder) / f".eval-{suite}-jobs"


def reference_file(folder: str | Path, suite: str) -> Path:
    """A suite's reference rows in their folder."""
    return Path(folder) / f"reference-{suite}.json"


def td3bc_result(folder: str | Path) -> Path:
    """One TD3-BC run's result in its folder."""
    return Path(folder) / "result.json"


def quality_file(folder: str | Path) -> Path:
    """Table 4's records of one task in its folder."""
    return Path(folder) / "quality.json"


# A dataset folder's manifest (tasks, statistics, provenance: `mtdiff.data.writer`).
MANIFEST = "manifest.json"

# A checkpoint folder's one file (`mtdiff.train.checkpoints` writes it, `mtdiff.artifacts`
# reads it), and Ray Train V2's list of a run folder's checkpoints.
CHECKPOINT_FILE = "checkpoint.pt"
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


def synthetic_dir(folder: str | Path) -> Path:
    """A synthesis's generated transitions, as a dataset, in its folder."""
    return Path(folder) / "synthetic"


def augmented_dir(folder: str | Path) -> Path:
    """The original data and a synthesis's together, as a dataset, in its folder."""
    return Path(folder) / "augmented"


def subset_hash(source_hash: str, tasks: list[str], prompt_tasks: Sequence[str] = ()) -> str:
    """The subset's `config_hash`: the source's plus the chosen tasks and prompt-only
    tasks (order-free)."""
    chosen = [sorted(tasks), sorted(prompt_tasks)] if prompt_tasks else sorted(tasks)
    return f"subset-{source_hash}-{config_hash(chosen)}"


def distill_run_name(key: dict) -> str:
    """A distillation run's folder name in `Layout.distill_root` (`train.distill.run`): the
    hash of the teacher checkpoint and everything that shapes the student."""
    return "distill-" + config_hash(key)


def job_file_name(job: str) -> str:
    """A job name as a file name ("train/metaworld/mtdiff-p/near-optimal/s0" ->
    "train__metaworld__mtdiff-p__near-optimal__s0")."""
    return job.replace("/", "__")


@dataclass(frozen=True)
class Layout:
    """Paths under one reproduction's output folder (module docstring)."""

    out: Path

    @classmethod
    def at(cls, out: str | Path) -> Layout:
        """The layout of `out`, made absolute."""
        return cls(Path(out).resolve())

    # --- data ---------------------------------------------------------------------------
    def dataset(self, cfg: Config, suite: str) -> Path:
        """The dataset `cfg` collects for `suite`."""
        return self.out / "data" / f"{suite}-{cfg.collection_hash(suite)}"

    def subset(self, source_hash: str, task: str) -> Path:
        """One task's subset of a dataset (MTDiff-S-single, Fig. 6)."""
        h = subset_hash(source_hash, [task])[-12:]
        return self.out / "data" / f"metaworld-single-{task}-{h}"

    def task_set(self, source_hash: str, name: str, tasks: list[str],
                 prompt_tasks: list[str]) -> Path:
        """Task set `name`'s subset of a dataset, with `prompt_tasks`' prompts (Fig. 7)."""
        h = subset_hash(source_hash, tasks, prompt_tasks)[-12:]
        return self.out / "data" / f"metaworld-{name}-{h}"

    # --- training -----------------------------------------------------------------------
    def train_root(self, suite: str) -> Path:
        """Where a suite's Ray Train runs live (`train.stage.run(out=...)`)."""
        return self.out / "train" / suite

    def train_run(self, cfg: Config, suite: str, data_hash: str) -> Path:
        """The Ray Train run folder of `cfg` on the dataset with hash `data_hash`."""
        return self.train_root(suite) / train_run_name(cfg, data_hash)

    def distill_root(self, suite: str) -> Path:
        """Where a suite's distilled students live (`train.distill.run(out=...)`)."""
        return self.out / "distill" / suite

    def student(self, suite: str, key: dict) -> Path:
        """The name a distill job gives its student before it exists (the stage names the
        run folder itself, `distill_run_name`): the student's evaluations are named from it."""
        return self.distill_root(suite) / f"student-{config_hash(key)[:12]}"

    # --- evaluation ---------------------------------------------------------------------
    def evaluation(self, cfg: Config, suite: str, train_run: Path) -> Path:
        """The evaluation of a training run under `cfg`'s evaluation and sampling
        settings."""
        # where it runs (CPUs / GPUs per task) does not change the results
        ev = {k: v for k, v in to_dict(cfg.eval).items() if not k.startswith("num_")}
        h = config_hash({"eval": ev, "diffusion": cfg.diffusion.identity(),
                         "maze2d": [cfg.maze2d.unseen_maps, cfg.maze2d.eval_episode_steps]})
        return self.out / "eval" / f"{suite}-{train_run.name}-{h[:8]}"

    def reference(self, cfg: Config, suite: str) -> Path:
        """The reference rows of `suite` (zero action, uniform random, the dataset's own
        numbers) under `cfg`'s dataset, evaluation and suite settings."""
        ev = {k: v for k, v in to_dict(cfg.eval).items() if not k.startswith("num_")}
        h = config_hash({"data": cfg.collection_hash(suite), "eval": ev,
                         "prompt_len": cfg.data.prompt_len,
                         "maze2d": [cfg.maze2d.unseen_maps, cfg.maze2d.eval_episode_steps]})
        return self.out / "reference" / f"{suite}-{h[:8]}"

    # --- offline RL ---------------------------------------------------------------------
    def synthesis(self, task: str, key: dict) -> Path:
        """MTDiff-S data of `task` (`key`: checkpoint, sampling and synthesis settings)."""
        return self.out / "offline" / "synth" / f"{task}-{config_hash(to_dict(key))[:10]}"

    def td3bc(self, task: str, method: str, seed: int, key: dict) -> Path:
        """One TD3-BC run (`key`: its data's identity and the TD3-BC settings)."""
        h = config_hash(to_dict(key))[:10]
        return self.out / "offline" / "td3bc" / task / f"{method}-s{seed}-{h}"

    def quality(self, task: str, key: dict) -> Path:
        """Table 4's measurements of `task`."""
        return self.out / "offline" / "quality" / f"{task}-{config_hash(to_dict(key))[:10]}"

    # --- bookkeeping --------------------------------------------------------------------
    def job_record(self, job: str) -> Path:
        """The record a finished job leaves (state, result, seconds, node)."""
        return self.out / "jobs" / f"{job_file_name(job)}.json"

    def job_log(self, job: str) -> Path:
        """A job's output."""
        return self.out / "logs" / f"{job_file_name(job)}.log"

    @property
    def graph(self) -> Path:
        """The last run's job graph with states."""
        return self.out / "graph.json"

    @property
    def report(self) -> Path:
        """The report folder."""
        return self.out / "report"
