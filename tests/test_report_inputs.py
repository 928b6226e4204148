"""The report's job, CLI and contracts, and what it says when inputs are absent, unreadable,
stale or moved: "not run" for absent inputs, a problem line, never a crash. Its inputs (the
`run` fixture): tests/report_graph.py.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from mtdiff.config import get_preset
from mtdiff.experiment.jobs import Job
from mtdiff.layout import Layout
from mtdiff.report import (
    ContractError,
    GraphError,
    build_report,
    log_report_to_mlflow,
    paper,
    read_records,
    write_single_task,
    write_table2,
    write_task_count,
)
from tests.report_graph import _graph, _line, _results, _section

REPO = Path(__file__).resolve().parents[1]


def test_report_job_writes_contracts_and_report(run):
    """The graph's report job (`mtdiff.report.stage.run`), as the runner calls it."""
    from mtdiff.experiment.execute import job_inputs
    from mtdiff.report.stage import run as report

    names = [j["name"] for j in json.loads((run / "graph.json").read_text())["jobs"]][:-1]
    job = Job("report", "report", get_preset("smoke"), {}, deps=names, always=True,
              params={"root": str(run), "graph": names})
    res = report(job.cfg, *job_inputs(job, {})).to_record()
    assert res["results"] == str(run / "report" / "results.json")
    assert json.loads(Path(res["results"]).read_text())["preset"] == "smoke"
    t2 = read_records("table2", run)
    assert len(t2) == 16 and {r["task"] for r in t2} == {"box-close-v3", "reach-v3"}
    assert len(read_records("quality", run)) == 6
    # Fig. 7: the graph's record merged into the sweep's file, not read back as a sweep's
    counts = read_records("task_count", run)
    assert sorted((r["num_tasks"], str(r.get("source"))) for r in counts) == [
        (10, "graph"), (20, "None"), (20, "None")]
    md = Path(res["report"]).read_text()
    assert md.count("| coffee-push-v3 | 10 |") == 1


def test_missing_inputs_say_not_run(tmp_path):
    lay = Layout.at(tmp_path / "run")
    lay.out.mkdir()
    with pytest.raises(GraphError, match="full_repro"):
        build_report(lay.out)
    _graph(lay, ["evaluate/metaworld/mtdiff-p/near-optimal/s0"])  # never finished
    md = build_report(lay.out).read_text()
    # Table 1, Maze2D, Table 5, Table 6, state use, aggregates, Table 2, Table 4, Figs. 6, 7
    assert md.count("_not run_") == 10
    assert "_not run_: no Meta-World, Cheetah-vel or Ant-dir" in _section(md, "Aggregates")
    assert "59.53 ± 1.12" in md and "23.46 ± 7.11" in md  # the paper's numbers stay
    assert "| MTDiff-P | -29.09 ± 0.31 | not run |" in md
    f6 = _section(md, "Fig. 6")
    assert "_not run_: no single-task augmentation results" in f6 and paper.FIG6_NOTE in f6
    assert "preset: `unknown`" in md
    res = _results(lay.out)
    assert all(c["mean"] is None for c in res["cells"]) and res["differences"] == []
    with pytest.raises(FileNotFoundError, match="full_repro"):
        build_report(tmp_path / "absent", graph=[])


def test_unreadable_evaluation_is_a_problem_not_a_crash(run):
    eval_file = json.loads(Layout.at(run).job_record(
        "evaluate/maze2d/promptdt/s1").read_text())["result"]["eval_file"]
    Path(eval_file).write_text("{not json")
    md = build_report(run).read_text()
    assert "- problem: evaluate/maze2d/promptdt/s1: evaluation" in md
    assert "1 seed, 8 ep; CI: episodes" in _line(_section(md, "Fig. 5"), "| PromptDT |")
    assert "preset: `local`" in md  # named by the TD3-BC records


