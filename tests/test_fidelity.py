"""Fidelity to the paper and the authors' code: the planner's return, the
scripted buffer's order, where prompts are cut, x0-hat clipping, Maze2D layout prompts and
the synthesis sampler settings. Each test fails when its behaviour is undone."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdiff import keys
from mtdiff.config import (
    CollectConfig,
    DataConfig,
    DiffusionConfig,
    EvalConfig,
    MetaWorldConfig,
    apply_overrides,
    get_preset,
)
from mtdiff.data.reader import TaskData

ROOT = Path(__file__).resolve().parents[1]


def _task(rewards: np.ndarray) -> TaskData:
    """A task of E episodes x T steps with the given (E, T) rewards (other columns dummy)."""
    E, T = rewards.shape
    n = E * T
    return TaskData("t", np.zeros((n, 3), np.float32), np.zeros((n, 2), np.float32),
                    rewards.reshape(-1).astype(np.float32), np.zeros(n, bool),
                    np.tile(np.arange(T) == T - 1, E), np.zeros(n, bool),
                    np.repeat(np.arange(E), T).astype(np.int64),
                    np.tile(np.arange(T), E).astype(np.int32))


# --- 1. the return the planner conditions on ------------------------------------------


def test_default_return_target_is_reached_at_every_step():
    """With the default return definition, R = the natural target (1) occurs in the data at
    every step of an episode; the old undiscounted task-max reached it at t = 0 only."""
    from mtdiff.data.windows import default_return_scale, normalized_returns

    rng = np.random.default_rng(0)
    T, E = 120, 30
    # Meta-World-like: each episode's reward ramps up to ~10 at a random success step.
    succ = rng.integers(10, 100, size=E)
    rew = np.clip(np.arange(T)[None] / succ[:, None], 0, 1) * 10 * rng.uniform(0.3, 1, (E, 1))
    task = _task(rew)
    d = DataConfig()
    scale = d.return_scale or default_return_scale("metaworld", [task])
    R = normalized_returns(task, d.return_discount, scale).reshape(E, T)
    assert R.min() >= 0.0 and R.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(R.max(axis=0), 1.0, rtol=1e-5)  # every t reaches the target
    # ... and it still ranks episodes: the best episode's R is above the worst's at t = 0.
    best, worst = np.argmax(rew.sum(1)), np.argmin(rew.sum(1))
    assert R[best, 0] > R[worst, 0]


def test_target_return_is_tied_to_the_return_definition():
    from mtdiff.data.windows import resolve_target, return_info

    assert EvalConfig().target_return is None  # the definition's own target
    unit = return_info("time-max", 0.99, np.array([0.0, 0.4, 1.0]))
    assert resolve_target(unit, None) == 1.0 and resolve_target(unit, 0.9) == 0.9
    with pytest.raises(ValueError, match=r"outside the returns .*return_scale='time-max'"):
        resolve_target(unit, 9.0)  # the authors' steps-left target on a [0, 1] scale
    steps = return_info("steps-left", 0.99, np.array([0.0, 3.5, 9.6]))
    assert resolve_target(steps, None) == pytest.approx(9.6) and resolve_target(steps, 9.0) == 9.0
    old = apply_overrides(get_preset("smoke"), ["eval.target_return=1.0",
                                                "data.return_scale=task-max",
                                                "data.return_discount=1.0"])
    assert old.eval.target_return == 1.0  # the old behaviour stays selectable


def test_planner_plans_toward_the_checkpoints_natural_target(maze_checkpoint):
    from mtdiff.eval.planner import load_planner

    ckpt, cfg = maze_checkpoint
    planner = load_planner(ckpt)
    info = planner.m.meta["returns"]
    # The smoke data's D4RL-style episodes never terminate: the reward-to-go scale.
    assert info["scale"] == "time-max" and info["target"] == 1.0
    hist = np.zeros((2, planner.history, 4), np.float32)
    prompt = planner.sample_prompts("train-0", 2, np.random.default_rng(0))
    assert planner.plan(hist, prompt=prompt).shape == (2, cfg.data.horizon, 2)
    with pytest.raises(ValueError, match="outside the returns"):
        planner.plan(hist, prompt=prompt, target_return=5.0)


# --- 2. the scripted buffer: worst first, a real spread, per-view statistics -------------


def test_scripted_buffer_writes_the_worse_half_first(tmp_path, capsys):
    from mtdiff.collect.metaworld import _scripted_job, plan_metaworld
    from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
    from mtdiff.data.writer import finalize_dataset
    from pipelines.dataset import main as dataset_cli

    cfg = apply_overrides(get_preset("smoke"), ["metaworld.tasks=reach-v3",
                                                "metaworld.transitions_per_task=1000"])
    data = tmp_path / "data"
    [job] = [j for j in plan_metaworld(cfg).jobs if j.task == "reach-v3"]
    _scripted_job(job, cfg, str(data))
    finalize_dataset(data, suite="metaworld", source="scripted", tasks=["reach-v3"],
                     config={}, config_hash="t")

    def mean_return(view: str) -> float:
        t = load_dataset(data, view=view).tasks["reach-v3"]
        return float(t.rewards.sum() / t.num_episodes)

    assert mean_return("sub-optimal") < 0.8 * mean_return("near-optimal")  # the worse half
    views = read_manifest(data)["tasks"]["reach-v3"]["views"]
    near, sub = views["near-optimal"], views["sub-optimal"]
    assert (near["episodes"], sub["episodes"]) == (10, 5)
    assert sub["mean_return"] == pytest.approx(mean_return("sub-optimal"), rel=1e-5)
    assert validate_dataset(data) == []
    assert dataset_cli(["info", str(data)]) == 0
    out = capsys.readouterr().out
    assert "sub-optimal" in out and f"{sub['mean_return']:.2f}" in out


def test_old_scripted_order_stays_selectable():
    from mtdiff.collect.metaworld import _noise_for_episode

    old = MetaWorldConfig(scripted_noise=(0.0, 0.1, 0.3, 0.5), scripted_random=0.0)
    assert [_noise_for_episode(i, 8, old.scripted_noise, old.scripted_random)
            for i in range(8)] == [0.0, 0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.5]
    new = MetaWorldConfig()
    assert list(new.scripted_noise) == sorted(new.scripted_noise, reverse=True)
    kinds = [_noise_for_episode(i, 20, new.scripted_noise, new.scripted_random)
             for i in range(20)]
    assert kinds[:2] == [None, None] and kinds[-1] == 0.0  # random first, clean last


# --- 3. prompts from before the first success ------------------------------------------


def test_prompt_windows_end_at_or_before_first_success():
    from mtdiff.data.prompts import cut_prompt_windows

    rng = np.random.default_rng(0)
    T, J, first = 200, 5, 30
    ep = {keys.OBSERVATION: np.arange(T, dtype=np.float32)[:, None].repeat(3, 1),
          keys.ACTION: np.zeros((T, 2), np.float32), keys.SUCCESS: np.arange(T) >= first}
    w = cut_prompt_windows([ep], J, 200, rng)  # the default
    last_step = w[:, -1, 0]  # the step index is the observation's value
    assert last_step.max() == first and last_step.min() == J - 1  # all starts in [0, 26]
    assert CollectConfig().prompt_window == "before-success"
    anywhere = cut_prompt_windows([ep], J, 200, rng, window="anywhere")
    assert anywhere[:, -1, 0].max() > first  # the old behaviour, still selectable


# --- 4. x0-hat clipping to the data's normalised range ---------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "minmax"])
def test_clip_range_is_the_data_range_in_normalised_units(write_dataset, kind):
    from mtdiff.data.normalize import Normalizer
    from mtdiff.data.reader import load_dataset
    from mtdiff.diffusion import DiffusionSchedule, make_sampler

    ds = load_dataset(write_dataset())
    nz = Normalizer(ds.stats, kind)
    lo, hi = nz.normalized_bounds(keys.ACTION)
    allz = nz.normalize(keys.ACTION, np.concatenate([t.actions for t in ds.tasks.values()]))
    np.testing.assert_allclose(allz.min(0), lo, atol=1e-5)
    np.testing.assert_allclose(allz.max(0), hi, atol=1e-5)
    dcfg = DiffusionConfig(num_steps=20, sample_steps=4, sampler="ddim")
    sampler = make_sampler(dcfg, DiffusionSchedule.from_config(dcfg),
                           clip_sample=(torch.from_numpy(lo), torch.from_numpy(hi)))
    x = torch.randn(64, 8, len(lo)) * 5
    out = sampler.step(torch.randn_like(x), sampler.timesteps[0], x)
    assert (out.pred_x0 >= torch.from_numpy(lo) - 1e-6).all()
    assert (out.pred_x0 <= torch.from_numpy(hi) + 1e-6).all()


# --- 4 and 6: synthesis honours the pipeline's sampler settings, clipping included ------


def test_synthesis_uses_the_given_sampler_settings_and_clips(synth_checkpoint, tmp_path):
    from mtdiff.data.reader import load_dataset, read_manifest
    from mtdiff.synth.stage import synthesize

    ckpt, _, cfg = synth_checkpoint
    stats = read_manifest(ckpt.parent / "data")["stats"]
    lo, hi = np.array(stats["observation"]["min"]), np.array(stats["observation"]["max"])
    base = replace(cfg.diffusion, sampler="ddim", sample_steps=2)

    def synth(name: str, **kw: object) -> np.ndarray:
        out = synthesize(ckpt, tasks=["reach-v3"], num=32, out=tmp_path / name, batch=8,
                         diffusion=replace(base, **kw))
        assert read_manifest(out)["collector"]["sample_steps"] == kw.get("sample_steps", 2)
        return load_dataset(out).tasks["reach-v3"].observations

    clipped = synth("clip", clip_denoised=True)
    free = synth("free", clip_denoised=False)
    tol = 1e-3 * (hi - lo + 1)
    assert ((clipped >= lo - tol) & (clipped <= hi + tol)).all()  # inside the data's range
    assert not ((free >= lo - tol) & (free <= hi + tol)).all()  # an untrained model strays
    other = synth("steps", clip_denoised=True, sample_steps=3)
    assert not np.allclose(other, clipped)  # the setting given is the one used


def test_synthesize_cli_takes_sampler_overrides(synth_checkpoint, tmp_path):
    from mtdiff.data.reader import read_manifest
    from pipelines.synthesize import main as synth_cli

    ckpt, _, _ = synth_checkpoint
    out = tmp_path / "cli"
    assert synth_cli(["--checkpoint", str(ckpt), "--task", "reach-v3", "--num", "8",
                      "--out", str(out), "--set", "diffusion.sample_steps=3",
                      "--set", "diffusion.clip_denoised=false"]) == 0
    col = read_manifest(out / "synthetic")["collector"]
    assert col["sample_steps"] == 3 and col["clip_denoised"] is False
    assert synth_cli(["--checkpoint", str(ckpt), "--task", "reach-v3", "--num", "8",
                      "--out", str(tmp_path / "bad"), "--set", "train.lr=1"]) == 2


# --- 5. Maze2D layout prompts through the real entry points ----------------------------

USER_MAP = """\
########
#OOOO#G#
#O##O#O#
#O#OOOO#
#O#O##O#
#OOO#OO#
##OOOOO#
########
"""


def _maze_data(tmp_path: Path) -> Path:
    from mtdiff.collect.maze2d import _maze_job, plan_maze2d
    from mtdiff.data.prompts import write_prompts
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("smoke"), ["maze2d.train_maps=train-0,train-1",
                                                "maze2d.unseen_maps=unseen-0",
                                                "maze2d.episodes_per_map=2"])
    data = tmp_path / "maze"
    plan = plan_maze2d(cfg)
    write_prompts(data, {j.task: _maze_job(j, cfg, str(data)) for j in plan.jobs}, 4, 2)
    finalize_dataset(data, suite="maze2d", source="test", tasks=["train-0", "train-1"],
                     config={}, config_hash="t", extra={"details": plan.details})
    return data


def test_layout_prompt_tokens_and_shape_check(tmp_path):
    from mtdiff.envs.maze2d import load_map, parse_map
    from mtdiff.envs.maze2d_layout import LAYOUT_DIM, layout_tokens

    m = load_map("train-0")
    tok = layout_tokens(m, (8, 8))
    assert tok.shape == (36, LAYOUT_DIM) and (tok[:, :3].sum(1) == 1).all()
    gi, gj = m.goal
    assert tok[(gi - 1) * 6 + (gj - 1), 2] == 1 and tok[:, 2].sum() == 1
    assert tok[:, 3].min() == -1 and tok[:, 4].max() == 1
    small = parse_map("#####\n#OOG#\n#####", name="small")
    with pytest.raises(ValueError, match=r"3x5 cells .* 8x8"):
        layout_tokens(small, (8, 8))


def test_layout_planner_plans_on_a_users_map_file(tmp_path):
    """In process: a layout checkpoint's planner evaluates a map written in a text file."""
    from mtdiff.eval.suites import EvalJob, run_job
    from mtdiff.train.core import EMA, build_setup, save_checkpoint

    data = _maze_data(tmp_path)
    cfg = apply_overrides(get_preset("smoke"), ["data.prompt_kind=layout"])
    setup = build_setup(cfg, data)
    assert setup.meta["prompt"]["kind"] == "layout"
    save_checkpoint(tmp_path / "ckpt", model=setup.model, ema=EMA(setup.model, 0.9),
                    optimizer=torch.optim.Adam(setup.model.parameters()), step=0,
                    meta=setup.meta)
    my_map = tmp_path / "my-map.txt"
    my_map.write_text(USER_MAP)
    res = run_job(EvalJob("maze2d", str(my_map), 0, 2, 3), str(tmp_path / "ckpt"),
                  cfg.diffusion, None, device="cpu", cfg=cfg)
    assert res["task"] == "my-map" and len(res["success"]) == 2 and res["env_steps"] == 6
    wrong = run_job(EvalJob("maze2d", str(my_map), 0, 2, 3, prompt_task="train-0"),
                    str(tmp_path / "ckpt"), cfg.diffusion, None, device="cpu", cfg=cfg)
    assert wrong["prompt_task"] == "train-0"


