"""The cost of a job graph (`mtdiff.experiment.cost`): the schedule simulator on graphs
whose answer is known by hand, the shipped calibrations, cluster files, and `--plan`'s
estimates through the entry point."""

from __future__ import annotations

import inspect
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.clusters import ClusterFileError, load_cluster
from mtdiff.experiment.cost import SimJob, estimate, format_estimate, job_work, simulate
from mtdiff.experiment.grid import build_jobs
from mtdiff.experiment.rates import (
    CALIBRATION_DIR,
    ISA,
    RATES,
    SHIPPED,
    CalibrationError,
    cpu_calibration_for,
    default_calibration,
    load_calibration,
    measured_elsewhere,
    precision_unpriced,
    this_machine,
)
from mtdiff.experiment.workload import Task, Work
from mtdiff.experiment.workload_offline import NEAREST_QUERIES
from mtdiff.synth.quality import l2_distance_from_dataset

REPO = Path(__file__).resolve().parents[1]
CPU = {"CPU": 1.0}


def job(name: str, seconds: float, need: dict[str, float] | None = None,
        deps: tuple[str, ...] = (), n: int = 1, lead: float = 0.0, gate: float = 0.0,
        bundles: int = 1) -> SimJob:
    return SimJob(name, "x", deps, Work((Task(need or CPU, seconds, bundles),) * n, lead),
                  gate)


# ----------------------------------------------------------------------------------------
# The simulator
# ----------------------------------------------------------------------------------------


def test_two_independent_jobs_share_or_split_the_cpus():
    graph = [job("a", 10), job("b", 10)]
    assert simulate(graph, [{"CPU": 1}]).makespan == pytest.approx(20)
    assert simulate(graph, [{"CPU": 2}]).makespan == pytest.approx(10)
    assert simulate(graph, [{"CPU": 1}, {"CPU": 1}]).makespan == pytest.approx(10)


def test_a_dependency_chain_is_a_sum_whatever_the_cluster():
    graph = [job("a", 10), job("b", 5, deps=("a",)), job("c", 2.5, deps=("b",))]
    s = simulate(graph, [{"CPU": 8}])
    assert s.makespan == pytest.approx(17.5)
    assert (s.start["b"], s.end["b"]) == (pytest.approx(10), pytest.approx(15))


def test_a_fan_out_runs_in_waves_and_its_lead_holds_nothing():
    # 5 tasks of 4 s on 2 CPUs after a 1 s lead: 3 waves, 1 + 12 = 13 s
    assert simulate([job("fan", 4, n=5, lead=1.0)], [{"CPU": 2}]).makespan == pytest.approx(13)
    # d (no lead) is queued first and takes a CPU at 0 s; the fan's tasks fill the other
    # CPU from 1 s and d's after 3 s: 1-5, 3-7, 5-9, 7-11, 9-13
    s = simulate([job("fan", 4, n=5, lead=1.0), job("d", 3)], [{"CPU": 2}])
    assert s.end["d"] == pytest.approx(3) and s.end["fan"] == pytest.approx(13)


def test_a_later_task_that_fits_goes_ahead_of_one_that_does_not():
    # g needs 2 CPUs and waits for a to end; b (1 CPU) starts beside a meanwhile
    graph = [job("a", 10), job("g", 1, {"CPU": 2}), job("b", 5)]
    s = simulate(graph, [{"CPU": 2}])
    assert s.start["b"] == 0 and s.end["b"] == pytest.approx(5)
    assert s.end["g"] == pytest.approx(11)


def test_gpu_jobs_wait_for_the_gpu_and_shares_run_together():
    graph = [job(f"t{i}", 10, {"CPU": 1, "GPU": 1}) for i in range(2)]
    assert simulate(graph, [{"CPU": 8, "GPU": 1}]).makespan == pytest.approx(20)
    shared = [job(f"e{i}", 10, {"CPU": 1, "GPU": 0.25}) for i in range(4)]
    assert simulate(shared, [{"CPU": 8, "GPU": 1}]).makespan == pytest.approx(10)


def test_a_trainer_s_workers_are_placed_together_across_nodes():
    graph = [job("ddp", 10, {"CPU": 1, "GPU": 1}, bundles=2)]
    assert simulate(graph, [{"CPU": 4, "GPU": 1}, {"CPU": 4, "GPU": 1}]).makespan == 10
    bad = simulate(graph, [{"CPU": 4, "GPU": 1}])
    assert bad.makespan is None and "needs 2 x" in bad.unschedulable["ddp"]


