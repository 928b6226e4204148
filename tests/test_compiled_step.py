"""The compiled training step (`train.compile`) against the eager one: the same losses and
weights over 50 seeded steps, for the planner and the Decision Transformer."""

from __future__ import annotations

import pytest
import torch

from mtdiff.config import apply_overrides, get_preset
from mtdiff.train.compiled import step_mode
from mtdiff.train.core import build_setup, to_torch
from mtdiff.train.learner import EMA, build_learner

STEPS = 50
# Fused Adam and inductor's fused kernels round differently from the eager ops: after 50
# steps at lr 2e-4 the losses agree to 3e-7 (relative) and the weights to 1.4e-7 (MTDiff-P;
# Prompt-DT 2e-7, 7e-8); the bounds leave >10x room and are 1/500 of how far the weights move.
LOSS_RTOL, WEIGHT_ATOL = 1e-5, 2e-6


def _weights(learner) -> dict[str, torch.Tensor]:
    model = learner.state_dict()["model"]
    if isinstance(next(iter(model.values())), dict):  # a baseline: one state dict per module
        model = model["model"]
    return {k: v.clone() for k, v in model.items() if v.is_floating_point()}


def _train(cfg, root, compile_: str) -> tuple[list[float], dict[str, torch.Tensor],
                                               dict[str, torch.Tensor]]:
    cfg = apply_overrides(cfg, [f"train.compile={compile_}"])
    torch.manual_seed(0)  # the same initial weights
    setup = build_setup(cfg, root, seed=0)
    learner = build_learner(cfg, setup, torch.device("cpu"))
    batches = [to_torch(setup.sampler.sample(), torch.device("cpu")) for _ in range(STEPS)]
    init = _weights(learner)
    torch.manual_seed(1)  # the same draws (k, noise, R's drop, dropout masks)
    losses = [float(learner.update(b)["loss"]) for b in batches]
    return losses, init, _weights(learner)


@pytest.mark.parametrize("kind", ["mtdiff-p", pytest.param("promptdt", marks=pytest.mark.slow)])
def test_compiled_step_matches_eager(write_dataset, kind):
    root = write_dataset(tasks=("a", "b"), episodes=4, T=30)
    cfg = apply_overrides(get_preset("smoke"), [f"model.kind={kind}", "data.history=2",
                                                "train.lr=2e-4"])
    # Dropout stays on: on CPU the compiled step draws its masks from the eager generator
    # (`compile_fn`), so the two see the same masks without any test-side setting.
    eager_losses, init, eager_w = _train(cfg, root, "off")
    comp_losses, _, comp_w = _train(cfg, root, "inductor")
    torch.testing.assert_close(torch.tensor(comp_losses), torch.tensor(eager_losses),
                               rtol=LOSS_RTOL, atol=1e-6)
    assert eager_w.keys() == comp_w.keys()
    for name, w in eager_w.items():
        torch.testing.assert_close(comp_w[name], w, rtol=0, atol=WEIGHT_ATOL, msg=name)
    # The check has teeth: 50 steps moved the weights far more than the tolerance.
    moved = max(float((w - init[n]).abs().max()) for n, w in eager_w.items())
    assert moved > 50 * WEIGHT_ATOL


def test_auto_compiles_on_cuda_only():
    assert step_mode("off", "cuda") is None
    assert step_mode("auto", "cpu") is None  # slower on CPU (benchmarks/train_throughput.py)
    assert step_mode("auto", "cuda") == "inductor"
    assert step_mode("inductor", "cpu") == "inductor"
    with pytest.raises(ValueError, match="CUDA"):
        step_mode("reduce-overhead", "cpu")
    with pytest.raises(ValueError, match="one of"):
        step_mode("fast", "cpu")


def test_foreach_ema_equals_the_formula():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(model, 0.9)
    before = {k: v.clone() for k, v in ema.shadow.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model(torch.randn(5, 3))  # moves the BatchNorm buffers
    ema.update(model)
    for name, p in model.named_parameters():
        want = 0.9 * before[name] + 0.1 * p.detach()
        torch.testing.assert_close(ema.shadow.state_dict()[name], want)
    for name, b in model.named_buffers():
        assert torch.equal(ema.shadow.state_dict()[name], b)
