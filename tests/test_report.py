"""The report: paper numbers beside ours, CSVs, PNGs, "not run" for absent inputs.

Inputs are small synthetic files in the exact formats the stages write: evaluation JSONs
as `mtdiff.eval.stage.run` writes them (episodes + the summary `summarize` makes of
them), and the offline stage's JSON contracts written through `mtdiff.report.contracts`.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtdiff.report import (
    ContractError,
    build_report,
    log_report_to_mlflow,
    paper,
    read_records,
    write_quality,
    write_single_task,
    write_table2,
    write_task_count,
)
from mtdiff.report.sources import find_evals

MT10 = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-open-v3",
        "drawer-close-v3", "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3",
        "window-close-v3"]
REPO = Path(__file__).resolve().parents[1]


def _summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """`mtdiff.eval.suites.summarize`'s output shape (kept here: that module imports torch)."""
    by_task: dict[str, dict[int, tuple[float, float]]] = {}
    for r in results:
        by_task.setdefault(r["task"], {})[r["seed"]] = (np.mean(r["success"]),
                                                        np.mean(r["returns"]))
    tasks = {t: {"success_mean": float(np.mean([v[0] for v in s.values()])),
                 "success_std": float(np.std([v[0] for v in s.values()])),
                 "return_mean": float(np.mean([v[1] for v in s.values()])),
                 "return_std": float(np.std([v[1] for v in s.values()]))}
             for t, s in by_task.items()}
    seeds = sorted({r["seed"] for r in results})
    per_seed = [np.mean([by_task[t][sd][0] for t in by_task]) for sd in seeds]
    return {"tasks": tasks, "success_mean": float(np.mean(per_seed)),
            "success_std": float(np.std(per_seed)), "seeds": seeds, "env_steps": 100,
            "env_steps_per_s_per_job": 10.0, "plan_seconds": 1.0}


def _write_eval(out: Path, suite: str, kind: str, jobs: list[tuple[str, str, str]],
                rng: np.random.Generator, seeds: tuple[int, ...] = (0, 1),
                episodes: int = 4) -> dict[str, Any]:
    """An eval JSON at `<out>/eval/<suite>-train-<kind>-<hash>/eval-<suite>.json`.

    jobs: (task or map, group, prompt "own"/"wrong").
    """
    results = []
    for task, group, prompt in jobs:
        for seed in seeds:
            p = rng.uniform(0.1, 0.9)
            results.append({
                "task": task, "seed": seed, "prompt_task": task, "episodes": episodes,
                "success": [bool(x) for x in rng.random(episodes) < p],
                "returns": rng.uniform(0, 4000 if suite == "metaworld" else 200,
                                       episodes).round(1).tolist(),
                "lengths": [500] * episodes, "first_success": [-1] * episodes,
                "env_steps": 500 * episodes, "plan_seconds": 1.0, "seconds": 2.0,
                "group": group, "prompt": prompt})
    own = [r for r in results if r["prompt"] == "own"]
    summary: dict[str, Any] = {"suite": suite, "checkpoint": str(out / "no-such-checkpoint"),
                               "wall_seconds": 3.0, "diffusion": {"sampler": "ddim"},
                               "eval": {"episodes": episodes, "seeds": list(seeds),
                                        "stop_on_success": suite == "metaworld"},
                               "all": _summarize(own), "env_steps_per_s": 100.0}
    for group in ("train", "unseen", "heldout"):
        if any(r["group"] == group for r in own):
            summary[group] = _summarize([r for r in own if r["group"] == group])
    if any(r["prompt"] == "wrong" for r in results):
        summary["unseen_wrong_prompt"] = _summarize([r for r in results if r["prompt"] == "wrong"])
    dest = out / "eval" / f"{suite}-train-{kind}-{len(kind):012x}"
    dest.mkdir(parents=True)
    (dest / f"eval-{suite}.json").write_text(json.dumps({"summary": summary,
                                                         "episodes": results}))
    return summary


