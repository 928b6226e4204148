"""Fast planning: the fixed-shape / compiled sampling loop and the distilled student."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdiff import keys
from mtdiff.config import DiffusionConfig, ModelConfig, apply_overrides
from mtdiff.diffusion import DiffusionSchedule, guided_model_fn, make_sampler, sample
from mtdiff.diffusion.compiled import FastSampler, bucket_size, fast_sampler, resolve_mode
from mtdiff.diffusion.distill import (
    StudentNet,
    StudentSpec,
    distill_loss,
    distill_targets,
    plan_error,
    student_sample,
    teacher_ddim,
    teacher_states,
)
from mtdiff.models import build_model

OBS, ACT, H, J, L = 5, 2, 8, 4, 2
ROOT = Path(__file__).resolve().parents[1]


def _distill(cfg, teacher, data, out, track: bool):
    """The distillation stage as the graph and the command call it; the student's folder."""
    from mtdiff.artifacts import Checkpoint, Dataset, Inputs
    from mtdiff.cli import tracked
    from mtdiff.train.distill import run

    inputs = Inputs(model=Checkpoint.find(teacher), data=Dataset.at(data))
    return run(tracked(cfg, track), inputs, out).path


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(d_model=32, n_layer=2, n_head=2, dropout=0.0), obs_dim=OBS,
                       act_dim=ACT, horizon=H, history=L, prompt_len=J,
                       num_tasks=3).eval().requires_grad_(False)


