"""The whole reproduction, stage by stage (DESIGN.md, data flow).

Stages so far: Maze2D and Meta-World collection; training of MTDiff-P (both suites),
MTDiff-P-onehot and MTDiff-S (Meta-World); planning evaluation on both suites; data
synthesis with MTDiff-S + TD3-BC on original vs augmented data (Tables 2 and 4,
`mtdiff.synth.offline_stage`); the report (tables and figures beside the paper's,
rebuilt every run). Each stage writes under the run's output folder in a sub-folder named
by its config hash and is skipped when that output exists and is valid, so a re-run after
a crash continues where it stopped. One MLflow parent run per reproduction, a child run
per stage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtdiff.config import Config


def choose_preset() -> tuple[str, str]:
    """(preset, reason) when none is given: `paper` on a cluster with GPUs, else `local`."""
    from mtdiff.runtime import cluster_gpus, init_ray

    init_ray()
    gpus = cluster_gpus()
    if gpus > 0:
        return "paper", f"the Ray cluster has {gpus:g} GPU(s)"
    return "local", "the Ray cluster has no GPU (a laptop or CPU-only cluster)"


@dataclass
class StageResult:
    """What a stage produced and how long it took."""

    name: str
    output: str
    seconds: float
    skipped: bool
    metrics: dict[str, float] = field(default_factory=dict)


def _collect_stage(cfg: Config, suite: str, out: Path) -> StageResult:
    from mtdiff.collect import run as collect
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import MANIFEST

    root = out / "data" / f"{suite}-{cfg.collection_hash(suite)}"
    existed = (root / MANIFEST).exists()
    t0 = time.time()
    collect(cfg, suite=suite, out=root)
    man = read_manifest(root)
    metrics = {"transitions": float(sum(t["transitions"] for t in man["tasks"].values())),
               "tasks": float(len(man["tasks"]))}
    return StageResult(f"collect-{suite}", str(root), time.time() - t0, existed, metrics)


def _train_stage(cfg: Config, suite: str, kind: str, out: Path) -> StageResult:
    from dataclasses import replace

    from mtdiff.train import run as train
    from mtdiff.train.core import load_checkpoint
    from mtdiff.train.stage import find_checkpoint, run_name

    cfg = replace(cfg, model=replace(cfg.model, kind=kind))
    data = out / "data" / f"{suite}-{cfg.collection_hash(suite)}"
    runs = out / "train" / suite
    t0 = time.time()
    try:
        existed = int(load_checkpoint(find_checkpoint(runs / run_name(cfg, data)))["step"]) >= \
            cfg.train.steps
    except ValueError:
        existed = False
    ckpt = train(cfg, data=data, out=runs, track=False)
    return StageResult(f"train-{suite}-{kind}", str(ckpt), time.time() - t0, existed,
                       {"steps": float(cfg.train.steps)})


def _eval_stage(name: str, cfg: Config, suite: str, train_stage: StageResult, out: Path
                ) -> StageResult:
    import json

    from mtdiff.eval.stage import run as evaluate

    dest = out / "eval" / f"{suite}-{Path(train_stage.output).parent.name}"
    result_file = dest / f"eval-{suite}.json"
    t0 = time.time()
    if result_file.exists():
        summary = json.loads(result_file.read_text())["summary"]
        if Path(summary["checkpoint"]).resolve() == Path(train_stage.output).resolve():
            return StageResult(name, str(result_file), 0.0, True,
                               {"success_mean": summary["all"]["success_mean"]})
    summary = evaluate(train_stage.output, suite=suite, out=dest, cfg_overrides=cfg,
                       track=False)
    metrics = {"success_mean": summary["all"]["success_mean"],
               "env_steps_per_s": summary["env_steps_per_s"]}
    for group in ("train", "unseen", "unseen_wrong_prompt"):
        if group in summary:
            metrics[f"{group}_success_mean"] = summary[group]["success_mean"]
    return StageResult(name, str(result_file), time.time() - t0, False, metrics)


def _offline_stage(cfg: Config, train_stage: StageResult, out: Path) -> StageResult:
    from mtdiff.synth.offline_stage import run as synthesize_offline

    data = out / "data" / f"metaworld-{cfg.collection_hash('metaworld')}"
    t0 = time.time()
    res = synthesize_offline(cfg, checkpoint=train_stage.output, data=data, out=out)
    return StageResult("synthesize-offline", str(res.root), 0.0 if res.skipped else
                       time.time() - t0, res.skipped, res.metrics)


def _report_stage(cfg: Config, out: Path) -> StageResult:
    from mtdiff.report import build_report

    t0 = time.time()
    path = build_report(out, preset=cfg.preset)
    return StageResult("report", str(path), time.time() - t0, False)


def run(cfg: Config, *, out: str | Path, track: bool = True) -> list[StageResult]:
    """Run every stage in order (skipping finished ones); returns what each did."""
    from mtdiff import tracking

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, StageResult] = {}
    stages: list[tuple[str, Any]] = [
        ("collect-maze2d", lambda: _collect_stage(cfg, "maze2d", out)),
        ("collect-metaworld", lambda: _collect_stage(cfg, "metaworld", out)),
        ("train-maze2d-mtdiff-p", lambda: _train_stage(cfg, "maze2d", "mtdiff-p", out)),
        ("train-metaworld-mtdiff-p", lambda: _train_stage(cfg, "metaworld", "mtdiff-p", out)),
        ("train-metaworld-mtdiff-p-onehot",
         lambda: _train_stage(cfg, "metaworld", "mtdiff-p-onehot", out)),
        ("train-metaworld-mtdiff-s", lambda: _train_stage(cfg, "metaworld", "mtdiff-s", out)),
        ("evaluate-maze2d",
         lambda: _eval_stage("evaluate-maze2d", cfg, "maze2d", done["train-maze2d-mtdiff-p"], out)),
        ("evaluate-metaworld",
         lambda: _eval_stage("evaluate-metaworld", cfg, "metaworld",
                             done["train-metaworld-mtdiff-p"], out)),
        ("evaluate-metaworld-onehot",
         lambda: _eval_stage("evaluate-metaworld-onehot", cfg, "metaworld",
                             done["train-metaworld-mtdiff-p-onehot"], out)),
        ("synthesize-offline",
         lambda: _offline_stage(cfg, done["train-metaworld-mtdiff-s"], out)),
        ("report", lambda: _report_stage(cfg, out)),
    ]
    results: list[StageResult] = []
    if not track:
        for name, fn in stages:
            done[name] = fn()
        return list(done.values())
    import mlflow

    from mtdiff.data.reader import read_manifest

    uri = tracking.setup(cfg)
    print(f"[repro] MLflow: {uri} (experiment {cfg.tracking.experiment!r})")
    with tracking.run(cfg, "full_repro", name=f"full_repro-{cfg.preset}", output=str(out)):
        for name, fn in stages:
            with tracking.run(cfg, name, nested=True):
                res = done[name] = fn()
                mlflow.set_tags({"output": res.output, "skipped": str(res.skipped)})
                mlflow.log_metrics({**res.metrics, "stage_seconds": res.seconds})
                if name.startswith("collect-"):
                    tracking.log_dataset(read_manifest(res.output), res.output)
                if name == "collect-metaworld" and cfg.metaworld.source == "sac":
                    from mtdiff.collect.metaworld import log_sac_runs

                    log_sac_runs(cfg, res.output)  # a child run per task with its curves
                if name == "report":
                    from mtdiff.report import log_report_to_mlflow

                    log_report_to_mlflow(Path(res.output).parent)
            results.append(res)
            print(f"[repro] {name}: {'skipped (done)' if res.skipped else 'done'} in "
                  f"{res.seconds:.1f}s -> {res.output}")
        mlflow.log_metrics({f"seconds_{r.name}": r.seconds for r in results})
    return results