def _offline_records(out: Path, rng: np.random.Generator) -> None:
    rows = [{"task": t, "seen": seen, "method": m, "seed": s,
             "success": float(rng.uniform(0.1, 0.9))}
            for t, seen in (("box-close-v3", False), ("coffee-push-v3", True))
            for m in ("original", "s4rl", "rad", "mtdiff-s") for s in (0, 1, 2)]
    write_table2(out, rows)
    write_quality(out, [{"task": t, "method": m, "dynamics_error": float(rng.uniform(0, 0.1)),
                         "l2_distance": float(rng.uniform(0.3, 0.5))}
                        for t in ("box-close-v3", "coffee-push-v3")
                        for m in ("original", "s4rl", "rad", "mtdiff-s")])
    write_task_count(out, [{"num_tasks": n, "seed": s, "success": float(rng.uniform(0, 1)),
                            "task": "coffee-push-v3"} for n in (10, 20, 30, 45) for s in (0, 1)])
    write_single_task(out, [{"task": t, "method": m, "seed": s,
                             "success": float(rng.uniform(0, 1))}
                            for t in paper.FIG6_TASKS
                            for m in ("original", "mtdiff-s-single", "mtdiff-s") for s in (0, 1)])


@pytest.fixture
def full_run(tmp_path: Path) -> tuple[Path, dict[str, dict[str, Any]]]:
    """A reproduction folder with every input the report reads."""
    rng = np.random.default_rng(0)
    out = tmp_path / "repro-local"
    man = out / "data" / "metaworld-945f130519a4" / "manifest.json"
    man.parent.mkdir(parents=True)
    man.write_text(json.dumps({"suite": "metaworld", "config_hash": "945f130519a4",
                               "source": "scripted", "tasks": {
                                   t: {"transitions": 50_000} for t in MT10}}))
    maze_jobs = [(f"train-{i}", "train", "own") for i in range(8)]
    maze_jobs += [(m, "unseen", p) for m in ("unseen-0", "unseen-1") for p in ("own", "wrong")]
    summaries = {"maze2d": _write_eval(out, "maze2d", "mtdiff-p", maze_jobs, rng)}
    for kind in ("mtdiff-p", "mtdiff-p-onehot"):
        summaries[kind] = _write_eval(out, "metaworld", kind,
                                      [(t, "train", "own") for t in MT10], rng)
    _offline_records(out, rng)
    return out, summaries


def _section(md: str, title: str) -> str:
    """The Markdown section whose heading starts with `title`."""
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _line(md: str, start: str) -> str:
    found = [ln for ln in md.splitlines() if ln.startswith(start)]
    assert found, f"no line starting with {start!r}"
    return found[0]