def conds(n: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {keys.BATCH_PROMPT: torch.randn(n, J, OBS + ACT, generator=g),
            keys.BATCH_HISTORY: torch.randn(n, L, OBS, generator=g),
            keys.BATCH_RETURN: torch.rand(n, 1, generator=g)}


# --- the fixed-shape loop ----------------------------------------------------------------


@pytest.mark.parametrize("name,steps,eta,clip,guidance", [
    ("ddim", 10, 0.0, None, 1.2), ("ddim", 10, 0.7, 1.0, 1.2), ("ddpm", 50, 0.0, None, 1.2),
    ("ddpm", 50, 0.0, 1.0, None), ("dpmsolver", 10, 0.0, None, 1.2),
    ("dpmsolver", 10, 0.0, 1.0, 0.0), ("ddim", 10, 0.0, "box", 1.2),
    ("ddpm", 50, 0.0, "box", None), ("dpmsolver", 10, 0.0, "box", 1.2)])
def test_fixed_shape_loop_equals_sample(name, steps, eta, clip, guidance):
    """Same generator, same outputs as `sample` (3 rows padded to a bucket of 4); "box":
    per-dimension x̂_0 bounds (`diffusion.clip_denoised`'s data range)."""
    m, sched = tiny_model(), DiffusionSchedule.vp(50)
    cond = conds(3, 1)
    if clip == "box":
        clip = (torch.tensor([-0.3, -1.0]), torch.tensor([0.2, 0.8]))  # (ACT,) each
    s = make_sampler(DiffusionConfig(num_steps=50, sampler=name, sample_steps=steps), sched,
                     eta=eta, clip_sample=clip)
    ref = sample(guided_model_fn(m, cond, guidance), (3, H, ACT), s,
                 generator=torch.Generator().manual_seed(3))
    fast = FastSampler(m, s, guidance=guidance, mode="eager", device="cpu")
    out = fast(cond, (3, H, ACT), generator=torch.Generator().manual_seed(3))
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert fast.compiles == 1 and fast.calls == 1


def test_engines_are_found_again_for_equal_clip_bounds():
    """A new planner builds new bound tensors of the same values: the same engine."""
    m, sched = tiny_model(), DiffusionSchedule.vp(50)
    dcfg = DiffusionConfig(num_steps=50, sampler="ddim", sample_steps=5)

    def engine(hi: float) -> FastSampler:
        box = (torch.tensor([-1.0, -1.0]), torch.tensor([hi, 1.0]))
        return fast_sampler(m, make_sampler(dcfg, sched, clip_sample=box), guidance=1.2,
                            mode="eager", device="cpu")

    assert engine(1.0) is engine(1.0) and engine(0.5) is not engine(1.0)


def test_buckets_and_modes():
    assert [bucket_size(n) for n in (1, 2, 3, 5, 50, 64, 65)] == [1, 2, 4, 8, 64, 64, 128]
    assert resolve_mode("off", "cpu") is None and resolve_mode("auto", "cpu") is None
    assert resolve_mode("inductor", "cpu") == "inductor"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_mode("cudagraph", "cpu")


@pytest.mark.slow  # inductor compiles for 20-80 s on a shared 2-core CPU
def test_inductor_planner_equals_eager(maze_checkpoint):
    """`diffusion.compile=inductor` through `Planner.plan` = the eager plan (tolerance 1e-4),
    compile cost counted once per bucket, and the engine reused by a new planner."""
    from mtdiff.eval.planner import load_planner

    ckpt, cfg = maze_checkpoint
    planner = load_planner(ckpt)
    rng = np.random.default_rng(0)
    prompts = planner.sample_prompts("train-0", 3, rng)
    hist = rng.normal(size=(3, planner.history, 4)).astype(np.float32)
    eager = planner.plan(hist, prompt=prompts, generator=torch.Generator().manual_seed(5))
    dcfg = apply_overrides(cfg, ["diffusion.compile=inductor"]).diffusion
    fast = planner.plan(hist, prompt=prompts, diffusion=dcfg,
                        generator=torch.Generator().manual_seed(5))
    np.testing.assert_allclose(fast, eager, atol=1e-4)
    spent = planner.compile_seconds
    assert spent > 0
    again = load_planner(ckpt)  # same process: the cached model and its engines
    again.plan(hist, prompt=prompts, diffusion=dcfg)
    assert again.compile_seconds == spent  # nothing compiled the second time


# --- distillation ------------------------------------------------------------------------


def test_distill_targets_are_the_teachers_x0_when_steps_match():
    """With one teacher step per student step the PD target is the teacher's own x̂_0."""
    m, sched = tiny_model(), DiffusionSchedule.vp(200)
    spec = StudentSpec(steps=5, teacher_steps=5, guidance=1.2, temperature=0.5)
    cond = conds(4, 2)
    states = teacher_states(m, sched, cond, (4, H, ACT), spec,
                            generator=torch.Generator().manual_seed(0))
    grid = spec.timesteps(200)
    targets, weights = distill_targets(states, grid, sched)
    fn = guided_model_fn(m, cond, 1.2)
    for i, k in enumerate(grid):
        kk = torch.full((4,), k)
        x0 = sched.predict_x0(states[i], fn(states[i], kk), kk)
        torch.testing.assert_close(targets[i], x0, atol=2e-4, rtol=1e-4)
    assert weights[0] == 1.0 and weights[-1] > 1.0  # truncated SNR: high SNR weighs more
    with pytest.raises(ValueError, match="must divide"):
        StudentSpec(steps=3, teacher_steps=20, guidance=1.2, temperature=0.5)


def test_distillation_reduces_student_vs_teacher_error():
    """A short run brings the 2-step student close to the guided DDIM-20 teacher: well
    below its starting error and below the teacher sampled with 2 DDIM steps."""
    teacher, sched = tiny_model(1), DiffusionSchedule.vp(200)
    spec = StudentSpec(steps=2, teacher_steps=20, guidance=1.5, temperature=0.5)
    grid = spec.timesteps(200)
    cond = conds(512, 3)
    states = teacher_states(teacher, sched, cond, (512, H, ACT), spec,
                            generator=torch.Generator().manual_seed(1))
    targets, weights = distill_targets(states, grid, sched)
    vcond = conds(128, 4)
    ref = teacher_states(teacher, sched, vcond, (128, H, ACT), spec,
                         generator=torch.Generator().manual_seed(7))[-1]
    student = StudentNet(copy.deepcopy(teacher).requires_grad_(True), sched)

    def err(model_out: torch.Tensor) -> float:
        return plan_error(model_out, ref)["rmse"]

    def val() -> float:
        return err(student_sample(student, sched, vcond, (128, H, ACT), spec,
                                  generator=torch.Generator().manual_seed(7)))

    before = val()
    baseline = err(teacher_ddim(teacher, sched, vcond, (128, H, ACT), spec, 2,
                                generator=torch.Generator().manual_seed(7)))
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        idx = torch.randint(0, 512, (64,), generator=g)
        loss = distill_loss(student, states[:, idx], targets[:, idx], weights,
                            {k: v[idx] for k, v in cond.items()}, grid)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = val()
    # The ε-student starts as the teacher's unguided DDIM-2; distillation must beat both
    # that start and the guided teacher sampled with 2 steps.
    assert after < 0.5 * before, (before, after)
    assert after < 0.5 * baseline, (baseline, after)


def test_x0_student_is_an_eps_model_to_the_sampler():
    """param="x0": the ε handed to DDIM gives back the network's x̂_0 (so DDIM's step is
    the x̂_0 student's step); param="eps": the network's output as is."""
    m, sched = tiny_model(), DiffusionSchedule.vp(200)
    x, k, cond = torch.randn(4, H, ACT), torch.tensor([199, 149, 99, 49]), conds(4, 5)
    x0net = StudentNet(m, sched, "x0")
    eps = x0net(x, k, cond)
    torch.testing.assert_close(sched.predict_x0(x, eps, k), m(x, k, cond), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(StudentNet(m, sched, "eps")(x, k, cond), m(x, k, cond))
    with pytest.raises(ValueError, match="param"):
        StudentNet(m, sched, "v")


class CallCounter(torch.nn.Module):
    """Counts network calls and the rows in them."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.calls, self.rows = inner, 0, []

    def forward(self, *args, **kwargs):
        self.calls += 1
        self.rows.append(args[0].shape[0])
        return self.inner(*args, **kwargs)


def test_distill_stage_student_checkpoint_plans_in_two_calls(maze_checkpoint, tmp_path):
    """The stage end to end on real Maze2D data: the student's checkpoint is tensors only,
    says it is a student, plans through `load_planner(...).plan` in 2 unguided network
    calls, and a rerun skips."""
    from mtdiff.eval.planner import load_planner
    from mtdiff.layout import CHECKPOINT_FILE
    from mtdiff.train.distill import RESULT_FILE

    ckpt, cfg = maze_checkpoint
    data = tmp_path / "data"
    out = tmp_path / "distill"
    student_ckpt = _distill(cfg, ckpt, data, out, False)
    state = torch.load(student_ckpt / CHECKPOINT_FILE, weights_only=True)
    meta = json.loads(state["meta"])
    assert meta["student"]["steps"] == cfg.distill.student_steps == 2
    assert meta["student"]["teacher"] == str(Path(ckpt).resolve())
    assert meta["student"]["method"] and int(state["step"]) == cfg.distill.steps
    result = json.loads((student_ckpt.parent / RESULT_FILE).read_text())
    assert result["checkpoint"] == str(student_ckpt) and result["val_rmse"] >= 0

    planner = load_planner(student_ckpt, cache=False)
    counter = CallCounter(planner.net.model)
    planner.net.model = counter
    rng = np.random.default_rng(0)
    a = planner.plan(np.zeros((3, planner.history, 4), np.float32),
                     prompt=planner.sample_prompts("train-0", 3, rng))
    assert a.shape == (3, cfg.data.horizon, 2) and np.abs(a).max() <= 1.0
    assert counter.calls == 2 and counter.rows == [3, 3]  # no unconditional branch
    assert planner.describe()["network_calls_per_plan"] == 2
    bad = apply_overrides(cfg, ["diffusion.guidance=2.0"]).diffusion
    with pytest.raises(ValueError, match="distilled at guidance"):
        planner.plan(np.zeros((1, planner.history, 4), np.float32),
                     prompt=planner.sample_prompts("train-0", 1, rng), diffusion=bad)

    mtime = (student_ckpt / CHECKPOINT_FILE).stat().st_mtime_ns
    assert _distill(cfg, ckpt, data, out, False) == student_ckpt
    assert (student_ckpt / CHECKPOINT_FILE).stat().st_mtime_ns == mtime  # skipped
    with pytest.raises(ValueError, match="a student already"):
        _distill(cfg, student_ckpt, data, out, False)


def test_distill_resumes_and_logs_to_mlflow(maze_checkpoint, tmp_path, capsys):
    """A run cut short (its last checkpoint and result gone) resumes from the one before,
    reuses the teacher's trajectories, and logs its metrics to MLflow."""
    import shutil

    import mlflow

    from mtdiff.train.distill import RESULT_FILE, TRAJ_FILE

    ckpt, cfg = maze_checkpoint
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = apply_overrides(cfg, [f"tracking.uri={uri}"])
    out, data = tmp_path / "distill", tmp_path / "data"
    final = _distill(cfg, ckpt, data, out, False)
    run_dir = final.parent
    assert sorted(p.name for p in run_dir.glob("checkpoint_*")) == [
        "checkpoint_000000003", "checkpoint_000000006"]
    traj_mtime = (run_dir / TRAJ_FILE).stat().st_mtime_ns
    shutil.rmtree(final)
    (run_dir / RESULT_FILE).unlink()
    capsys.readouterr()
    again = _distill(cfg, ckpt, data, out, True)
    printed = capsys.readouterr().out
    assert "resuming" in printed and "from step 3" in printed
    assert again == final and (run_dir / RESULT_FILE).exists()
    assert (run_dir / TRAJ_FILE).stat().st_mtime_ns == traj_mtime  # not sampled again
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([exp.experiment_id])
    assert runs and {"val_rmse", "loss"} <= set(runs[0].data.metrics)


# --- imports on a machine without Ray / MLflow / MuJoCo ----------------------------------


# Top-level packages the GPU machine has: torch and what its wheel pulls in, numpy, pyarrow.
GPU_MACHINE = {"torch", "numpy", "pyarrow", "sympy", "mpmath", "networkx", "jinja2",
               "markupsafe", "fsspec", "filelock", "typing_extensions", "triton", "mtdiff",
               "torchgen", "cython_runtime", "sitecustomize", "_distutils_hack", "setuptools",
               "pkg_resources", "opt_einsum"}
BLOCKED = ("ray", "mlflow", "mujoco", "metaworld", "gymnasium", "gymnasium_robotics", "scipy",
           "pandas", "tqdm", "matplotlib", "sklearn", "torchrl", "tensordict", "yaml",
           "cloudpickle")


def test_gpu_check_runs_without_ray_mlflow_mujoco(tmp_path):
    """`benchmarks/gpu_check.py` runs (CPU rows; CUDA rows say skipped) with Ray, MLflow,
    MuJoCo, Meta-World, gymnasium, scipy & co. unimportable, and imports nothing beyond
    what the GPU machine has."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import atexit, json, sys
        # None in sys.modules: `import x` raises ModuleNotFoundError and
        # importlib.util.find_spec(x) returns None, exactly as if x were not installed.
        for name in {BLOCKED!r}:
            sys.modules[name] = None
        def dump():
            with open({str(tmp_path / "modules.json")!r}, "w") as f:
                json.dump(sorted({{m.split(".")[0] for m, v in sys.modules.items()
                                  if v is not None}}), f)
        atexit.register(dump)
    """))
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--budget", "0.5"],
                       cwd=ROOT, env=env, text=True, capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipped (no CUDA)" in r.stdout and "student-4 eager, 1 env" in r.stdout
    assert "steps/s" in r.stdout  # the training rows ran
    imported = set(json.loads((tmp_path / "modules.json").read_text()))
    beside = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}  # the scripts it imports
    third_party = {m for m in imported - set(sys.stdlib_module_names) - beside
                   if not m.startswith("_")}
    assert third_party <= GPU_MACHINE, third_party - GPU_MACHINE
    code = ("import mtdiff.diffusion.compiled, mtdiff.diffusion.distill, mtdiff.eval.planner, "
            "mtdiff.train.core, mtdiff.train.distill")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                       capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.integration