def test_a_job_needing_a_gpu_on_a_cpu_cluster_is_unschedulable_and_blocks_its_dependents():
    graph = [job("train", 10, {"CPU": 1, "GPU": 1}), job("eval", 5, deps=("train",)),
             job("other", 3)]
    s = simulate(graph, [{"CPU": 2}])
    assert s.makespan is None
    assert "needs {'CPU': 1, 'GPU': 1}" in s.unschedulable["train"]
    assert "waits for train" in s.unschedulable["eval"]
    assert s.end["other"] == pytest.approx(3)  # the rest is still scheduled


def test_trainings_are_admitted_as_the_runner_admits_them():
    # capacity 1: the second training starts only when the first ends, although CPUs are
    # free (the runner cannot see a trainer's workers before they ask)
    graph = [job("t1", 10, gate=1.0), job("t2", 10, gate=1.0), job("x", 10)]
    s = simulate(graph, [{"CPU": 4}], train_capacity=1.0)
    assert s.start["t2"] == pytest.approx(10) and s.end["x"] == pytest.approx(10)
    assert simulate(graph, [{"CPU": 4}]).makespan == pytest.approx(10)


# ----------------------------------------------------------------------------------------
# Calibrations and cluster files
# ----------------------------------------------------------------------------------------


def test_shipped_calibrations_are_complete_and_say_where_each_rate_comes_from():
    cpu, gpu = default_calibration(False), default_calibration(True)
    assert cpu.device == "cpu" and gpu.device == "cuda" and gpu.host is not None
    for cal in (cpu, gpu):
        for name in RATES:
            assert cal.on(False) is not None and cal._rate(name)["source"]
    # on the GPU file, CPU work is priced by its host's rates
    assert gpu.on(False).node == cpu.node and gpu.on(True) is gpu
    h200 = json.loads((CALIBRATION_DIR / "h200.json").read_text())
    assert "77.5" in h200["rates"]["train.gpt2"]["source"]


def _calibration_measured_on(path: Path, machine: dict | None, node: str) -> Path:
    doc = json.loads((CALIBRATION_DIR / SHIPPED["cpu"]).read_text())
    doc["node"] = node
    doc.pop("machine", None)
    if machine is not None:
        doc["machine"] = machine
    path.write_text(json.dumps(doc))
    return path


def test_this_machine_names_its_cpu_cores_and_features():
    here = this_machine()
    assert here["cpu"] and here["cpus"] == os.cpu_count()
    assert set(here["isa"]) <= set(ISA)
    if sys.platform == "linux":  # every x86-64 CPU this project runs on has AVX2
        assert "avx2" in here["isa"] or "x86" not in platform.machine().replace("_", "")


def test_a_cpu_calibration_is_picked_by_the_machine_it_was_measured_on(tmp_path):
    here = this_machine()
    other = {**here, "cpus": here["cpus"] + 1}
    fallback = _calibration_measured_on(tmp_path / SHIPPED["cpu"], None, "cpu-fallback")
    mine = _calibration_measured_on(tmp_path / "b-here.json", here, "cpu-here")
    _calibration_measured_on(tmp_path / "a-other.json", other, "cpu-other")
    (tmp_path / "c-not-json.json").write_text("{")  # skipped, not fatal
    assert cpu_calibration_for(here, tmp_path) == mine
    assert cpu_calibration_for({**here, "isa": []}, tmp_path) == fallback
    assert cpu_calibration_for(None, tmp_path) == fallback  # a cluster elsewhere
    # the plan says when its CPU file was measured on another machine, and on which
    assert measured_elsewhere(load_calibration(mine), here) is None
    line = measured_elsewhere(load_calibration(tmp_path / "a-other.json"), here)
    assert line and f"{other['cpus']} CPUs" in line and "benchmarks/calibrate.py" in line
    assert "does not name" in measured_elsewhere(load_calibration(fallback), here)
    assert measured_elsewhere(default_calibration(True), here) is None  # a GPU node's


def test_shipped_cpu_calibrations_name_their_machine_and_are_complete():
    shipped = [p for p in CALIBRATION_DIR.glob("*.json")
               if json.loads(p.read_text()).get("device", "cpu") == "cpu"]
    machines = [json.loads(p.read_text()).get("machine") for p in shipped]
    named = [m for m in machines if m is not None]
    assert len(named) == len({json.dumps(m, sort_keys=True) for m in named})  # one per machine
    for p in shipped:
        cal = load_calibration(p)  # every rate, each with its source
        assert cal.device == "cpu" and all(cal._rate(n)["source"] for n in RATES)