def test_stale_records_are_not_read(run):
    """A record made under another config (its key is not the graph's) or whose outputs
    are gone: listed, its cell left out."""
    keys = {j["name"]: j["key"] for j in json.loads((run / "graph.json").read_text())["jobs"]}
    keys.pop("report")
    keys["evaluate/metaworld/mtdiff-p/near-optimal/s1"] = "another-key0"
    eval_file = json.loads(Layout.at(run).job_record("evaluate/metaworld/mtdiff-p-unet/"
                                                    "near-optimal/s0").read_text())
    Path(eval_file["result"]["eval_file"]).unlink()
    md = build_report(run, graph=keys).read_text()
    stale = _line(md, "- **2 jobs with a stale record**")
    assert "`evaluate/metaworld/mtdiff-p/near-optimal/s1`" in stale
    assert "`evaluate/metaworld/mtdiff-p-unet/near-optimal/s0`" in stale
    # MTDiff-P now rests on seed 0 alone (37.5 %): over its 8 episodes
    assert "| MTDiff-P | 59.53 ± 1.12 | 37.50 ± 51.75 " in md and "1 seed, 8 ep; CI: episodes" in md
    assert "- problem:" not in md


def test_moved_run_folder_still_reads(run, tmp_path):
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.move(str(run), moved)
    md = build_report(moved, preset="local").read_text()
    assert "50.00 ± 17.68 [-108.83, 208.83]" in md and "- problem:" not in md
    assert (moved / "report" / "maze2d_paths.png").exists()


def test_cli(run, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("report_cli", REPO / "pipelines/report.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--run", str(run), "--dest", str(tmp_path / "rep")]) == 0
    assert f"report: {tmp_path / 'rep' / 'report.md'}" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "preset: `local`" in md and (tmp_path / "rep" / "results.json").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["--run", str(empty)]) == 2
    assert "no job graph" in capsys.readouterr().err
    assert cli.main(["--run", str(tmp_path / "absent")]) == 2


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


def test_paper_data():
    from mtdiff.envs.metaworld import ALL_TASKS

    assert len(paper.TABLE6) == 49 and set(paper.TABLE6) | set(paper.TABLE6_MISSING) == \
        set(ALL_TASKS)
    assert paper.TABLE6["reach-v3"][0] == paper.Cell(4144.2, 645.4)
    assert {r.task for r in paper.TABLE2} <= set(ALL_TASKS)
    assert [r[0] for r in paper.TABLE1] == ["CARE [53] (online)", "PaCo [56] (online)", "MTDT",
                                            "PromptDT", "MTBC", "MTCQL", "MTIQL", "MTDiff-P",
                                            "MTDiff-P-onehot"]
    assert paper.TABLE1[7][1:] == (paper.Cell(59.53, 1.12), paper.Cell(48.67, 1.32), "mtdiff-p")
    assert paper.TABLE3[1][1:] == (paper.Cell(55.67, 1.27), paper.Cell(47.42, 0.74),
                                   "mtdiff-p-unet")
    assert [r[1:3] for r in paper.TABLE5] == [(paper.Cell(-29.09, 0.31), paper.Cell(602.17, 1.68)),
                                              (paper.Cell(-34.43, 2.33), paper.Cell(409.81, 9.69))]


@pytest.mark.slow
def test_log_report_to_real_mlflow(run, tmp_path):
    """Against a real SQLite store (slow only because importing mlflow is)."""
    import mlflow

    rep = build_report(run, preset="local")
    assert log_report_to_mlflow(rep.parent) is False  # no active run: nothing logged
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = mlflow.create_experiment("report", artifact_location=(tmp_path / "art").as_uri())
    with mlflow.start_run(experiment_id=exp) as active:
        assert log_report_to_mlflow(rep)  # report.md's path works too
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(active.info.run_id, "report")}
    assert {"report/report.md", "report/results.json", "report/table1.csv",
            "report/fig5_maze2d.png"} <= names
