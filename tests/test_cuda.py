"""Paths that matter on a GPU: TF32 switches (`train.tf32`, `diffusion.tf32`) and CUDA-graph
captures. The CUDA-only test is skipped without a GPU; run it on one with
`python -m pytest tests/test_cuda.py` (`benchmarks/gpu_check.py` times the same paths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from mtdiff.config import DiffusionConfig, apply_overrides
from mtdiff.diffusion import DiffusionSchedule, guided_model_fn, make_sampler, sample
from mtdiff.diffusion.compiled import FastSampler, fast_sampler
from tests.test_fastplan import ACT, H, conds, tiny_model


def test_tf32_switches_cuda_matmuls_inside_only_and_names_no_new_weights():
    """`train.tf32` / `diffusion.tf32`: TF32 on for CUDA inside the block, restored after
    (an error too), untouched on CPU or when off; a CUDA graph captured with it is a
    different engine; the switch does not enter the training hash (no retraining) or, with
    `diffusion.compile`, an evaluation's folder name."""
    import dataclasses

    from mtdiff.config import get_preset
    from mtdiff.runtime import matmul_tf32

    def on() -> bool:
        return bool(torch.backends.cuda.matmul.allow_tf32)

    assert not on()
    with matmul_tf32(True, "cuda"):
        assert on()
    assert not on()
    with matmul_tf32(True, torch.device("cpu")), matmul_tf32(False, "cuda:0"):
        assert not on()
    with pytest.raises(RuntimeError), matmul_tf32(True, "cuda:0"):
        raise RuntimeError("inside")
    assert not on()
    cfg = get_preset("local")
    assert cfg.train.tf32 and cfg.diffusion.tf32
    off = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tf32=False))
    assert off.training_hash("d") == cfg.training_hash("d")
    # how the loop runs does not rename an evaluation; what the plans are does
    from mtdiff.layout import Layout

    lay, run = Layout(Path("/tmp/runs")), Path("/tmp/runs/train/metaworld/train-x")
    fast = apply_overrides(cfg, ["diffusion.tf32=false", "diffusion.compile=inductor"])
    assert fast.diffusion.tf32 is False
    assert lay.evaluation(fast, "metaworld", run) == lay.evaluation(cfg, "metaworld", run)
    other = apply_overrides(cfg, ["diffusion.guidance=1.5"])
    assert lay.evaluation(other, "metaworld", run) != lay.evaluation(cfg, "metaworld", run)
    m, sched = tiny_model(), DiffusionSchedule.vp(50)
    smp = make_sampler(DiffusionConfig(num_steps=50, sampler="ddim", sample_steps=5), sched)

    def engine(tf32: bool) -> FastSampler:
        return fast_sampler(m, smp, guidance=1.2, mode="eager", device="cpu", tf32=tf32)

    assert engine(True) is engine(True) and engine(False) is not engine(True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_captures_survive_engines_freed_by_the_cyclic_collector():
    """An engine dropped earlier is freed only by the cyclic collector (it holds a cycle);
    a collection inside a later capture resets its graphs there, which CUDA refuses. Here
    the network collects whenever it runs inside a capture: before the fix the second
    capture failed. Outputs still equal the eager loop's."""
    import gc

    class Collecting(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, *args: Any, **kw: Any) -> torch.Tensor:
            if torch.cuda.is_current_stream_capturing():
                gc.collect()
            return self.inner(*args, **kw)

    m, sched = Collecting(tiny_model()).cuda(), DiffusionSchedule.vp(50)
    s = make_sampler(DiffusionConfig(num_steps=50, sampler="ddim", sample_steps=5), sched)
    cond = {k: v.cuda() for k, v in conds(3, 1).items()}
    ref = sample(guided_model_fn(m, cond, 1.2), (3, H, ACT), s, device="cuda",
                 generator=torch.Generator("cuda").manual_seed(3))
    for _ in range(3):
        eng = FastSampler(m, s, guidance=1.2, mode="cudagraph", device="cuda")
        out = eng(cond, (3, H, ACT), generator=torch.Generator("cuda").manual_seed(3))
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        del eng


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["inductor", "reduce-overhead"])
def test_compiled_training_step_matches_eager_on_cuda(mode):
    """`train.compile` on a GPU: 20 seeded steps of the planner's learner, compiled (inductor
    or CUDA graphs) vs eager, fp32 without dropout: the same losses."""
    import dataclasses

    from mtdiff.config import ModelConfig, get_preset
    from mtdiff.models import build_model
    from mtdiff.train.core import TrainSetup
    from mtdiff.train.learner import DiffusionLearner
    from tests.test_fastplan import OBS, J, L

    dev = torch.device("cuda")
    cfg = get_preset("smoke")
    losses = {}
    for setting in ("off", mode):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, compile=setting,
                                                               tf32=False))
        torch.manual_seed(0)
        model = build_model(ModelConfig(d_model=64, n_layer=2, n_head=2, dropout=0.0),
                            obs_dim=OBS, act_dim=ACT, horizon=H, history=L, prompt_len=J,
                            num_tasks=4)
        setup = TrainSetup(model, None, None, DiffusionSchedule.from_config(c.diffusion), {})  # type: ignore[arg-type]
        learner = DiffusionLearner(c, setup, dev)
        g = torch.Generator(device=dev).manual_seed(1)
        batch = {"actions": torch.randn(32, H, ACT, device=dev, generator=g),
                 "history": torch.randn(32, L, OBS, device=dev, generator=g),
                 "prompt": torch.randn(32, J, OBS + ACT, device=dev, generator=g),
                 "returns": torch.rand(32, 1, device=dev, generator=g),
                 "mask": torch.ones(32, H, device=dev)}
        torch.manual_seed(2)
        losses[setting] = torch.stack([learner.update(batch)["loss"] for _ in range(20)])
    torch.testing.assert_close(losses[mode], losses["off"], rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("tf32", [True, False])
def test_decision_transformers_train_under_train_tf32_on_cuda(tmp_path, tf32):
    """`train.tf32` reaches the DTs' step as it does MTDiff's: their forward runs with TF32
    matmuls on CUDA when it is on, and without when it is off; the flag is restored."""
    from mtdiff.config import get_preset
    from mtdiff.data.random_data import write_random_dataset
    from mtdiff.train.core import build_setup, to_torch
    from mtdiff.train.learner import build_learner

    data = tmp_path / "data"
    write_random_dataset(str(data), tasks=2, episodes=2, episode_len=60, obs_dim=5, act_dim=2)
    cfg = apply_overrides(get_preset("smoke"), ["model.kind=promptdt", f"train.tf32={tf32}",
                                                "train.compile=off"])
    learner = build_learner(cfg, build_setup(cfg, data), torch.device("cuda"))
    seen: list[bool] = []
    learner.modules["model"].register_forward_pre_hook(
        lambda *_: seen.append(bool(torch.backends.cuda.matmul.allow_tf32)))
    batch = to_torch(build_setup(cfg, data).sampler.sample(), "cuda")
    learner.update(batch)
    assert seen == [tf32] and not torch.backends.cuda.matmul.allow_tf32