@pytest.mark.timeout(1200)
@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_distill_job_in_the_graph_through_full_repro(tmp_path):
    """The grid's distill job on a local Ray: MTDiff-P trains, its student is distilled in
    its own job and evaluated like any planner (in 2 network calls per plan), the report
    has its row, and the job's MLflow run has the distillation's loss curve."""
    import mlflow

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(repo / "pipelines/full_repro.py"), "--preset",
                        "smoke", "--out", str(out), "--set", "experiment.suites=maze2d",
                        "--set", "experiment.methods=mtdiff-p,mtdiff-p-distill",
                        "--set", "experiment.seeds=0"], env=env, capture_output=True,
                       text=True, timeout=1100)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # collect, reference, train, distill, two evaluations, report: every one done
    assert re.search(r"\[repro\] (\d+) jobs: \1 done", r.stdout), r.stdout[-2000:]
    rec = json.loads((out / "jobs" / "distill__maze2d__mtdiff-p-distill__s0.json").read_text())
    student = Path(rec["result"]["checkpoint"])
    assert student.is_relative_to(out / "distill" / "maze2d")
    ev = json.loads(next(out.glob("eval/maze2d-student-*/eval-maze2d.json")).read_text())
    planners = {e["planner"]["network_calls_per_plan"] for e in ev["episodes"]}
    assert planners == {2} and {e["planner"]["student"] for e in ev["episodes"]} == {True}
    assert "MTDiff-P (distilled)" in (out / "report" / "report.md").read_text()
    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    [run] = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id],
                               "tags.job = 'distill/maze2d/mtdiff-p-distill/s0'")
    assert run.info.status == "FINISHED" and run.data.params["distill.steps"] == "6"
    assert len(client.get_metric_history(run.info.run_id, "loss")) >= 2