def test_the_plan_names_a_calibration_measured_elsewhere(tmp_path):
    foreign = {"cpu": "a CPU this is not", "cpus": 64, "isa": []}
    cal = _calibration_measured_on(tmp_path / "foreign.json", foreign, "cpu-foreign")
    r = _repro("--preset", "smoke", "--plan", "--calibration", str(cal), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("note: calibration cpu-foreign was measured on another machine")
    assert "a CPU this is not, 64 CPUs" in last
    r = _repro("--preset", "smoke", "--plan", "--calibration", str(cal), "--cluster",
               str(REPO / "cluster.yaml"), tmp_path=tmp_path)  # nodes elsewhere: no note
    assert r.returncode == 0 and "measured on another machine" not in r.stdout


def test_a_plan_at_another_precision_than_its_rates_says_so(tmp_path):
    cpu, gpu = default_calibration(False), default_calibration(True)
    assert precision_unpriced(cpu, bf16=False, tf32=True) is None
    assert precision_unpriced(cpu, bf16=False, tf32=False) is None  # tf32: CUDA only
    assert precision_unpriced(gpu, bf16=False, tf32=True) is None  # measured with TF32
    assert "bf16 autocast" in precision_unpriced(cpu, bf16=True, tf32=True)
    assert "0.74x the TF32 rate" in precision_unpriced(gpu, bf16=True, tf32=True)
    assert "0.52x the TF32 rate" in precision_unpriced(gpu, bf16=False, tf32=False)
    r = _repro("--preset", "smoke", "--plan", "--set", "train.bf16=true", "--cluster",
               str(REPO / "cluster.yaml"), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(
        "note: the trainings run in bf16 autocast and are priced at calibration h200's TF32")
    r = _repro("--preset", "smoke", "--plan", "--cluster", str(REPO / "cluster.yaml"),
               tmp_path=tmp_path)
    assert r.returncode == 0 and "priced at calibration" not in r.stdout


def test_a_bad_calibration_file_is_refused_with_its_name(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"rates": {"job_start_s": {"value": 1, "source": "x"}}}))
    with pytest.raises(CalibrationError, match="lacks the rate"):
        load_calibration(p)
    p.write_text("{")
    with pytest.raises(CalibrationError, match="not JSON"):
        load_calibration(p)


