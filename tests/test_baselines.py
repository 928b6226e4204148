"""The baselines of Table 1 and the U-Net ablation: sampler fields, networks,
policies, checkpoints without pickle, exact resume, and each method trained and evaluated
through the real entry points (`pipelines/train.py`, `pipelines/evaluate.py`) on a real
Meta-World dataset. The losses against TorchRL's: tests/test_baseline_losses.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtdiff import keys
from mtdiff.artifacts import load_checkpoint
from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import random_episode
from mtdiff.data.reader import load_dataset
from mtdiff.data.windows import WindowSampler
from mtdiff.data.writer import TaskWriter, finalize_dataset
from mtdiff.methods import get_method
from mtdiff.train.checkpoints import write_checkpoint
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import build_learner

REPO = Path(__file__).resolve().parents[1]
BASELINES = ["mtbc", "mtiql", "mtcql", "mtdt", "promptdt", "mttd3bc"]
CPU = torch.device("cpu")


def _cfg(kind: str, *over: str):
    return apply_overrides(get_preset("smoke"), [f"model.kind={kind}", *over])


def _counting_dataset(root: Path, *, terminal_last: bool = False) -> Path:
    """2 tasks x 3 episodes of 12 steps whose first observation entry is the step index
    and whose reward is 1 + step (so successors and returns can be checked)."""
    from mtdiff.data.prompts import cut_prompt_windows, write_prompts

    rng = np.random.default_rng(0)
    prompts = {}
    for task in ("a", "b"):
        w = TaskWriter(root, task, 3, 2, 100)
        eps = []
        for e in range(3):
            ep = random_episode(rng, 12, 3, 2)
            ep[keys.OBSERVATION][:, 0] = np.arange(12)
            ep[keys.REWARD] = (1.0 + np.arange(12)).astype(np.float32)
            if terminal_last and e == 0:
                ep[keys.TERMINATED][-1], ep[keys.TRUNCATED][-1] = True, False
            w.add_episode(e, ep)
            eps.append(ep)
        w.close()
        prompts[task] = cut_prompt_windows(eps, 5, 4, rng)
    write_prompts(root, prompts, 3, 2)
    finalize_dataset(root, suite="random", source="test", tasks=["a", "b"], config={},
                     config_hash="t")
    return root


def _sampler(root: Path, fields: str, **kw) -> WindowSampler:
    from mtdiff.data.normalize import Normalizer
    from mtdiff.data.prompts import load_prompts

    ds = load_dataset(root)
    return WindowSampler(ds, load_prompts(root), Normalizer(ds.stats), horizon=kw.pop("H", 4),
                         history=2, prompt_len=5, batch_per_task=kw.pop("M", 200),
                         fields=fields, **kw)


def test_qlearning_fields_pair_each_state_with_its_successor(tmp_path):
    s = _sampler(_counting_dataset(tmp_path / "d", terminal_last=True), "qlearning")
    b = s.sample()
    assert b[keys.BATCH_OBS].shape == (400, 3) and b[keys.BATCH_ACTION].shape == (400, 2)
    from mtdiff.data.normalize import Normalizer

    nz = Normalizer(load_dataset(tmp_path / "d").stats)
    step = np.rint(nz.unnormalize(keys.OBSERVATION, b[keys.BATCH_OBS])[:, 0]).astype(int)
    nxt = np.rint(nz.unnormalize(keys.OBSERVATION, b[keys.BATCH_NEXT_OBS])[:, 0]).astype(int)
    done = b[keys.BATCH_DONE].astype(bool)
    np.testing.assert_array_equal(b[keys.BATCH_REWARD], 1.0 + step)  # raw reward of s_t
    np.testing.assert_array_equal(nxt[~done], step[~done] + 1)  # the next row of the episode
    # The last row of a truncated episode (no s_{t+1} in the data) is never drawn; the
    # terminal one is, with done = 1.
    assert done.any() and (step[done] == 11).all()
    assert ((step == 11) == done).all()
    assert np.abs(b[keys.BATCH_ACTION]).max() <= 1.0
    np.testing.assert_array_equal(np.bincount(b[keys.BATCH_TASK_ID]), [200, 200])


def test_sequence_fields_rtg_falls_by_reward_over_range(tmp_path):
    s = _sampler(_counting_dataset(tmp_path / "d"), "sequence", H=5)
    b = s.sample()
    assert b[keys.BATCH_SEQ_OBS].shape == (400, 5, 3) and b[keys.BATCH_RTG].shape == (400, 5, 1)
    ts, mask, rtg = b[keys.BATCH_TIMESTEPS], b[keys.BATCH_MASK], b[keys.BATCH_RTG][..., 0]
    assert ts.dtype == np.int64
    # Episode return 78 (1 + ... + 12); the smallest reward-to-go is 12 (last step).
    assert s.return_range == {"a": 66.0, "b": 66.0}
    both = (mask[:, :-1] * mask[:, 1:]).astype(bool)  # consecutive real steps
    np.testing.assert_array_equal((ts[:, 1:] - ts[:, :-1])[both], 1)
    np.testing.assert_allclose((rtg[:, :-1] - rtg[:, 1:])[both], ((1.0 + ts[:, :-1]) / 66.0)[both],
                               atol=1e-6)
    start = (ts == 0) & (mask == 1)
    assert start.any()
    np.testing.assert_allclose(rtg[start], 1.0, atol=1e-6)  # episode start: the best return
    assert ((mask == 0) <= (rtg == 0)).all() and (ts[mask == 0] == 0).all()  # padding zeroed


def test_task_heads_route_each_sample_through_its_tasks_head():
    from mtdiff.baselines.nets import TaskHeads

    torch.manual_seed(0)
    heads = TaskHeads(4, 2, 5, hidden=8, n_nets=2)
    x, t = torch.randn(9, 4), torch.tensor([4, 0, 0, 2, 4, 4, 1, 0, 2])
    out = heads(x, t)  # (2, 9, 2)
    for n in range(2):
        for i in range(9):
            h = x[i]
            for layer, (w, b) in enumerate(zip(heads.weights, heads.biases, strict=True)):
                h = h @ w[n, t[i]] + b[n, t[i], 0]
                h = torch.nn.functional.mish(h) if layer < 2 else h
            torch.testing.assert_close(out[n, i], h)
    # A head gets no gradient from samples of other tasks.
    out[:, t == 0].sum().backward()
    g = heads.weights[0].grad
    assert g[:, 0].abs().sum() > 0 and g[:, 1:].abs().sum() == 0


@pytest.mark.parametrize("kind", BASELINES)
def test_checkpoint_loads_without_pickle_and_resumes_exactly(write_dataset, tmp_path, kind):
    """A learner restored from its checkpoint (weights_only=True) takes the same next step
    as the one that kept running: networks, targets, optimisers and schedules are saved."""
    data = write_dataset(tasks=("a", "b", "c"), episodes=3, T=16)
    cfg = _cfg(kind)
    setup = build_setup(cfg, data)
    torch.manual_seed(0)
    a = build_learner(cfg, setup, CPU)
    for _ in range(3):
        a.update(to_torch(setup.sampler.sample(), CPU))
    write_checkpoint(tmp_path, **a.state_dict(), step=3, meta=setup.meta)
    state = load_checkpoint(tmp_path)  # torch.load(weights_only=True) inside
    assert state["meta"]["method"] == kind and state["step"] == 3
    b = build_learner(cfg, setup, CPU)
    b.load_state_dict(state)
    batch = to_torch(setup.sampler.sample(), CPU)
    torch.manual_seed(1)
    out_a = a.update(batch)
    torch.manual_seed(1)
    out_b = b.update(batch)
    for k in out_a:
        torch.testing.assert_close(out_a[k], out_b[k])
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa["model"]:
        for p, v in sa["model"][name].items():
            torch.testing.assert_close(v, sb["model"][name][p])


def _policy(kind: str, write_dataset, tmp_path, *overrides: str):
    from mtdiff.eval.policy import load_policy

    data = write_dataset(tasks=("a", "b", "c"), episodes=3, T=16)
    cfg = _cfg(kind, *overrides)
    setup = build_setup(cfg, data)
    torch.manual_seed(0)
    learner = build_learner(cfg, setup, CPU)
    for _ in range(2):
        learner.update(to_torch(setup.sampler.sample(), CPU))
    write_checkpoint(tmp_path / kind, **learner.state_dict(), step=2, meta=setup.meta)
    return load_policy(tmp_path / kind)


@pytest.mark.parametrize("kind", BASELINES)
def test_policies_act_with_the_right_shapes_and_use_their_condition(write_dataset, tmp_path,
                                                                     kind):
    pol = _policy(kind, write_dataset, tmp_path)
    rng = np.random.default_rng(0)
    obs = np.repeat(rng.normal(size=(1, 6)).astype(np.float32), 3, axis=0)  # same state x3
    if kind == "promptdt":
        assert pol.conditioning == "prompt"
        prompts = np.stack([pol.sample_prompts(t, 1, rng)[0] for t in ("a", "b", "c")])
        pol.begin(obs, prompts=prompts, task_ids=None, env_tasks=["a", "b", "c"])
    else:
        assert pol.conditioning == "task_id"
        pol.begin(obs, prompts=None, task_ids=np.array([0, 1, 2]))
    a = pol.act(np.arange(3))
    assert a.shape == (3, 2) and np.abs(a).max() <= 1.0
    # The same state, three tasks (ids or prompts): three different actions.
    assert np.abs(a[0] - a[1]).max() > 1e-6 and np.abs(a[1] - a[2]).max() > 1e-6
    # Environments that stopped keep their slots; the rest act on.
    for t in range(6):
        idx = np.arange(3) if t < 3 else np.array([0, 2])
        pol.observe(idx, rng.normal(size=(len(idx), 6)).astype(np.float32), np.ones(len(idx)))
        assert pol.act(idx).shape == (len(idx), 2)


def test_dt_policy_keeps_the_last_k_steps_and_lowers_the_return(write_dataset, tmp_path):
    pol = _policy("mtdt", write_dataset, tmp_path)
    K = pol.K
    rng = np.random.default_rng(0)
    pol.begin(rng.normal(size=(2, 6)).astype(np.float32), prompts=None,
              task_ids=np.array([0, 2]))
    assert pol.r[:, 0, 0].tolist() == [1.0, 1.0]
    ranges = np.array([pol.ranges["a"], pol.ranges["c"]], np.float32)
    for _ in range(K + 2):
        pol.act(np.arange(2))
        pol.observe(np.arange(2), rng.normal(size=(2, 6)).astype(np.float32),
                    np.array([0.5, 2.0]))
    assert (pol.n == K).all() and pol.ts[0].tolist() == list(range(3, K + 3))
    np.testing.assert_allclose(pol.r[:, -1, 0], 1.0 - (K + 2) * np.array([0.5, 2.0]) / ranges,
                               rtol=1e-5)


def test_dt_target_return_stays_on_its_own_rtg_scale(write_dataset, tmp_path):
    """The DTs condition on undiscounted task-max rtg whatever `data.return_scale` the
    planners use: their checkpoints say so, and the target is checked on that scale."""
    from mtdiff.artifacts import Checkpoint
    from mtdiff.eval.policy import load_policy

    # Reward units for the planners: their natural target would be the largest return.
    pol = _policy("promptdt", write_dataset, tmp_path, "data.return_scale=steps-left")
    info = Checkpoint.find(tmp_path / "promptdt").meta["returns"]
    assert (info["scale"], info["discount"], info["target"]) == ("task-max", 1.0, 1.0)
    assert pol.target_return == 1.0  # None: the task's best on the DT's own scale
    assert load_policy(tmp_path / "promptdt", target_return=0.5).target_return == 0.5
    with pytest.raises(ValueError, match="outside the returns"):
        load_policy(tmp_path / "promptdt", target_return=9.0)


def test_each_baseline_samples_its_fields():
    assert {m: get_method(m).fields for m in BASELINES} == {
        m: "sequence" if m.endswith("dt") else "qlearning" for m in BASELINES}


def test_unet_prompt_encoder_is_a_tcn_covering_the_prompt():
    from mtdiff.models.unet import PromptTCN

    for J in (5, 20, 32):
        tcn = PromptTCN(6, 16, J).eval()
        assert tcn.receptive_field >= J
        z = torch.randn(2, J, 6)
        early = z.clone()
        early[:, 0] += 1.0  # the first prompt step reaches z_p ...
        assert (tcn(early) - tcn(z)).abs().max() > 1e-6
    # Dilations 1, 2, 4, 8 reach 61 steps (kernel 3, two convs a block): 64 needs a fifth.
    assert len(PromptTCN(6, 16, 61).blocks) == 4 and len(PromptTCN(6, 16, 64).blocks) == 5


# --- through the real entry points ---------------------------------------------------------


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / f"pipelines/{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def metaworld_data(tmp_path_factory) -> Path:
    """A real Meta-World dataset: reach-v3 and push-v3, 3 noisy scripted episodes of 40
    steps each, prompt sets of J=5 (the smoke preset's J)."""
    from mtdiff.collect.scripted import rollout_scripted
    from mtdiff.data.prompts import cut_prompt_windows, write_prompts
    from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM

    root = tmp_path_factory.mktemp("mw") / "data"
    prompts = {}
    for i, task in enumerate(("reach-v3", "push-v3")):
        w = TaskWriter(root, task, OBS_DIM, ACT_DIM, 1000)
        eps = list(rollout_scripted(task, num_episodes=3, noise_std=0.1, seed=i,
                                    max_episode_steps=40))
        for e, ep in enumerate(eps):
            w.add_episode(e, ep)
        w.close()
        prompts[task] = cut_prompt_windows(eps, 5, 4, np.random.default_rng(i))
    write_prompts(root, prompts, OBS_DIM, ACT_DIM)
    finalize_dataset(root, suite="metaworld", source="scripted", tasks=list(prompts),
                     config={}, config_hash="test")
    return root


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the entry-point tests of this module (the entry points start it)."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


# Each case is a Ray Train fit and an evaluation through the real entry points, in one local
# Ray: measured 27-29 s a case (43 s for the first, which starts Ray) beside a two-actor
# evaluation on 2 cores, so every method runs in the default suite (CI's smoke).
@pytest.mark.integration
@pytest.mark.parametrize("method", [*BASELINES[1:], "mtbc", "mtdiff-p-unet"])
def test_trains_and_evaluates_through_the_entry_points(method, metaworld_data, local_ray,
                                                       tmp_path, capsys):
    train, evaluate = _script("train"), _script("evaluate")
    track = method == "mtiql"  # one method's curves checked in a real MLflow store
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--model", method, "--data", str(metaworld_data), "--out", str(tmp_path / "train"),
            "--preset", "smoke", "--set", "train.steps=4", "--set", "train.checkpoint_every=2",
            "--set", "train.log_every=2", "--set", f"tracking.uri={uri}",
            *([] if track else ["--no-mlflow"])]
    assert train.main(argv) == 0
    ckpt = capsys.readouterr().out.strip().splitlines()[-1].split("checkpoint: ")[1]
    state = load_checkpoint(ckpt)  # weights_only=True
    assert state["step"] == 4 and state["meta"]["method"] == method
    assert state["meta"]["build"]["horizon"] == (4 if method in ("mtdt", "promptdt") else 8)
    if method == "mtbc":  # the same command again: finished, skipped
        assert train.main(argv) == 0
        assert "already finished" in capsys.readouterr().out
    if track:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        (run,) = client.search_runs([client.get_experiment_by_name("mtdiff").experiment_id],
                                    "tags.stage = 'train'")
        for metric in ("loss", "q_loss", "v_loss", "actor_loss", "grad_norm"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [2, 4]
    out = tmp_path / "eval"
    rc = evaluate.main(["--checkpoint", ckpt, "--suite", "metaworld", "--episodes", "1",
                        "--seeds", "0", "--max-steps", "5", "--no-mlflow", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"{get_method(method).label} success" in printed
    assert ("ddim" in printed) == (method == "mtdiff-p-unet")  # sampler shown for diffusion only
    res = json.loads((out / "eval-metaworld.json").read_text())
    assert res["summary"]["method"] == method
    eps = res["episodes"]
    assert sorted(e["task"] for e in eps) == ["push-v3", "reach-v3"]
    assert all(e["episodes"] == 1 and 1 <= e["lengths"][0] <= 5 for e in eps)
    if method != "mtdiff-p-unet":  # sampler flags are the diffusion planners' only
        assert evaluate.main(["--checkpoint", ckpt, "--suite", "metaworld", "--guidance",
                              "2.0", "--no-mlflow", "--out", str(out)]) == 2
        assert "--guidance set the diffusion sampler" in capsys.readouterr().err


def test_train_rejects_a_backbone_a_method_has_not(capsys):
    rc = _script("train").main(["--model", "mtbc", "--data", "x", "--out", "y",
                                "--set", "model.backbone=unet"])
    assert rc == 2 and "no method trains model kind 'mtbc'" in capsys.readouterr().err


@pytest.mark.integration
def test_promptdt_plays_training_and_unseen_maze2d_maps(maze_checkpoint, tmp_path):
    """Fig. 4's comparison needs Prompt-DT on Maze2D: an unseen map gets a prompt cut from
    fresh expert demonstrations and the median return range of the training maps."""
    from mtdiff.eval.suites import EvalJob, run_job

    data = maze_checkpoint[0].parent / "data"  # the fixture's real Maze2D dataset (train-0)
    cfg = _cfg("promptdt", "maze2d.train_maps=train-0", "maze2d.unseen_maps=unseen-0")
    setup = build_setup(cfg, data)
    learner = build_learner(cfg, setup, CPU)
    learner.update(to_torch(setup.sampler.sample(), CPU))
    write_checkpoint(tmp_path / "pdt", **learner.state_dict(), step=1, meta=setup.meta)
    for spec, group in (("train-0", "train"), ("unseen-0", "unseen")):
        r = run_job(EvalJob("maze2d", spec, 0, 2, 4, keep_paths=True, extra={"group": group}),
                    str(tmp_path / "pdt"), None, 1.0, device="cpu", cfg=cfg)
        assert r["task"] == spec and r["group"] == group and len(r["success"]) == 2
        assert all(1 <= n <= 4 for n in r["lengths"])
        assert [len(p) for p in r["paths"]] == [n + 1 for n in r["lengths"]]  # xy per step


@pytest.mark.parametrize("variant", ["mtdt", "promptdt"])
def test_dt_predicts_a_t_from_the_tokens_up_to_s_t(variant):
    """Causal and read at the state token: a_t's prediction changes with s_t and R_t, the
    prompt (Prompt-DT) or task (MT-DT), never with a_t or anything later."""
    from mtdiff.baselines.dt import DecisionTransformer
    from mtdiff.models.gpt2 import GPTConfig

    torch.manual_seed(0)
    K, J = 4, 3
    model = DecisionTransformer(obs_dim=3, act_dim=2, context=K, max_timestep=20,
                                gpt=GPTConfig(d_model=16, n_layer=2, n_head=2, dropout=0.0),
                                num_tasks=2, task_dim=4 if variant == "mtdt" else 0,
                                prompt_len=J if variant == "promptdt" else 0).eval()
    x = [torch.randn(1, K, 3), torch.randn(1, K, 2), torch.rand(1, K, 1),
         torch.arange(K)[None]]
    cond = {"task_id": torch.tensor([0]), "prompt": torch.randn(1, J, 5)}

    def pred(xs, c):
        return model(*xs, task_id=c["task_id"],
                     prompt=c["prompt"] if variant == "promptdt" else None)[0]

    base = pred(x, cond)
    t = 1
    for i, name in ((0, "s"), (1, "a"), (2, "R")):
        y = [v.clone() for v in x]
        y[i][0, t] += 1.0
        changed = (pred(y, cond) - base).abs().amax(-1) > 1e-6  # (K,) per step
        assert not changed[:t].any()  # nothing before t sees step t
        assert changed[t].item() == (name != "a")  # a_t is predicted without a_t
        assert changed[t + 1:].all()
    other = ({**cond, "task_id": torch.tensor([1])} if variant == "mtdt"
             else {**cond, "prompt": torch.randn(1, J, 5)})
    assert ((pred(x, other) - base).abs().amax(-1) > 1e-6).all()
