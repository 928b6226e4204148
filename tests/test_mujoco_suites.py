"""Cheetah-vel and Ant-dir (App. H, Table 5): task names, rewards, observations,
termination, config; and the suites through the real entry points on a local Ray
(collect -> train MTDiff-P -> evaluate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtdiff.config import ConfigError, ExperimentConfig, apply_overrides, get_preset
from mtdiff.envs.mujoco_tasks import (
    ant_dir_reward,
    cheetah_vel_reward,
    get_suite,
    make_env,
    resolve_tasks,
    suite_of,
)

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------
# Suite constants and task names
# ----------------------------------------------------------------------------------------


def test_suite_constants_match_prompt_dt_and_the_stored_draw():
    cv, ad = get_suite("cheetah-vel"), get_suite("ant-dir")
    np.testing.assert_array_equal(cv.goals, np.linspace(0.075, 3.0, 40))
    raw = json.loads((REPO / "mtdiff/envs/mujoco_tasks.json").read_text())
    redrawn = np.random.default_rng(raw["ant-dir"]["seed"]).uniform(0.0, 2 * np.pi, 50)
    np.testing.assert_array_equal(ad.goals, redrawn)  # the stored draw is the stated rule
    assert (len(cv.train_tasks), len(cv.heldout_tasks)) == (35, 5)
    assert (len(ad.train_tasks), len(ad.heldout_tasks)) == (45, 5)
    assert cv.heldout_tasks == tuple(f"cheetah-vel-{i}" for i in (2, 7, 15, 23, 26))
    assert ad.heldout_tasks == tuple(f"ant-dir-{i}" for i in (6, 17, 23, 30, 41))
    assert (cv.obs_dim, cv.act_dim, ad.obs_dim, ad.act_dim) == (20, 6, 27, 8)
    assert cv.episode_steps == ad.episode_steps == 200


def test_task_specs_resolve_like_metaworld():
    assert resolve_tasks("cheetah-vel-7") == ["cheetah-vel-7"]
    assert len(resolve_tasks("cheetah-vel")) == len(resolve_tasks("Cheetah-Vel:all")) == 40
    assert resolve_tasks("ant-dir:heldout,ant-dir-6,ant-dir-0")[-1] == "ant-dir-0"  # no dupes
    assert len(resolve_tasks("ant-dir:heldout,ant-dir-6,ant-dir-0")) == 6
    assert "cheetah-vel-2" not in resolve_tasks("cheetah-vel:train")
    assert suite_of("ant-dir-49") == "ant-dir"
    with pytest.raises(ValueError, match="did you mean 'cheetah-vel:train'"):
        resolve_tasks("cheetah-vel:trian")
    with pytest.raises(ValueError, match="unknown MuJoCo task .*'ant-dir-50'"):
        resolve_tasks("ant-dir-50")
    with pytest.raises(ValueError, match="not cheetah-vel task"):
        resolve_tasks("ant-dir-3", suite="cheetah-vel")
    with pytest.raises(ValueError, match="empty task spec"):
        resolve_tasks(" , ")
    with pytest.raises(ValueError, match="did you mean"):
        make_env("cheetah-vel-40", seed=0)
    with pytest.raises(ValueError, match="task set, not one task"):
        make_env("cheetah-vel:train", seed=0)


def test_config_sections_hashes_and_task_errors():
    cfg = get_preset("smoke")
    assert cfg.suite_section("ant-dir") is cfg.ant_dir
    h = cfg.collection_hash("cheetah-vel")
    assert h != cfg.collection_hash("ant-dir")
    assert apply_overrides(cfg, ["cheetah_vel.expert_episodes=5"]).collection_hash(
        "cheetah-vel") != h
    assert apply_overrides(cfg, ["sac.lr=1e-3"]).collection_hash("cheetah-vel") != h  # SAC data
    assert apply_overrides(cfg, ["ant_dir.expert_episodes=5"]).collection_hash("cheetah-vel") == h
    assert cfg.data.history_for("cheetah-vel") == cfg.data.history_for("ant-dir") == 2
    assert ExperimentConfig(suites=("cheetah-vel", "ant-dir")).suites == ("cheetah-vel", "ant-dir")
    with pytest.raises(ConfigError, match="known suites are maze2d, metaworld, cheetah-vel"):
        ExperimentConfig(suites=("cheetah",))
    with pytest.raises(ConfigError, match="cheetah_vel.tasks: ant-dir-1 not cheetah-vel"):
        apply_overrides(cfg, ["cheetah_vel.tasks=ant-dir-1"])
    with pytest.raises(ConfigError, match="ant_dir.heldout_tasks: unknown MuJoCo task"):
        apply_overrides(cfg, ["ant_dir.heldout_tasks=ant-dir-99"])
    with pytest.raises(ConfigError, match="unknown suite 'hopper'"):
        cfg.collection_hash("hopper")


# ----------------------------------------------------------------------------------------
# Rewards, observations, termination
# ----------------------------------------------------------------------------------------


def test_reward_functions_against_hand_computed_values():
    a = np.array([0.5, -0.5, 1.0, 0.0, 0.2, -0.2])  # ||a||^2 = 0.25+0.25+1+0+0.04+0.04 = 1.58
    r, parts = cheetah_vel_reward(1.3, 0.6, a)
    assert r == pytest.approx(-0.7 - 0.05 * 1.58)  # -|1.3 - 0.6| - 0.05 * 1.58 = -0.779
    assert parts == pytest.approx({"reward_forward": -0.7, "reward_ctrl": -0.079})
    assert cheetah_vel_reward(0.2, 0.6, np.zeros(6))[0] == pytest.approx(-0.4)
    # Ant-dir, theta = 90 deg: only v_y counts. ||a||^2 = 8 * 0.25 = 2 -> ctrl 1.0; contact
    # forces clipped to [-1, 1]: entries 3.0 -> 1, -0.5 -> 0.25, others 0 -> 5e-4 * 1.25.
    cfrc = np.zeros((14, 6))
    cfrc[1, 0], cfrc[2, 3] = 3.0, -0.5
    r, parts = ant_dir_reward(np.array([2.0, 1.5]), np.pi / 2, np.full(8, 0.5), cfrc)
    assert r == pytest.approx(1.5 - 1.0 - 5e-4 * 1.25 + 1.0)
    assert parts["reward_contact"] == pytest.approx(-6.25e-4)
    # theta = 225 deg: (cos, sin) = -(1/sqrt2, 1/sqrt2); v = (1, 3) -> -4/sqrt2.
    r, _ = ant_dir_reward(np.array([1.0, 3.0]), 1.25 * np.pi, np.zeros(8), np.zeros((14, 6)))
    assert r == pytest.approx(-4 / np.sqrt(2) + 1.0)


def _set_state(env, qpos: np.ndarray, qvel: np.ndarray) -> None:
    env.unwrapped.set_state(qpos, qvel)


def test_cheetah_env_reward_obs_and_time_limit():
    env = make_env("cheetah-vel-7", seed=0)  # v* = 0.6
    obs, info = env.reset(seed=3)
    assert obs.shape == (20,) and obs.dtype == np.float32 and info["goal"] == pytest.approx(0.6)
    data = env.unwrapped.data
    qpos, qvel = data.qpos.copy(), data.qvel.copy()
    qvel[0] = 2.0  # moving forward fast: a velocity far from the target
    _set_state(env, qpos, qvel)
    action = np.array([0.3, -0.2, 0.9, 2.0, -3.0, 0.0])  # out-of-range entries are clipped
    x0 = float(data.qpos[0])
    obs, r, term, trunc, info = env.step(action)
    v = (float(data.qpos[0]) - x0) / 0.05  # dt = frame skip 5 x 0.01
    ctrl = 0.05 * (0.09 + 0.04 + 0.81 + 1.0 + 1.0 + 0.0)
    assert r == pytest.approx(-abs(v - 0.6) - ctrl, rel=1e-9)
    assert v > 0.6 and not term and not trunc
    np.testing.assert_allclose(obs, np.concatenate(
        [data.qpos[1:], data.qvel, data.body("torso").xpos]).astype(np.float32))
    steps = 1
    while not trunc:
        _, _, term, trunc, _ = env.step(np.zeros(6))
        assert not term  # Cheetah-vel never terminates
        steps += 1
    assert steps == 200


def test_ant_env_reward_obs_and_healthy_z_termination():
    env = make_env("ant-dir-6", seed=0)
    obs, info = env.reset(seed=1)
    theta = get_suite("ant-dir").goals[6]
    assert obs.shape == (27,) and obs.dtype == np.float32 and info["goal"] == theta
    data = env.unwrapped.data
    np.testing.assert_allclose(obs, np.concatenate([data.qpos[2:], data.qvel]).astype(np.float32))
    xy0 = data.body("torso").xpos[:2].copy()
    action = np.linspace(-1, 1, 8)
    obs, r, term, trunc, info = env.step(action)
    v = (data.body("torso").xpos[:2] - xy0) / 0.05
    contact = 5e-4 * np.sum(np.square(np.clip(data.cfrc_ext, -1, 1)))
    expected = v @ [np.cos(theta), np.sin(theta)] - 0.5 * np.sum(action**2) - contact + 1.0
    assert r == pytest.approx(expected, rel=1e-9) and not term
    # Torso above 1.0 after the step: terminated (below 0.2 the contacts push a torso of
    # radius 0.25 back up within the step's 5 frames, so it is checked on random play).
    for z in (1.5, 3.0):
        env.reset(seed=2)
        qpos, qvel = data.qpos.copy(), np.zeros_like(data.qvel)
        qpos[2] = z
        _set_state(env, qpos, qvel)
        *_, term, trunc, _ = env.step(np.zeros(8))
        assert term and not trunc and data.qpos[2] > 1.0, z
    env.reset(seed=2)
    assert not env.step(np.zeros(8))[2]  # the initial height (0.75) is healthy
    rng, ends = np.random.default_rng(0), 0
    for _ in range(400):  # random play: terminated exactly when z leaves [0.2, 1.0]
        *_, term, trunc, _ = env.step(rng.uniform(-1, 1, 8))
        assert term == (not 0.2 <= data.qpos[2] <= 1.0)
        if term or trunc:
            ends += term
            env.reset()
    assert ends > 0  # random actions do throw the ant over within 400 steps


# ----------------------------------------------------------------------------------------
# Collection plan and one SAC task in process (buffer mode)
# ----------------------------------------------------------------------------------------


def test_plan_lists_training_and_heldout_jobs():
    from mtdiff.collect.mujoco import plan_mujoco

    cfg = get_preset("smoke")
    plan = plan_mujoco(cfg, "ant-dir")
    assert [(j.task, j.payload.role, j.rows) for j in plan.jobs] == [
        ("ant-dir-0", "train", 4 * 50), ("ant-dir-1", "train", 4 * 50), ("ant-dir-6", "heldout", 0)]
    assert (plan.obs_dim, plan.act_dim, plan.details["success_defined"]) == (27, 8, False)
    buf = apply_overrides(cfg, ["ant_dir.dataset=buffer", "ant_dir.heldout_tasks=ant-dir-0"])
    assert [(j.task, j.rows) for j in plan_mujoco(buf, "ant-dir").jobs] == [
        ("ant-dir-0", 1000), ("ant-dir-1", 1000)]  # a training task is not also held out
    with pytest.raises(ValueError, match="lean SAC only"):
        plan_mujoco(apply_overrides(cfg, ["sac.backend=rllib"]), "ant-dir")


def test_buffer_mode_writes_the_whole_sac_run_and_prompts_from_its_policy(tmp_path):
    from mtdiff.collect.mujoco import SAC_DIR, _task_job, plan_mujoco
    from mtdiff.data.reader import load_dataset
    from mtdiff.data.writer import finalize_dataset

    cfg = apply_overrides(get_preset("smoke"), [
        "cheetah_vel.dataset=buffer", "cheetah_vel.tasks=cheetah-vel-3",
        "cheetah_vel.heldout_tasks=", "cheetah_vel.transitions_per_task=300",
        "sac.learning_starts=150", "collect.prompt_episodes=2"])
    job = plan_mujoco(cfg, "cheetah-vel").jobs[0]
    prompts = _task_job(job, cfg, str(tmp_path))
    assert prompts.shape == (cfg.collect.prompts_per_task, cfg.collect.prompt_len, 26)
    assert not (tmp_path / SAC_DIR).exists()  # the buffer is the dataset
    finalize_dataset(tmp_path, suite="cheetah-vel", source="sac", tasks=["cheetah-vel-3"],
                     config={}, config_hash="t")
    t = load_dataset(tmp_path).tasks["cheetah-vel-3"]
    assert len(t.rewards) == 300 and t.observations.shape[1] == 20
    assert not t.success.any()
    # Prompts come from the final policy acting deterministically: a rerun (resume of a
    # finished task) cuts the very same windows.
    np.testing.assert_array_equal(_task_job(job, cfg, str(tmp_path)), prompts)


def test_heldout_run_fine_tunes_the_nearest_training_agent(tmp_path):
    import torch

    from mtdiff.collect.mujoco import (
        SAC_DIR,
        _task_job,
        final_agent,
        nearest_task,
        plan_mujoco,
        sac_env_for,
    )
    from mtdiff.collect.sac import make_agent

    assert nearest_task("cheetah-vel-15", ["cheetah-vel-10", "cheetah-vel-21"]) == \
        "cheetah-vel-10"  # 1.2 m/s: 0.375 from 0.825, 0.45 from 1.65
    # Ant-dir-17 (8 deg): 52 deg from ant-dir-0 (316 deg, across 0) and 59 from ant-dir-1.
    assert nearest_task("ant-dir-17", ["ant-dir-1", "ant-dir-0"]) == "ant-dir-0"
    cfg = apply_overrides(get_preset("smoke"), [
        "cheetah_vel.dataset=buffer", "cheetah_vel.tasks=cheetah-vel-3,cheetah-vel-30",
        "cheetah_vel.heldout_tasks=cheetah-vel-2", "cheetah_vel.transitions_per_task=300",
        "cheetah_vel.heldout_transitions=100", "sac.learning_starts=150", "sac.batch_size=32"])
    plan = plan_mujoco(cfg, "cheetah-vel")
    held = plan.jobs[-1]
    assert (held.task, held.after, held.payload.init_from) == (
        "cheetah-vel-2", ("cheetah-vel-3",), "cheetah-vel-3")
    assert plan.details["heldout_init"] == {"cheetah-vel-2": "cheetah-vel-3"}
    train = plan.jobs[0]
    _task_job(train, cfg, str(tmp_path))  # the one it depends on (Ray orders them)
    _task_job(held, cfg, str(tmp_path))
    src = final_agent(train.task, cfg, tmp_path, train.seed, sac_env_for(cfg, "cheetah-vel",
                                                                          "train"))
    tuned = final_agent(held.task, cfg, tmp_path / SAC_DIR, held.seed,
                        sac_env_for(cfg, "cheetah-vel", "heldout"))
    scratch = make_agent(cfg, 20, 6, held.seed)
    obs = torch.randn(256, 20, generator=torch.Generator().manual_seed(0))

    def gap(a, b) -> float:
        with torch.no_grad():
            return float((a.actor.dist(obs)[0] - b.actor.dist(obs)[0]).abs().mean())

    # 100 steps, updates from step 32 (no random warm-up): a few small steps from the source.
    assert 0 < gap(tuned, src) < gap(scratch, src) / 5
    scratch_cfg = apply_overrides(cfg, ["cheetah_vel.heldout_init=scratch"])
    assert plan_mujoco(scratch_cfg, "cheetah-vel").jobs[-1].after == ()


def test_summary_leaves_success_undefined_and_averages_returns():
    from mtdiff.eval.suites import summarize

    rows = [{"task": t, "seed": s, "success": None, "returns": ret, "env_steps": 4,
             "seconds": 1.0, "plan_seconds": 0.5}
            for t, s, ret in [("a", 0, [-10, -20]), ("a", 1, [-30, -30]), ("b", 0, [0, 0]),
                              ("b", 1, [-10, -10])]]
    s = summarize(rows)
    assert s["success_mean"] is None and s["tasks"]["a"]["success_mean"] is None
    assert s["tasks"]["a"]["return_mean"] == pytest.approx(-22.5)
    # Mean over tasks per seed: seed 0 = (-15 + 0) / 2, seed 1 = (-30 - 10) / 2.
    assert s["return_mean"] == pytest.approx(-13.75) and s["return_std"] == pytest.approx(6.25)


# ----------------------------------------------------------------------------------------
# Through the real entry points: collect (both suites) -> train -> evaluate
# ----------------------------------------------------------------------------------------


def _cli(script: str, *args: str, cwd: Path, env: dict[str, str], timeout: float = 400
         ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "pipelines" / script), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **env})


class Collected:
    """Suites collected with the smoke preset through the CLI, each once per module (on
    first use), tracked in one MLflow store: ``root``, ``env`` (for the CLI), ``out(suite)``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {"MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        self._done: dict[str, Path] = {}

    def out(self, suite: str) -> Path:
        if suite not in self._done:
            r = _cli("collect.py", "--suite", suite, "--preset", "smoke", "--out",
                     str(self.root / suite), "--track", "--no-progress", cwd=self.root,
                     env=self.env)
            assert r.returncode == 0, r.stderr[-3000:]
            self._done[suite] = self.root / suite
        return self._done[suite]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> Collected:
    return Collected(tmp_path_factory.mktemp("suites"))


@pytest.mark.integration
def test_smoke_collection_of_both_suites(collected):
    import mlflow

    from mtdiff.data.prompts import load_prompts
    from mtdiff.data.reader import read_manifest, validate_dataset

    cfg = get_preset("smoke")
    for suite, dims in (("cheetah-vel", (20, 6)), ("ant-dir", (27, 8))):
        sc, out = cfg.suite_section(suite), collected.out(suite)
        man = read_manifest(out)
        assert man["config_hash"] == cfg.collection_hash(suite)
        assert list(man["tasks"]) == resolve_tasks(sc.tasks)
        assert validate_dataset(out) == []
        held = resolve_tasks(sc.heldout_tasks)
        assert set(load_prompts(out)) == {*man["tasks"], *held}
        for entry in man["tasks"].values():  # expert data: episodes of the final policy
            assert (entry["obs_dim"], entry["act_dim"]) == dims
            assert entry["episodes"] == sc.expert_episodes
    # SAC's evaluation curve per task (training and held-out) in MLflow, return only.
    client = mlflow.MlflowClient(collected.env["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("mtdiff")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    for task in ("cheetah-vel-0", "cheetah-vel-1", "ant-dir-0", "ant-dir-1"):
        hist = client.get_metric_history(runs[f"sac-{task}"].info.run_id, "eval_return")
        assert [m.step for m in hist] == [1000], task  # eval_every 1000 of 1000 steps
        assert "success" not in " ".join(runs[f"sac-{task}"].data.metrics)
    assert runs["sac-ant-dir-6"].data.tags["role"] == "heldout"
    # Held-out runs fine-tune the nearest training task's agent (smoke, as local).
    assert read_manifest(collected.out("ant-dir"))["details"]["heldout_init"] == {
        "ant-dir-6": "ant-dir-1"}  # 70 deg: 3 from ant-dir-1 (67), 114 from ant-dir-0 (316)


def _train_and_evaluate(collected: Collected, suite: str) -> dict:
    root, env, data = collected.root, collected.env, collected.out(suite)
    r = _cli("train.py", "--model", "mtdiff-p", "--data", str(data), "--preset", "smoke",
             "--set", "train.steps=4", "--set", "train.checkpoint_every=4",
             "--out", str(root / f"train-{suite}"), "--no-mlflow", cwd=root, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = r.stdout.strip().splitlines()[-1].split("checkpoint: ")[1]
    e = _cli("evaluate.py", "--checkpoint", ckpt, "--suite", suite, "--episodes", "1",
             "--max-steps", "8", "--out", str(root / f"eval-{suite}"), cwd=root, env=env)
    assert e.returncode == 0, e.stderr[-3000:]
    assert "success undefined" in e.stdout
    summary = json.loads((root / f"eval-{suite}" / f"eval-{suite}.json").read_text())["summary"]
    sc = get_preset("smoke").suite_section(suite)
    assert set(summary["train"]["tasks"]) == set(resolve_tasks(sc.tasks))
    assert set(summary["heldout"]["tasks"]) == set(resolve_tasks(sc.heldout_tasks))
    assert summary["all"]["success_mean"] is None
    assert np.isfinite(summary["train"]["return_mean"])
    assert 3 <= summary["all"]["env_steps"] <= 3 * 8  # 3 tasks x 1 episode (Ant may fall)
    # A wrong suite for the checkpoint, and a task without prompts, are one-line errors.
    other = "ant-dir" if suite == "cheetah-vel" else "cheetah-vel"
    bad = _cli("evaluate.py", "--checkpoint", ckpt, "--suite", other, "--no-mlflow",
               "--out", str(root / "x"), cwd=root, env=env)
    assert bad.returncode == 2 and f"trained on '{suite}'" in bad.stderr
    bad = _cli("evaluate.py", "--checkpoint", ckpt, "--suite", suite, "--tasks", f"{suite}-30",
               "--no-mlflow", "--out", str(root / "x"), cwd=root, env=env)
    assert bad.returncode == 2 and f"no prompts for {suite}-30" in bad.stderr
    return summary


@pytest.mark.integration
def test_cheetah_vel_trains_and_evaluates_through_the_cli(collected):
    summary = _train_and_evaluate(collected, "cheetah-vel")
    assert summary["all"]["env_steps"] == 3 * 8  # Cheetah-vel never terminates
    assert summary["all"]["return_mean"] < 0  # -|v - v*| - ctrl: never positive


@pytest.mark.integration
def test_ant_dir_trains_and_evaluates_through_the_cli(collected):
    _train_and_evaluate(collected, "ant-dir")


@pytest.mark.integration
def test_dataset_rows_carry_no_success(collected):
    from mtdiff.data.reader import load_dataset

    ds = load_dataset(collected.out("ant-dir"))
    for t in ds.tasks.values():
        assert not t.success.any() and np.abs(t.actions).max() <= 1.0
        # Ant episodes end at the time limit or when it falls: one end each.
        assert (t.terminated | t.truncated).sum() == get_preset("smoke").ant_dir.expert_episodes
