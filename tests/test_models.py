"""Noise models: shapes, return dropout, attention paths, causal mask, a tiny overfit."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch

from mtdiff import keys
from mtdiff.config import ModelConfig
from mtdiff.models import (
    GPTConfig,
    MTDiffP,
    MTDiffPOneHot,
    MTDiffS,
    TemporalUNet,
    build_model,
    sample_return_drop,
)

OBS, ACT, H, L, J, TASKS = 5, 2, 6, 2, 4, 3
TINY = {"d_model": 32, "n_layer": 2, "n_head": 2}


def _cond(B: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        keys.BATCH_PROMPT: torch.randn(B, J, OBS + ACT, generator=g),
        keys.BATCH_HISTORY: torch.randn(B, L, OBS, generator=g),
        keys.BATCH_RETURN: torch.rand(B, 1, generator=g),
        keys.BATCH_TASK_ID: torch.randint(0, TASKS, (B,), generator=g),
    }


def _build(kind: str, backbone: str = "gpt2", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(kind=kind, backbone=backbone, **TINY), obs_dim=OBS,
                       act_dim=ACT, horizon=H, history=L, prompt_len=J, num_tasks=TASKS,
                       **kw).eval()


@pytest.mark.parametrize("kind,backbone,cls,x_dim", [
    ("mtdiff-p", "gpt2", MTDiffP, ACT), ("mtdiff-p-onehot", "gpt2", MTDiffPOneHot, ACT),
    ("mtdiff-s", "gpt2", MTDiffS, OBS + ACT + 1), ("mtdiff-p", "unet", TemporalUNet, ACT),
    ("mtdiff-p-onehot", "unet", TemporalUNet, ACT),
])
def test_shapes(kind, backbone, cls, x_dim):
    g = torch.Generator().manual_seed(0)
    m = _build(kind, backbone)
    assert isinstance(m, cls)
    cond = {key: v for key, v in _cond(3, g).items() if key in m.cond_keys}
    k = torch.tensor([0, 7, 199])
    for h in (H, 3):  # the built horizon and a shorter planning horizon
        x = torch.randn(3, h, x_dim, generator=g)
        assert m(x, k, cond).shape == (3, h, x_dim)
    with pytest.raises(ValueError):
        m(torch.randn(3, H + 1, x_dim), k, cond)


def test_paper_config_builds():
    m = build_model(ModelConfig(), obs_dim=39, act_dim=4, horizon=32, history=2, prompt_len=20,
                    num_tasks=50)
    assert m.pos_emb.shape == (1, 20 + 1 + 1 + 2 + 32, 256)
    assert len(m.transformer.blocks) == 6 and m.transformer.blocks[0].attn.n_head == 4


def test_return_dropout_rate():
    g = torch.Generator().manual_seed(0)
    for p in (0.25, 0.5):
        flags = sample_return_drop(200_000, p, generator=g)
        assert flags.dtype == torch.bool and flags.shape == (200_000,)
        assert flags.float().mean().item() == pytest.approx(p, abs=0.005)
    assert not sample_return_drop(1000, 0.0, generator=g).any()
    with pytest.raises(ValueError):
        sample_return_drop(10, 1.0)


@pytest.mark.parametrize("backbone", ["gpt2", "unet"])
def test_dropped_return_is_the_null_condition(backbone):
    g = torch.Generator().manual_seed(1)
    m = _build("mtdiff-p", backbone)
    cond = _cond(4, g)
    x, k = torch.randn(4, H, ACT, generator=g), torch.tensor([3, 3, 50, 50])
    drop = torch.tensor([True, False, True, False])
    eps = m(x, k, cond, drop)
    no_r = {key: v for key, v in cond.items() if key != keys.BATCH_RETURN}
    null = m(x, k, no_r)  # no return at all = every sample unconditional
    torch.testing.assert_close(eps[drop], null[drop])
    assert not torch.allclose(eps[~drop], null[~drop])
    other_r = {**cond, keys.BATCH_RETURN: cond[keys.BATCH_RETURN] + 1.0}
    torch.testing.assert_close(m(x, k, other_r, drop)[drop], eps[drop])  # R is really ignored


def test_prompt_and_task_id_condition_the_output():
    g = torch.Generator().manual_seed(2)
    x, k = torch.randn(2, H, ACT, generator=g), torch.tensor([5, 5])
    cond = _cond(2, g)
    m = _build("mtdiff-p")
    swapped = {**cond, keys.BATCH_PROMPT: cond[keys.BATCH_PROMPT].flip(0)}
    assert not torch.allclose(m(x, k, cond), m(x, k, swapped))
    m = _build("mtdiff-p-onehot")
    other = {**cond, keys.BATCH_TASK_ID: (cond[keys.BATCH_TASK_ID] + 1) % TASKS}
    assert not torch.allclose(m(x, k, cond), m(x, k, other))


@pytest.mark.parametrize("causal", [True, False])
def test_math_and_sdpa_attention_agree(causal):
    g = torch.Generator().manual_seed(3)
    m = _build("mtdiff-p", causal=causal)
    x, k, cond = torch.randn(3, H, ACT, generator=g), torch.tensor([1, 2, 3]), _cond(3, g)
    m.set_attn_impl("math")
    a = m(x, k, cond)
    m.set_attn_impl("sdpa")
    torch.testing.assert_close(m(x, k, cond), a, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError):
        m.set_attn_impl("flash")
    # "auto": math on CPU under bf16 autocast, sdpa in fp32; both agree with the fp32 result.
    m.set_attn_impl("auto")
    attn = m.transformer.blocks[0].attn
    assert attn._impl(torch.zeros(1, dtype=torch.bfloat16)) == "math"
    assert attn._impl(torch.zeros(1)) == "sdpa"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x, k, cond)
    torch.testing.assert_close(low.float(), a, atol=0.1, rtol=0.1)


def test_causal_mask_hides_later_actions():
    g = torch.Generator().manual_seed(4)
    x, k, cond = torch.randn(2, H, ACT, generator=g), torch.tensor([9, 9]), _cond(2, g)
    x2 = x.clone()
    x2[:, -1] += 1.0  # change the last action token only
    causal, bidir = _build("mtdiff-p", causal=True), _build("mtdiff-p", causal=False)
    torch.testing.assert_close(causal(x, k, cond)[:, :-1], causal(x2, k, cond)[:, :-1])
    assert not torch.allclose(bidir(x, k, cond)[:, 0], bidir(x2, k, cond)[:, 0])


def _project_imports(module: str) -> set[str]:
    """mtdiff.* modules `module` imports (statically, transitively): every import in
    mtdiff.models files, module-level imports elsewhere (lazy imports there don't load)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        tree = ast.parse(Path(spec.origin).read_text())
        nodes = ast.walk(tree) if name.startswith("mtdiff.models") else iter(tree.body)
        for node in nodes:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            todo += [n for n in names if n.startswith("mtdiff")]
    return seen


def test_models_do_not_import_diffusion():
    imported = _project_imports("mtdiff.models")
    assert "mtdiff.models.mtdiff" in imported
    assert not any(n.startswith("mtdiff.diffusion") for n in imported)


def test_overfit_two_tasks_by_prompt():
    """Two tasks, different prompts, constant different actions: sampling follows the prompt."""
    from mtdiff.diffusion import DDPMSampler, DiffusionSchedule, guided_model_fn, sample

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    obs, act, h, hist, j = 3, 2, 4, 2, 3
    sched = DiffusionSchedule.vp(20)
    m = MTDiffP(obs_dim=obs, act_dim=act, horizon=h, history=hist, prompt_len=j,
                gpt=GPTConfig(d_model=32, n_layer=2, n_head=2, dropout=0.0))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    targets = torch.tensor([[0.8, -0.5], [-0.8, 0.5]])  # per-task action, gap 1.6 / 1.0
    # Prompt patterns that differ in shape (f_P starts with a LayerNorm, so a constant
    # offset alone would be normalised away).
    patterns = torch.tensor([[1.0, -1.0, 0.5, 0.0, 1.0], [-1.0, 0.0, 1.0, 1.0, -0.5]])

    def batch(n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        task = torch.randint(0, 2, (n,), generator=g)
        prompt = patterns[task].view(n, 1, -1).expand(n, j, -1)
        return task, {
            keys.BATCH_PROMPT: prompt + 0.1 * torch.randn(n, j, obs + act, generator=g),
            keys.BATCH_HISTORY: 0.1 * torch.randn(n, hist, obs, generator=g),
            keys.BATCH_RETURN: torch.ones(n, 1),
        }

    for _ in range(300):
        task, cond = batch(64)
        x0 = targets[task].view(64, 1, act).expand(64, h, act)
        k = sched.sample_steps(64, generator=g)
        noise = torch.randn(x0.shape, generator=g)
        eps = m(sched.add_noise(x0, noise, k), k, cond, sample_return_drop(64, 0.25, generator=g))
        loss = sched.loss(eps, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05

    m.eval()
    task, cond = batch(32)
    sampler = DDPMSampler(sched, temperature=0.5)  # paper: all K steps, β = 0.5, α = 1.2
    out = sample(guided_model_fn(m, cond, 1.2), (32, h, act), sampler, generator=g)
    err = (out - targets[task].view(32, 1, act)).abs()
    assert err.mean().item() < 0.1 and err.max().item() < 0.4