@pytest.mark.slow
def test_layout_prompt_trains_and_evaluates_through_the_pipelines(tmp_path):
    data = _maze_data(tmp_path)
    my_map = tmp_path / "my-map.txt"
    my_map.write_text(USER_MAP)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": "local",
           "OMP_NUM_THREADS": "1"}
    train = subprocess.run(
        [sys.executable, str(ROOT / "pipelines/train.py"), "--model", "mtdiff-p", "--data",
         str(data), "--out", str(tmp_path / "runs"), "--preset", "smoke", "--no-mlflow",
         "--set", "data.prompt_kind=layout", "--set", "train.steps=2",
         "--set", "train.checkpoint_every=2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = train.stdout.strip().splitlines()[-1].split("checkpoint: ")[-1]
    from mtdiff.artifacts import load_checkpoint

    meta = load_checkpoint(ckpt)["meta"]
    assert meta["prompt"] == {"kind": "layout", "shape": [8, 8]}
    assert meta["build"]["prompt_len"] == 36 and meta["build"]["prompt_dim"] == 5
    ev = subprocess.run(
        [sys.executable, str(ROOT / "pipelines/evaluate.py"), "--checkpoint", ckpt, "--suite",
         "maze2d", "--maps", "train-0", "unseen-0", str(my_map), "--episodes", "2",
         "--max-steps", "3", "--seeds", "0", "--no-mlflow", "--out", str(tmp_path / "ev")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr[-3000:]
    import json

    res = json.loads((tmp_path / "ev" / "eval-maze2d.json").read_text())
    by = {(e["task"], e["prompt"]) for e in res["episodes"]}
    assert {("train-0", "own"), ("unseen-0", "own"), ("my-map", "own"),
            ("unseen-0", "wrong"), ("my-map", "wrong")} <= by
    assert res["summary"]["target_return"] == 1.0


def test_fidelity_table_separates_fix2_from_fixes_1_and_3():
    """`experiments/fidelity_before_after.py --fix2-arm`: the table gives the reverted-data
    arm's success and both differences, each with the right sign and verdict."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "fidelity_bench", ROOT / "experiments" / "fidelity_before_after.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]

    def rate(p: float) -> dict[int, dict[str, np.ndarray]]:
        rng = np.random.default_rng(int(p * 100))
        return {0: {f"t{i}": (rng.random(60) < p).astype(float) for i in range(4)}}

    conds = {"before/near-optimal": rate(0.2), "fix2-reverted/near-optimal": rate(0.8),
             "after/near-optimal": rate(0.8)}
    text = bench.table(conds, 2000)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    fix13 = next(v for k, v in rows.items() if "(Fixes 1 and 3)" in k)
    fix2 = rows["near-optimal: after - fix2-reverted (Fix 2, the data)"]
    assert fix13.endswith("| resolved |") and float(fix13.split(" | ")[1].split()[0]) > 0.4
    assert fix2.endswith("| not resolved |")
    assert bench.arm_config("local", "fix2-reverted", []).metaworld.scripted_random == 0.0
    assert bench.arm_config("local", "after", []).metaworld.scripted_random > 0.0


def test_an_evaluation_cuts_a_new_maps_prompts_with_its_own_config(maze_checkpoint, tmp_path,
                                                                   monkeypatch):
    """A map the dataset has no prompts for gets expert demonstrations cut into prompts by
    the job's Ray task: with the evaluation's config (its --set overrides), not the one the
    checkpoint was trained with."""
    from mtdiff.envs import maze2d_expert
    from mtdiff.eval.suites import EvalJob, run_job

    ckpt, cfg = maze_checkpoint
    ecfg = apply_overrides(cfg, ["maze2d.eval_episode_steps=37", "collect.prompt_episodes=2"])
    assert cfg.maze2d.eval_episode_steps != 37
    demo_steps = []
    real = maze2d_expert.expert_episode
    monkeypatch.setattr(maze2d_expert, "expert_episode",
                        lambda *a, **kw: demo_steps.append(kw["max_steps"]) or real(*a, **kw))
    my_map = tmp_path / "my-map.txt"
    my_map.write_text(USER_MAP)
    res = run_job(EvalJob("maze2d", str(my_map), 0, 1, 2), str(ckpt), ecfg.diffusion, None,
                  device="cpu", cfg=ecfg)
    assert res["task"] == "my-map" and demo_steps == [37, 37]