def test_a_malformed_machine_is_refused_and_calibrate_only_keeps_this_machine_s_rates(
        tmp_path):
    bad = _calibration_measured_on(tmp_path / "bad.json", {"cpu": "x"}, "cpu-bad")
    with pytest.raises(CalibrationError, match="\"machine\" is not"):
        load_calibration(bad)
    foreign = _calibration_measured_on(tmp_path / "foreign.json",
                                       {"cpu": "another", "cpus": 64, "isa": []}, "cpu-x")
    for out, says in ((foreign, "not measured on this machine"),
                      (tmp_path / "missing.json", "cannot be read")):
        r = subprocess.run([sys.executable, str(REPO / "benchmarks/calibrate.py"), "--only",
                            "ray", "--out", str(out)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], r.stderr


def test_a_size_s_own_line_prices_networks_of_that_size():
    from mtdiff.experiment.rates import Calibration

    cal = Calibration("t", "cpu", {"train.gpt2": {
        "fixed_s": 0.01, "flops_per_s": 1e10, "source": "test",
        "sizes": {"d128-l3": {"fixed_s": 0.02, "flops_per_s": 5e9}}}})
    assert cal.call_s("train.gpt2", 1e10) == pytest.approx(1.01)
    assert cal.call_s("train.gpt2", 1e10, "d128-l3") == pytest.approx(2.02)
    assert cal.call_s("train.gpt2", 1e10, "d256-l6") == pytest.approx(1.01)


def test_the_repo_cluster_yaml_is_its_largest_configuration():
    c = load_cluster(REPO / "cluster.yaml")
    # head (CPU 0) + 4 gpu_worker {8, 1} + 6 cpu_worker {16}
    assert len(c.nodes) == 11 and c.gpus == 4
    assert sum(n["CPU"] for n in c.nodes) == 4 * 8 + 6 * 16


def test_simple_cluster_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("nodes:\n  - {CPU: 112, GPU: 8}\n  - {CPU: 16, count: 2}\n")
    assert load_cluster(p).nodes == [{"CPU": 112.0, "GPU": 8.0}] + [{"CPU": 16.0, "GPU": 0.0}] * 2
    p.write_text(json.dumps({"node_types": {"g": {"resources": {"CPU": 8, "GPU": 1},
                                                   "count": 3}}}))
    assert load_cluster(p).gpus == 3
    for bad in ("nodes: []", "nodes: [{GPU: 1}]", "what: 1", "nodes: [{CPU: -1}]", "[1, 2]"):
        p.write_text(bad)
        with pytest.raises(ClusterFileError):
            load_cluster(p)


# ----------------------------------------------------------------------------------------
# The graph's estimate
# ----------------------------------------------------------------------------------------


def test_smoke_estimate_follows_the_config():
    cfg = get_preset("smoke")
    cluster = ClusterInfo([{"CPU": 2.0, "GPU": 0.0}])
    cal = default_calibration(False)
    est = estimate(build_jobs(cfg, "/tmp/x", cluster), cluster, cal)
    assert est.wall_s is not None and est.wall_s > 0
    assert est.gpu_hours == 0 and est.core_hours > 0
    longer = apply_overrides(cfg, ["train.steps=2000"])
    est2 = estimate(build_jobs(longer, "/tmp/x", cluster), cluster, cal)
    name = "train/maze2d/mtdiff-p/s0"
    assert est2.jobs[name].seconds > est.jobs[name].seconds + 1
    assert est2.wall_s > est.wall_s
    wide = ClusterInfo([{"CPU": 64.0, "GPU": 0.0}])
    est3 = estimate(build_jobs(cfg, "/tmp/x", wide), wide, cal)
    assert est3.wall_s < est.wall_s  # more CPUs, more at once
    assert "predicted wall time" in format_estimate(est)


def test_the_quality_job_prices_its_nearest_neighbour_search():
    # the cost model's query cap is the function's (kept apart: that module imports torch)
    assert inspect.signature(l2_distance_from_dataset).parameters["max_queries"].default \
        == NEAREST_QUERIES
    cluster = ClusterInfo([{"CPU": 2.0, "GPU": 0.0}])
    cal = default_calibration(False)

    def quality(rows: int):
        cfg = apply_overrides(get_preset("local"), [f"metaworld.transitions_per_task={rows}"])
        job = next(j for j in build_jobs(cfg, "/tmp/x", cluster) if j.kind == "quality")
        return job_work(job, cal)

    small, large = quality(10_000), quality(20_000)
    # MTDiff-S's, RAD's and S4RL's rows against the original's: 4x the pairs at 2x the rows
    assert large.detail["nearest_pairs"] == pytest.approx(4 * small.detail["nearest_pairs"])
    grew = large.tasks[0].seconds - small.tasks[0].seconds
    assert grew > 0.9 * 3 * small.detail["nearest_pairs"] * cal.value("nearest_pair_s")


def test_the_paper_plan_on_a_gpu_cluster_uses_gpu_hours():
    cluster = load_cluster(REPO / "cluster.yaml")
    est = estimate(build_jobs(get_preset("paper"), "/tmp/x", cluster), cluster,
                   default_calibration(True))
    assert est.wall_s is not None and est.gpu_hours > 10
    kinds = est.by_kind()
    assert kinds["train"]["gpu_hours"] > kinds["evaluate"]["gpu_hours"]


def _repro(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), *args,
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


def test_plan_json_rows_carry_estimated_s(tmp_path):
    r = _repro("--preset", "smoke", "--plan", "--json", tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert all(isinstance(row["estimated_s"], float) and row["estimated_s"] > 0
               for row in rows)
    assert not (tmp_path / "o").exists()


def test_plan_text_ends_with_the_cost_on_the_cluster_file(tmp_path):
    r = _repro("--preset", "smoke", "--plan", "--cluster", str(REPO / "cluster.yaml"),
               tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "predicted wall time of the whole graph" in r.stdout
    assert "GPU-hours" in r.stdout and "calibration h200" in r.stdout


@pytest.mark.parametrize("content", ["nodes: [{GPU: 1}]", "{", None])
def test_a_bad_cluster_file_exits_2_with_one_line(tmp_path, content):
    p = tmp_path / "bad.yaml"
    if content is not None:
        p.write_text(content)
    r = _repro("--preset", "smoke", "--plan", "--cluster", str(p), tmp_path=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --cluster"), r.stderr