def test_report_puts_paper_numbers_beside_ours(full_run):
    out, summaries = full_run
    path = build_report(out, preset="local", read_checkpoints=False)
    assert path == out / "report" / "report.md"
    md = path.read_text()
    assert "_not run_" not in md and "Could not build" not in md

    # Table 1: the paper's 59.53 ± 1.12 and ours (the train group, in %) on one row.
    s = summaries["mtdiff-p"]["train"]
    row = _line(md, "| MTDiff-P |")
    assert "59.53 ± 1.12" in row and "48.67 ± 1.32" in row
    assert f"{100 * s['success_mean']:.2f} ± {100 * s['success_std']:.2f}" in row
    assert "local" in row and "10 (MT10)" in row and "2 x 4" in row
    assert "61.32 ± 0.89" in _line(md, "| MTDiff-P-onehot |")
    assert _line(md, "| MTCQL |").count("–") >= 4  # nothing printed, nothing run

    # Table 6: paper return beside ours (pooled over all episodes of the task).
    with open(out / "eval" / next(p.name for p in (out / "eval").iterdir()
                                  if "metaworld-train-mtdiff-p-" in p.name and "onehot"
                                  not in p.name) / "eval-metaworld.json") as f:
        eps = [e for e in json.load(f)["episodes"] if e["task"] == "reach-v3"]
    rets = [x for e in eps for x in e["returns"]]
    t6 = _section(md, "Table 6")
    row6 = _line(t6, "| reach-v3 |")
    assert "4144.2 ± 645.4" in row6 and f"{np.mean(rets):.1f} ± {np.std(rets):.1f}" in row6
    assert "not in the paper's table" in _line(t6, "| box-close-v3 |")
    assert "only up to each episode's first success" in t6  # eval.stop_on_success

    # Table 2: Original legible, the lost column marked, the printed cells kept.
    row2 = _line(_section(md, "Table 2"), "| box-close-v3 | unseen")
    assert "23.46 ± 7.11" in row2 and "not legible" in row2 and "↑ 211%" in row2
    assert "131%" in md  # §5.3's text, as a note

    # Table 4 and Fig. 7.
    assert "0.0174" in _line(md, "| MTDiff-S |") and "0.4552" in _line(md, "| MTDiff-S |")
    assert "| coffee-push-v3 | 45 |" in md

    rep = out / "report"
    for name in ("fig5_maze2d", "fig6_single_task", "fig7_task_count", "success_per_task"):
        assert (rep / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(rep / "table1.csv") as f:
        t1 = {r["method"]: r for r in csv.DictReader(f)}
    assert float(t1["MTDiff-P"]["near_optimal_paper_mean"]) == 59.53
    assert float(t1["MTDiff-P"]["near_optimal_ours_mean"]) == pytest.approx(
        100 * s["success_mean"], abs=1e-4)
    assert t1["MTDiff-P"]["sub_optimal_ours_mean"] == ""  # ours ran near-optimal only
    for name in ("table2", "table4", "table4_per_task", "table6", "fig5", "fig6", "fig7",
                 "success_per_task"):
        with open(rep / f"{name}.csv") as f:
            assert len(list(csv.DictReader(f))) > 0, name


def test_missing_inputs_say_not_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    md = build_report(out, read_checkpoints=False).read_text()
    assert md.count("_not run_") == 7
    assert "23.46 ± 7.11" in md  # Table 2 still shows the paper's legible cells
    f6 = _section(md, "Fig. 6")
    assert "_not run_: no single-task augmentation results" in f6
    assert "offline/single_task.json" in f6 and paper.FIG6_NOTE in f6
    assert md.index("## Fig. 6") < md.index("## Fig. 7")
    with pytest.raises(FileNotFoundError, match="full_repro"):
        build_report(tmp_path / "absent")


def test_only_maze_and_a_bad_contract(tmp_path):
    out = tmp_path / "run"
    rng = np.random.default_rng(1)
    _write_eval(out, "maze2d", "mtdiff-p", [("train-0", "train", "own"),
                                            ("unseen-0", "unseen", "own")], rng)
    (out / "offline").mkdir()
    (out / "offline" / "table2.json").write_text('[{"task": "x"}]')
    md = build_report(out, preset="smoke", read_checkpoints=False).read_text()
    assert md.count("_not run_") == 5  # Table 1, Table 6, Table 4, Figs. 6 and 7
    assert "Could not build" in md and "missing key 'seen'" in md
    assert (out / "report" / "fig5_maze2d.png").exists()


def test_contracts_validate_and_merge(tmp_path):
    row = {"task": "coffee-push-v3", "seen": True, "method": "rad", "seed": 0, "success": 0.5}
    with pytest.raises(ContractError, match=r"rate in \[0, 1\]"):
        write_table2(tmp_path, [{**row, "success": 45.0}])
    with pytest.raises(ContractError, match="not one of"):
        write_table2(tmp_path, [{**row, "method": "synther"}])
    with pytest.raises(ContractError, match="must be a bool"):
        write_table2(tmp_path, [{**row, "seen": 1}])
    write_table2(tmp_path, [row, {**row, "seed": 1}])
    write_table2(tmp_path, [{**row, "seed": 1, "success": 0.75, "preset": "local"}], merge=True)
    recs = read_records("table2", tmp_path)
    assert [(r["seed"], r["success"]) for r in recs] == [(0, 0.5), (1, 0.75)]
    assert recs[1]["preset"] == "local"  # extra keys are kept
    assert not list((tmp_path / "offline").glob(".*.tmp"))
    with pytest.raises(ContractError, match="num_tasks"):
        write_task_count(tmp_path, [{"num_tasks": 0, "seed": 0, "success": 0.1, "task": "a"}])
    single = {"task": "coffee-push-v3", "method": "rad", "seed": 0, "success": 0.5}
    allowed = r"'rad' is not one of \('original', 'mtdiff-s-single', 'mtdiff-s'\)"
    with pytest.raises(ContractError, match=allowed):
        write_single_task(tmp_path, [single])
    (tmp_path / "offline" / "single_task.json").write_text(json.dumps([single]))
    with pytest.raises(ContractError, match=allowed):
        read_records("single_task", tmp_path)


def test_fig6_single_vs_multi_task(tmp_path):
    """Fig. 6: per task, Original / MTDiff-S-single / MTDiff-S in %, mean ± std over seeds;
    the paper's tasks first, a mean row (per seed over tasks) when there are several."""
    base = {"original": (0.2, 0.4), "mtdiff-s-single": (0.3, 0.5), "mtdiff-s": (0.6, 0.8)}
    write_single_task(tmp_path, [{"task": t, "method": m, "seed": s, "success": v[s] + d,
                                  "preset": "local"}
                                 for t, d in (("dial-turn-v3", 0.0), ("coffee-push-v3", 0.1))
                                 for m, v in base.items() for s in (0, 1)])
    md = build_report(tmp_path, read_checkpoints=False).read_text()
    f6 = _section(md, "Fig. 6")
    assert "_not run_" not in f6 and "Could not build" not in f6
    rows = [ln for ln in f6.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert rows == ["| Task | Original (ours) | MTDiff-S-single (ours) | MTDiff-S (ours) | "
                    "Ours: seeds |",
                    "| coffee-push-v3 | 40.00 ± 10.00 | 50.00 ± 10.00 | 80.00 ± 10.00 | 2 |",
                    "| dial-turn-v3 | 30.00 ± 10.00 | 40.00 ± 10.00 | 70.00 ± 10.00 | 2 |",
                    "| mean over 2 tasks | 35.00 ± 10.00 | 45.00 ± 10.00 | 75.00 ± 10.00 | 2 |"]
    assert "preset `local`" in f6 and paper.FIG6_NOTE in f6
    rep = tmp_path / "report"
    assert (rep / "fig6_single_task.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(rep / "fig6.csv") as f:
        csv_rows = {r["task"]: r for r in csv.DictReader(f)}
    assert float(csv_rows["coffee-push-v3"]["mtdiff_s_ours_mean"]) == pytest.approx(80.0)
    assert float(csv_rows["dial-turn-v3"]["original_ours_std"]) == pytest.approx(10.0)
    assert csv_rows["dial-turn-v3"]["preset"] == "local"

    one = tmp_path / "one"  # one seed: the value itself, no ± and no mean row
    write_single_task(one, [{"task": "disassemble-v3", "method": m, "seed": 0,
                             "success": v[0]} for m, v in base.items()])
    f6 = _section(build_report(one, read_checkpoints=False).read_text(), "Fig. 6")
    assert "| disassemble-v3 | 20.00 | 30.00 | 60.00 | 1 |" in f6 and "| mean over" not in f6


def test_paper_data():
    from mtdiff.envs.metaworld import ALL_TASKS

    assert len(paper.TABLE6) == 49 and set(paper.TABLE6) | set(paper.TABLE6_MISSING) == \
        set(ALL_TASKS)
    assert paper.TABLE6["reach-v3"][0] == paper.Cell(4144.2, 645.4)
    assert {r.task for r in paper.TABLE2} <= set(ALL_TASKS)
    assert paper.TABLE1[7][1] == paper.Cell(59.53, 1.12)


def test_cli(full_run, tmp_path, capsys):
    out, _ = full_run
    spec = importlib.util.spec_from_file_location("report_cli", REPO / "pipelines/report.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--run", str(out), "--no-checkpoints", "--dest",
                     str(tmp_path / "rep")]) == 0
    assert f"report: {tmp_path / 'rep' / 'report.md'}" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "preset: `local`" in md  # from the folder name repro-local
    runs, problems = find_evals(out, read_checkpoints=False)
    assert len(runs) == 3 and not problems
    assert cli.main(["--run", str(tmp_path / "absent")]) == 2


class _FakeMlflow:
    """The two calls `log_report_to_mlflow` makes (importing mlflow costs seconds)."""

    def __init__(self, active: bool) -> None:
        self.active, self.logged = active, []

    def active_run(self) -> object | None:
        return object() if self.active else None

    def log_artifacts(self, local_dir: str, artifact_path: str) -> None:
        self.logged.append((local_dir, artifact_path))


def test_log_report_to_mlflow(tmp_path, monkeypatch):
    rep = build_report(tmp_path, read_checkpoints=False)
    monkeypatch.delitem(sys.modules, "mlflow", raising=False)
    assert log_report_to_mlflow(rep.parent) is False  # mlflow never imported: no run
    fake = _FakeMlflow(active=False)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    assert log_report_to_mlflow(rep.parent) is False and fake.logged == []
    fake.active = True
    assert log_report_to_mlflow(rep) is True  # report.md's path works too
    assert fake.logged == [(str(rep.parent), "report")]


@pytest.mark.slow
def test_log_report_to_real_mlflow(full_run, tmp_path):
    """Against a real SQLite store (slow only because importing mlflow is)."""
    import mlflow

    out, _ = full_run
    rep = build_report(out, preset="local", read_checkpoints=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("report", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        assert log_report_to_mlflow(rep.parent)
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/report.md", "report/table1.csv", "report/fig5_maze2d.png"} <= names


def test_unknown_preset_and_view_get_their_own_row(tmp_path):
    out = tmp_path / "run"
    _write_eval(out, "metaworld", "mtdiff-p", [("reach-v3", "train", "own")],
                np.random.default_rng(2), seeds=(0,))
    md = build_report(out, read_checkpoints=False).read_text()
    row = _line(md, "| mtdiff-p (ours, view unknown) |")
    assert "unknown" in row and "1 x 4" in row
    assert _line(md, "| MTDiff-P |").count("–") == 5  # never put in a guessed column


@pytest.mark.slow
def test_preset_and_view_from_the_checkpoint(tmp_path):
    """A checkpoint's metadata (as `mtdiff.train.core.save_checkpoint` writes it) decides
    the preset and the dataset view (slow only because it imports torch)."""
    import torch

    out = tmp_path / "repro-local"
    summary = _write_eval(out, "metaworld", "mtdiff-p", [("reach-v3", "train", "own")],
                          np.random.default_rng(3))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    meta = {"kind": "mtdiff-p", "config": {"preset": "paper"}, "tasks": ["reach-v3"],
            "dataset": {"hash": "abc123", "view": "sub-optimal"}}
    torch.save({"model": {}, "ema": {}, "step": 1, "meta": json.dumps(meta)},
               ckpt / "checkpoint.pt")
    path = next(out.glob("eval/*/eval-metaworld.json"))
    doc = json.loads(path.read_text())
    doc["summary"]["checkpoint"] = str(ckpt)
    path.write_text(json.dumps(doc))
    md = build_report(out, preset="local").read_text()
    row = _line(md, "| MTDiff-P |")
    s = summary["train"]
    assert row.endswith(f"| 48.67 ± 1.32 | {100 * s['success_mean']:.2f} ± "
                        f"{100 * s['success_std']:.2f} | paper | 1 | 2 x 4 |")
    assert "dataset `abc123`" in md and "preset `paper` (checkpoint)" in md
