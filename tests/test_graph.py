"""The experiment graph as data: jobs, dependencies, resources per node, keys, --plan."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.driver import GraphError, check_fits, format_plan, plan_rows
from mtdiff.experiment.grid import build_jobs

REPO = Path(__file__).resolve().parents[1]
ONE_NODE = ClusterInfo([{"CPU": 2.0, "GPU": 0.0}])


def _jobs(preset: str, *over: str, cluster: ClusterInfo = ONE_NODE, out: str = "/tmp/x"):
    return build_jobs(apply_overrides(get_preset(preset), list(over)), out, cluster)


@pytest.mark.parametrize("preset", ["smoke", "local", "paper"])
def test_jobs_are_unique_ordered_and_depend_on_earlier_jobs(preset):
    jobs = _jobs(preset)
    seen: set[str] = set()
    for j in jobs:
        assert j.name not in seen
        assert all(d in seen for d in j.deps), (j.name, j.deps)
        seen.add(j.name)
    assert jobs[-1].name == "report" and len(jobs[-1].deps) == len(jobs) - 1
    for j in jobs:  # every path handed to a task is absolute
        for k, v in j.params.items():
            if k in ("out", "root"):
                assert Path(v).is_absolute(), (j.name, k, v)


def test_paper_grid_has_every_cell():
    from mtdiff.methods import get_method

    jobs = _jobs("paper")
    kinds = [j.kind for j in jobs]
    exp = get_preset("paper").experiment
    planners = [m for m in exp.methods if get_method(m).role == "planner"]
    assert len(planners) == 8  # Table 1's seven + the U-Net ablation (Table 3)
    maze = [m for m in planners if "maze2d" in get_method(m).suites]
    assert sorted(maze) == ["mtdiff-p", "promptdt"]
    # Meta-World planners x views x seeds, Maze2D's x seeds, Table 5: MTDiff-P and
    # Prompt-DT on Cheetah-vel and Ant-dir x seeds
    evals = (len(planners) * len(exp.views) * len(exp.seeds) + len(maze) * len(exp.seeds)
             + 2 * 2 * len(exp.seeds))
    assert kinds.count("evaluate") == evals == 66
    assert "evaluate/ant-dir/promptdt/s2" in {j.name for j in jobs}
    trains = evals + 3 + 3 * 3 + 4 * 3  # + MTDiff-S, MTDiff-S-single (3 tasks), Fig. 7
    assert kinds.count("train") == trains
    # Table 2: 6 tasks x 4 columns x 3 seeds; Fig. 6: the single column of its 3 tasks
    # and the original + MTDiff-S columns of dial-turn (not a Table 2 task); Fig. 7: 4 x 3
    assert kinds.count("offline") == 6 * 4 * 3 + 3 * 3 + 2 * 3 + 4 * 3
    names = {j.name for j in jobs}
    assert "train/metaworld/mtdiff-p-unet/sub-optimal/s2" in names
    assert "offline/box-close-v3/s4rl/s1" in names
    s4rl = next(j for j in jobs if j.name == "offline/box-close-v3/s4rl/s1")
    assert "offline/box-close-v3/original/s1" in s4rl.deps  # S4RL needs the original's Q


def test_a_job_config_carries_its_own_method_view_and_seed():
    jobs = {j.name: j for j in _jobs("paper")}
    j = jobs["train/metaworld/mtdiff-p-unet/sub-optimal/s2"]
    assert (j.cfg.model.kind, j.cfg.model.backbone, j.cfg.data.view, j.cfg.train.seed) == (
        "mtdiff-p", "unet", "sub-optimal", 2)
    e = jobs["evaluate/metaworld/mtdiff-p-onehot/near-optimal/s1"]
    assert e.deps == ["train/metaworld/mtdiff-p-onehot/near-optimal/s1"]
    assert e.cfg.model.kind == "mtdiff-p-onehot" and e.cfg.train.seed == 1
    assert len({jobs[n].params["out"] for n in jobs if n.startswith("train/")}) == sum(
        n.startswith("train/") for n in jobs)  # one folder per training cell


def test_one_setting_expands_the_local_grid_to_every_method_and_view():
    from mtdiff.methods import all_methods, get_method

    full = {j.name for j in _jobs("local", "experiment.grid=full")}
    for m in all_methods():
        if get_method(m).role == "planner":
            for v in ("near-optimal", "sub-optimal"):
                assert f"evaluate/metaworld/{m}/{v}/s0" in full
    assert "evaluate/maze2d/promptdt/s0" in full


def test_adding_a_seed_or_method_keeps_every_existing_job_done():
    before = {j.name: j.key for j in _jobs("smoke")}
    after = {j.name: j.key for j in _jobs("smoke", "experiment.seeds=0,1,2",
                                          "experiment.methods=mtdiff-p,mtdiff-p-onehot,"
                                          "mtdiff-s,mtdiff-p-unet")}
    assert {n: after[n] for n in before if n != "report"} == {
        n: k for n, k in before.items() if n != "report"}
    assert "train/metaworld/mtdiff-p/near-optimal/s2" in after
    # A setting that shapes the weights changes the training jobs and what follows them
    changed = {j.name: j.key for j in _jobs("smoke", "train.lr=1e-3")}
    assert changed["train/maze2d/mtdiff-p/s0"] != before["train/maze2d/mtdiff-p/s0"]
    assert changed["evaluate/maze2d/mtdiff-p/s0"] != before["evaluate/maze2d/mtdiff-p/s0"]
    assert changed["collect/maze2d"] == before["collect/maze2d"]


def test_worker_cpus_come_from_the_largest_node_never_the_cluster_total():
    two = ClusterInfo([{"CPU": 1.0}, {"CPU": 1.0}])
    train = next(j for j in _jobs("smoke", "train.cpus_per_worker=2", cluster=two)
                 if j.kind == "train")
    assert train.inner["CPU"] == 1.0  # capped at what one node has
    gpu = ClusterInfo([{"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}])
    jobs = _jobs("smoke", cluster=gpu)
    train = next(j for j in jobs if j.kind == "train")
    assert train.inner["CPU"] == 2.0
    assert train.inner["GPU"] == 0.5  # smoke's 8 windows a step: a small-batch share
    # synthesis shares a GPU (`experiment.gpu_share_synthesize`; tests/test_gpu_share.py)
    assert 0 < next(j for j in jobs if j.kind == "synthesize").resources["GPU"] < 1.0
    ev = next(j for j in jobs if j.kind == "evaluate")
    assert ev.inner["GPU"] > 0 and ev.cfg.eval.num_gpus_per_actor > 0  # planning on GPUs
    cpu_ev = next(j for j in _jobs("smoke") if j.name == ev.name)
    assert cpu_ev.params["out"] == ev.params["out"]  # same results wherever they run
    assert next(j for j in jobs if j.kind == "offline").resources["GPU"] > 0


def test_a_job_no_node_can_host_is_refused_with_the_fix():
    tiny = ClusterInfo([{"CPU": 1.0}, {"CPU": 1.0}])
    jobs = _jobs("smoke", "eval.num_cpus_per_actor=2", cluster=tiny)
    with pytest.raises(GraphError, match="no node of the cluster offers"):
        check_fits(jobs, tiny)
    check_fits(_jobs("smoke", cluster=tiny), tiny)  # the defaults fit 1-CPU nodes


def test_plan_lines_and_json_through_the_entry_point(tmp_path):
    rows = plan_rows(_jobs("smoke", out=str(tmp_path)), tmp_path)
    text = format_plan(rows)
    assert text.splitlines()[-1].startswith(f"{len(rows)} jobs (")
    r = subprocess.run([sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset",
                        "smoke", "--plan", "--json", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {"name", "kind", "deps", "resources", "state", "config"} <= set(data[0])
    assert {d["state"] for d in data} == {"pending"}
    assert not (tmp_path / "o").exists()  # --plan writes nothing


def test_a_student_follows_its_teachers_training_and_is_evaluated():
    """mtdiff-p-distill is one entry in the grid: a distill job after the teacher's
    training job of the same cell (and its dataset), then an evaluation of the student;
    without the teacher in the grid the config is refused."""
    from mtdiff.config import ConfigError

    jobs = {j.name: j for j in _jobs("smoke", "experiment.methods=mtdiff-p-distill,mtdiff-p",
                                     "experiment.suites=maze2d")}
    d = jobs["distill/maze2d/mtdiff-p-distill/s1"]
    assert d.kind == "distill" and d.deps == ["collect/maze2d", "train/maze2d/mtdiff-p/s1"]
    assert d.config == {"suite": "maze2d", "method": "mtdiff-p-distill", "view": None, "seed": 1}
    ev = jobs["evaluate/maze2d/mtdiff-p-distill/s1"]
    assert ev.deps == [d.name] and ev.params["model_job"] == d.name
    assert ev.params["out"] != jobs["evaluate/maze2d/mtdiff-p/s1"].params["out"]
    assert not any(n.startswith("train/maze2d/mtdiff-p-distill") for n in jobs)
    other = {j.name: j for j in _jobs("smoke", "experiment.methods=mtdiff-p-distill,mtdiff-p",
                                      "experiment.suites=maze2d", "distill.steps=7")}
    assert other[d.name].key != d.key  # a distill setting reaches the student and its eval
    assert other["evaluate/maze2d/mtdiff-p-distill/s1"].key != ev.key
    assert other["train/maze2d/mtdiff-p/s1"].key == jobs["train/maze2d/mtdiff-p/s1"].key
    with pytest.raises(ConfigError, match="add the teacher to experiment.methods"):
        _jobs("smoke", "experiment.methods=mtdiff-p-distill")


def test_every_suite_gets_a_reference_job_after_its_collection():
    jobs = {j.name: j for j in _jobs("smoke")}
    for suite in ("metaworld", "maze2d"):
        ref = jobs[f"reference/{suite}"]
        assert (ref.kind, ref.deps, ref.config) == ("reference", [f"collect/{suite}"],
                                                   {"suite": suite})
        assert ref.params["out"].startswith("/tmp/x/reference/")
        assert f"reference/{suite}" in jobs["report"].deps
    # its folder follows the evaluation settings (the methods' episodes and seeds), not
    # the training settings
    more = {j.name: j for j in _jobs("smoke", "eval.episodes=7")}
    assert more["reference/maze2d"].key != jobs["reference/maze2d"].key
    lr = {j.name: j for j in _jobs("smoke", "train.lr=1e-3")}
    assert lr["reference/maze2d"].key == jobs["reference/maze2d"].key


def test_mujoco_batch_and_steps_apply_to_cheetah_and_ant_trainings_only():
    over = ("experiment.suites=metaworld,cheetah-vel,ant-dir", "experiment.methods=mtdiff-p")
    jobs = {j.name: j for j in _jobs("local", *over)}  # local: 6,000 steps on MuJoCo
    for suite in ("cheetah-vel", "ant-dir"):
        cfg = jobs[f"train/{suite}/mtdiff-p/s0"].cfg
        assert (cfg.data.batch_per_task, cfg.train.steps) == (8, 6000)
    mw = jobs["train/metaworld/mtdiff-p/near-optimal/s0"].cfg
    assert (mw.data.batch_per_task, mw.train.steps) == (8, 1500)
    plain = {j.name: j for j in _jobs("smoke", *over)}  # unset: data / train's own
    assert plain["train/cheetah-vel/mtdiff-p/s0"].cfg.data.batch_per_task == 4
    batch = {j.name: j for j in _jobs("local", *over, "experiment.mujoco_batch_per_task=32")}
    assert batch["train/cheetah-vel/mtdiff-p/s0"].cfg.data.batch_per_task == 32
    assert batch["train/cheetah-vel/mtdiff-p/s0"].key != jobs["train/cheetah-vel/mtdiff-p/s0"].key
    assert (batch["train/metaworld/mtdiff-p/near-optimal/s0"].key
            == jobs["train/metaworld/mtdiff-p/near-optimal/s0"].key)


def test_paper_maze2d_trains_2e5_steps_at_batch_512_other_presets_as_before():
    jobs = {j.name: j for j in _jobs("paper")}
    for m in ("mtdiff-p", "promptdt"):  # "each baseline has the same batch size and steps"
        cfg = jobs[f"train/maze2d/{m}/s0"].cfg
        windows = cfg.data.batch_per_task * len(cfg.maze2d.train_maps)
        assert (windows, cfg.train.steps) == (512, 200_000)  # paper App. D
    mw = jobs["train/metaworld/mtdiff-p/near-optimal/s0"].cfg
    assert (mw.data.batch_per_task, mw.train.steps) == (8, 2_000_000)  # App. A: 400 x 2e6
    for preset in ("local", "smoke"):
        p = get_preset(preset)
        maze = next(j for j in _jobs(preset) if j.name == "train/maze2d/mtdiff-p/s0").cfg
        assert (maze.data.batch_per_task, maze.train.steps) == (p.data.batch_per_task,
                                                                p.train.steps)


def test_intermediate_td3bc_episodes_reach_td3bc_jobs_only_and_only_when_fewer():
    base = {j.name: j.key for j in _jobs("smoke", "offline.eval_episodes=4")}
    same = {j.name: j.key for j in _jobs("smoke", "offline.eval_episodes=4",
                                         "offline.eval_episodes_intermediate=9")}
    assert same == base  # at least the last evaluation's count: the runs are as they were
    fewer = {j.name: j.key for j in _jobs("smoke", "offline.eval_episodes=4",
                                          "offline.eval_episodes_intermediate=2")}
    changed = {n for n in base if fewer[n] != base[n]}
    assert changed and all(n.startswith(("offline/", "quality/")) or n == "report"
                           for n in changed), changed
    assert all(fewer[n] == base[n] for n in base if n.startswith("synthesize/"))


def test_a_method_that_registers_itself_joins_the_grid_by_name():
    """mttd3bc is one file (`mtdiff/baselines/mttd3bc.py`) that registers itself: naming it
    in experiment.methods gives it a training and an evaluation job per Meta-World cell,
    priced by its own cost function."""
    from mtdiff.experiment.cost import job_work
    from mtdiff.experiment.rates import default_calibration

    cfg = apply_overrides(get_preset("smoke"), ["experiment.methods=mtdiff-p,mttd3bc"])
    jobs = {j.name: j for j in build_jobs(cfg, "/tmp/x", ONE_NODE)}
    exp = cfg.experiment
    assert sorted(n for n in jobs if "/mttd3bc/" in n) == sorted(
        f"{k}/metaworld/mttd3bc/{v}/s{s}" for k in ("evaluate", "train")
        for v in exp.view_names() for s in exp.seeds)
    train = jobs[f"train/metaworld/mttd3bc/{exp.view_names()[0]}/s{exp.seeds[0]}"]
    assert train.cfg.model.kind == "mttd3bc"
    assert job_work(train, default_calibration(has_gpu=False)).tasks[0].seconds > 0
    # Its hyper-parameters are a section of its own, declared in that file: a value set
    # there reaches its jobs and renames them, and no other method's.
    from mtdiff.baselines.mttd3bc import MTTD3BCConfig

    assert type(cfg.methods["mttd3bc"]) is MTTD3BCConfig
    tuned = apply_overrides(cfg, ["methods.mttd3bc.alpha=5"])
    keys = {j.name: j.key for j in build_jobs(tuned, "/tmp/x", ONE_NODE)}
    changed = {n for n, j in jobs.items() if keys[n] != j.key}
    assert train.name in changed and all("/mttd3bc/" in n or n == "report" for n in changed)
