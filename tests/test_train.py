"""Training: the loss step, EMA, checkpoints without pickle, Ray Train fit, kill + resume."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtdiff.artifacts import CheckpointError, load_checkpoint
from mtdiff.config import apply_overrides, get_preset
from mtdiff.train.core import (
    EMA,
    build_setup,
    diffusion_step_loss,
    load_model,
    save_checkpoint,
    to_torch,
)
from mtdiff.train.learner import build_learner
from tests.killing import kill_group, pause_env, wait_for_pause

REPO = Path(__file__).resolve().parents[1]


def _cfg(kind: str = "mtdiff-p", **over: str):
    cfg = get_preset("smoke")
    return apply_overrides(cfg, [f"model.kind={kind}", "data.history=2",
                                 *[f"{k}={v}" for k, v in over.items()]])


@pytest.mark.parametrize("kind", ["mtdiff-p", "mtdiff-s", "mtdiff-p-onehot"])
def test_loss_step_and_checkpoint_round_trip(write_dataset, tmp_path, kind):
    root = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    cfg = _cfg(kind)
    setup = build_setup(cfg, root)
    batch = to_torch(setup.sampler.sample(), torch.device("cpu"))
    opt = torch.optim.Adam(setup.model.parameters(), lr=1e-3)
    ema = EMA(setup.model, 0.9)
    loss = diffusion_step_loss(setup.model, setup.schedule, batch, cfg)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    ema.update(setup.model)
    save_checkpoint(tmp_path, model=setup.model, ema=ema, optimizer=opt, step=3, meta=setup.meta)
    state = load_checkpoint(tmp_path)  # weights_only=True inside
    assert state["step"] == 3 and state["meta"]["kind"] == kind
    loaded = load_model(tmp_path)
    for name, p in loaded.model.named_parameters():
        torch.testing.assert_close(p, ema.shadow.state_dict()[name])


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, 0.75)
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.shadow.weight, 0.75 * before + 0.25 * model.weight)


def test_missing_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*pipelines/train.py"):
        load_checkpoint(tmp_path / "nothing")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"lacks \['model'"):
        load_checkpoint(tmp_path)
    # Arbitrary pickled objects are refused (weights_only=True).
    torch.save({"model": {}, "ema": {}, "step": 1, "meta": object()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path)


def test_the_latest_checkpoint_skips_damaged_ones(write_dataset, tmp_path):
    from mtdiff.artifacts import Checkpoint

    root = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    setup = build_setup(_cfg(), root)
    opt = torch.optim.Adam(setup.model.parameters())
    ema = EMA(setup.model, 0.9)
    assert Checkpoint.latest(tmp_path / "run") is None
    for name, step in [("checkpoint_2026-01-01_00-00-02", 40),
                       ("checkpoint_2026-01-01_00-00-01", 20),
                       ("checkpoint_2026-01-01_00-00-03", 60)]:
        save_checkpoint(tmp_path / "run" / name, model=setup.model, ema=ema, optimizer=opt,
                        step=step, meta=setup.meta)
    assert Checkpoint.latest(tmp_path / "run").step == 60
    # A copy cut short by a kill: truncated file -> skipped, the one before is used.
    f = tmp_path / "run" / "checkpoint_2026-01-01_00-00-03" / "checkpoint.pt"
    f.write_bytes(f.read_bytes()[:100])
    found = Checkpoint.latest(tmp_path / "run")
    assert found.step == 40 and found.path.name == "checkpoint_2026-01-01_00-00-02"


def test_a_checkpoint_file_is_read_once_while_it_is_unchanged(write_dataset, tmp_path,
                                                              monkeypatch):
    """Finding the newest checkpoint reads each candidate; its step, meta, config, method
    and tensors come from that one read afterwards, until the file changes on disk."""
    from mtdiff.artifacts import Checkpoint

    root = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    setup = build_setup(_cfg(), root)
    opt = torch.optim.Adam(setup.model.parameters())
    ema = EMA(setup.model, 0.9)
    for name, step in [("checkpoint_1", 20), ("checkpoint_2", 40)]:
        save_checkpoint(tmp_path / "run" / name, model=setup.model, ema=ema, optimizer=opt,
                        step=step, meta=setup.meta)
    reads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, **kw: reads.append(str(f)) or real_load(f, **kw))
    ckpt = Checkpoint.find(tmp_path / "run")
    assert len(reads) == 2  # both candidates, to know their steps
    assert (ckpt.step, ckpt.path.name, ckpt.method.name) == (40, "checkpoint_2", "mtdiff-p")
    assert ckpt.config.model.kind == "mtdiff-p" and "ema" in ckpt.state
    assert Checkpoint.find(tmp_path / "run") == ckpt and len(reads) == 2
    save_checkpoint(ckpt.path, model=setup.model, ema=ema, optimizer=opt, step=60,
                    meta=setup.meta)  # rewritten: read again
    assert Checkpoint.find(tmp_path / "run").step == 60 and len(reads) == 3


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "pipelines/train.py"), "--model", "mtdiff-p", "--data",
            str(data), "--out", str(out), "--preset", "smoke", "--no-mlflow", *extra]


@pytest.mark.integration
@pytest.mark.slow  # minutes: `python -m pytest` runs it, CI's -m 'not slow' skips it
def test_killed_training_resumes_from_checkpoint(write_dataset, tmp_path):
    data = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    out = tmp_path / "train"
    extra = ["--set", "train.steps=200", "--set", "train.checkpoint_every=50",
             "--set", "data.history=2"]
    flag = tmp_path / "paused"
    # The worker stops for good after the checkpoint at step 50, so the kill lands mid-run
    # however fast the machine (it raced the run's end when polled for).
    proc = subprocess.Popen(_train_cmd(data, out, *extra), cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=pause_env("checkpoint_step", 50, flag))
    wait_for_pause(proc, flag, timeout=400)
    kill_group(proc)
    first = sorted(out.glob("*/checkpoint_*/checkpoint.pt"))
    assert first, "no checkpoint was written before the kill"
    killed_at = max(int(load_checkpoint(p.parent)["step"]) for p in first)
    assert killed_at == 50
    r = subprocess.run(_train_cmd(data, out, *extra), cwd=tmp_path, capture_output=True,
                       text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    final = load_checkpoint(r.stdout.strip().splitlines()[-1].split("checkpoint: ")[1])
    assert final["step"] == 200
    assert "resuming" in r.stdout, r.stdout[-2000:]
    assert final["meta"]["resumed_from"] >= killed_at > 0
    # Once finished, the same command skips training.
    again = subprocess.run(_train_cmd(data, out, *extra), cwd=tmp_path, capture_output=True,
                           text=True, timeout=200)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert all(torch.isfinite(v).all() for v in final["model"].values())


@pytest.mark.integration
def test_rerun_with_relative_out_resumes_past_a_damaged_newest_checkpoint(write_dataset, tmp_path):
    """Issue 14, items 1 and 2: a relative --out (the workers run elsewhere) and a newest
    checkpoint that Ray's run state still lists but that is damaged: the rerun resumes
    from the newest *readable* one."""
    data = write_dataset(tasks=("a", "b"), episodes=4, T=20)
    cmd = [sys.executable, str(REPO / "pipelines/train.py"), "--model", "mtdiff-p", "--data",
           str(data), "--out", "train", "--preset", "smoke", "--no-mlflow", "--set",
           "train.steps=20", "--set", "train.checkpoint_every=10", "--set", "data.history=2"]
    first = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert first.returncode == 0, first.stderr[-3000:]
    ckpts = {int(load_checkpoint(p.parent)["step"]): p
             for p in (tmp_path / "train").glob("*/checkpoint_*/checkpoint.pt")}
    assert sorted(ckpts) == [10, 20]
    ckpts[20].write_bytes(ckpts[20].read_bytes()[:200])  # cut short by a kill
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming" in again.stdout and "from step 10" in again.stdout, again.stdout[-2000:]
    final = load_checkpoint(again.stdout.strip().splitlines()[-1].split("checkpoint: ")[1])
    assert final["step"] == 20 and final["meta"]["resumed_from"] == 10


@pytest.mark.parametrize("kind", ["mtdiff-p", "mtdt", "promptdt"])
def test_train_bf16_runs_the_gpt2_learners_matmuls_in_bf16(write_dataset, kind):
    """`train.bf16` holds for every learner on the GPT-2 blocks (MTDiff's and the DTs'), so
    a precision set for a comparison holds on both sides of it; off, they run in fp32."""
    data = write_dataset(tasks=("a", "b"), episodes=3, T=16)
    for bf16 in (False, True):
        cfg = apply_overrides(get_preset("smoke"), [f"model.kind={kind}", "train.compile=off",
                                                    f"train.bf16={str(bf16).lower()}"])
        setup = build_setup(cfg, data)
        learner = build_learner(cfg, setup, torch.device("cpu"))
        model = learner.model if kind == "mtdiff-p" else learner.modules["model"]
        seen: set[torch.dtype] = set()
        hooks = [m.register_forward_hook(lambda _m, _i, out, seen=seen: seen.add(out.dtype))
                 for m in model.modules() if isinstance(m, torch.nn.Linear)]
        out = learner.update(to_torch(setup.sampler.sample(), torch.device("cpu")))
        for h in hooks:
            h.remove()
        assert seen == ({torch.bfloat16} if bf16 else {torch.float32})
        assert torch.isfinite(out["loss"]) and out["loss"].dtype == torch.float32
