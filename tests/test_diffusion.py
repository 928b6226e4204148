"""Diffusion maths: schedule, forward noising, posterior, loss, guidance, samplers vs diffusers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtdiff.config import DiffusionConfig
from mtdiff.diffusion import (
    DDIMSampler,
    DDPMSampler,
    DiffusionSchedule,
    DPMSolverSampler,
    cfg_mix,
    diffusion_loss,
    guided_model_fn,
    make_sampler,
    sample,
    trailing_timesteps,
    vp_beta_schedule,
)

K = 200


@pytest.fixture(scope="module")
def sched() -> DiffusionSchedule:
    return DiffusionSchedule.vp(K)


# --- schedule --------------------------------------------------------------------------


def test_vp_schedule_matches_paper_formula():
    betas = vp_beta_schedule(K, 0.1, 10.0)
    assert betas.shape == (K,) and betas.dtype == torch.float64
    # By hand: β_k = 1 - exp(-(0.1/200 + 0.5 * 9.9 * (2k - 1) / 200²)).
    # k = 1:   exponent 0.0005 + 0.00012375 = 0.00062375
    # k = 100: exponent 0.0005 + 0.02462625 = 0.02512625
    # k = 200: exponent 0.0005 + 0.04937625 = 0.04987625
    assert betas[0].item() == pytest.approx(0.0006235555084088684, abs=1e-15)
    assert betas[99].item() == pytest.approx(0.02481321307562523, abs=1e-15)
    assert betas[199].item() == pytest.approx(0.0486528535741102, abs=1e-15)
    # Σ_k (2k - 1) / K² = 1, so ᾱ_K = exp(-(β_min + (β_max - β_min) / 2)) = exp(-5.05).
    s = DiffusionSchedule(betas)
    assert s.alphas_cumprod64[-1].item() == pytest.approx(0.006409333446256383, rel=1e-10)
    assert s.alphas_cumprod[-1].item() == pytest.approx(math.exp(-5.05), rel=1e-6)
    assert torch.all(betas[1:] > betas[:-1])


def test_schedule_from_config_and_invalid_betas():
    s = DiffusionSchedule.from_config(DiffusionConfig(num_steps=20, sample_steps=20))
    assert s.num_steps == 20 and s.betas.dtype == torch.float32
    with pytest.raises(ValueError):
        DiffusionSchedule(torch.tensor([0.1, 1.5]))


def test_forward_noising_statistics(sched):
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.full((n, 1, 1), 1.5)
    for k in (0, 99, 199):
        kk = torch.full((n,), k)
        xk = sched.add_noise(x0, torch.randn(x0.shape, generator=g), kk)
        abar = sched.alphas_cumprod64[k].item()
        assert xk.mean().item() == pytest.approx(math.sqrt(abar) * 1.5, abs=0.01)
        assert xk.var().item() == pytest.approx(1 - abar, abs=0.01 * max(1 - abar, 0.05))


def test_posterior_matches_bayes_and_paper_update(sched):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 3, 2, generator=g)
    xk = torch.randn(4, 3, 2, generator=g)
    k = torch.tensor([1, 50, 120, 199])
    mean, var = sched.q_posterior(x0, xk, k)
    b, abar = sched.betas64, sched.alphas_cumprod64
    for i, ki in enumerate(k.tolist()):
        # Bayes: q(x_{k-1}|x_0) = N(√ᾱ_{k-1} x_0, 1-ᾱ_{k-1}) times
        # q(x_k|x_{k-1}) = N(√α_k x_{k-1}, β_k).
        ap, a, bk = abar[ki - 1].item(), 1 - b[ki].item(), b[ki].item()
        prec = 1 / (1 - ap) + a / bk
        want_mean = (math.sqrt(ap) * x0[i] / (1 - ap) + math.sqrt(a) * xk[i] / bk) / prec
        torch.testing.assert_close(mean[i], want_mean, atol=1e-5, rtol=1e-4)
        assert var[i].item() == pytest.approx(1 / prec, rel=1e-5)
    # With x̂_0 from ε the posterior mean is the paper's §2.2 update (1/√α_k)(x_k - β_k/√(1-ᾱ_k) ε).
    eps = torch.randn(4, 3, 2, generator=g)
    m, _ = sched.q_posterior(sched.predict_x0(xk, eps, k), xk, k)
    bb = b[k].float().view(-1, 1, 1)
    ab = abar[k].float().view(-1, 1, 1)
    torch.testing.assert_close(m, (xk - bb / (1 - ab).sqrt() * eps) / (1 - bb).sqrt(),
                               atol=1e-4, rtol=1e-4)
    # x̂_0 inverts the forward noising exactly.
    torch.testing.assert_close(sched.predict_x0(sched.add_noise(x0, eps, k), eps, k), x0,
                               atol=1e-4, rtol=1e-4)


def test_loss_mask_first_weight_and_huber():
    eps = torch.tensor([[[1.0], [2.0]], [[0.0], [4.0]]])  # (2, 2, 1)
    noise = torch.zeros_like(eps)
    assert diffusion_loss(eps, noise).item() == pytest.approx((1 + 4 + 0 + 16) / 4)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert diffusion_loss(eps, noise, mask).item() == pytest.approx((1 + 0) / 2)
    assert diffusion_loss(eps, noise, first_weight=10.0).item() == pytest.approx(
        (10 + 4 + 0 + 16) / 4)
    want = F.huber_loss(eps, noise)
    assert diffusion_loss(eps, noise, kind="huber").item() == pytest.approx(want.item())


# --- guidance --------------------------------------------------------------------------


def test_cfg_mix_and_guided_model_fn():
    assert cfg_mix(torch.tensor(1.0), torch.tensor(3.0), 1.2).item() == pytest.approx(3.4)
    assert cfg_mix(torch.tensor(1.0), torch.tensor(3.0), 0.0).item() == pytest.approx(1.0)

    def model(x, k, cond, drop_return=None):  # ε = x + R (conditional) or x (null)
        r = cond["returns"].view(-1, 1, 1)
        keep = 1.0 if drop_return is None else (~drop_return).float().view(-1, 1, 1)
        return x + keep * r + 0 * k.view(-1, 1, 1)

    x, k = torch.zeros(3, 2, 1), torch.zeros(3, dtype=torch.long)
    cond = {"returns": torch.tensor([[1.0], [2.0], [3.0]])}
    eps = guided_model_fn(model, cond, 1.2)(x, k)
    torch.testing.assert_close(eps[:, 0, 0], 1.2 * torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(guided_model_fn(model, cond, 0.0)(x, k), x)
    torch.testing.assert_close(guided_model_fn(model, cond, None)(x, k)[:, 0, 0],
                               torch.tensor([1.0, 2.0, 3.0]))


# --- samplers --------------------------------------------------------------------------


def test_trailing_timesteps():
    assert trailing_timesteps(200, 200) == list(range(199, -1, -1))
    assert trailing_timesteps(200, 4) == [199, 149, 99, 49]
    with pytest.raises(ValueError):
        trailing_timesteps(10, 11)


def test_low_temperature_step_variance(sched):
    s = DDPMSampler(sched, temperature=0.5)
    assert s.init_noise_sigma == pytest.approx(math.sqrt(0.5))
    x = torch.full((100_000, 1, 1), 0.3)
    g = torch.Generator().manual_seed(2)
    for k in (150, 10):
        out = s.step(torch.zeros_like(x), k, x, generator=g).prev_sample
        want = 0.5 * sched.posterior_variance[k].item()  # β Σ_k
        assert out.var().item() == pytest.approx(want, rel=0.03)
        mean, _ = sched.q_posterior(sched.predict_x0(x[:1], torch.zeros_like(x[:1]),
                                                     torch.tensor([k])), x[:1], torch.tensor([k]))
        assert out.mean().item() == pytest.approx(mean.item(), abs=3 * math.sqrt(want / 1e5) + 1e-6)
    out = s.step(torch.zeros_like(x), 0, x, generator=g).prev_sample  # last step: no noise
    assert out.var().item() < 1e-12


def test_ddim_eta0_is_deterministic(sched):
    s = DDIMSampler(sched, 20, eta=0.0)
    x = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(3))

    def model_fn(x, k):
        return 0.5 * x + 0.01 * k.view(-1, 1, 1)

    a = sample(model_fn, x.shape, s, generator=torch.Generator().manual_seed(0), x_init=x)
    b = sample(model_fn, x.shape, s, generator=torch.Generator().manual_seed(99), x_init=x)
    assert torch.equal(a, b)


@pytest.mark.parametrize("cls,kw,n", [
    (DDPMSampler, {}, 200), (DDIMSampler, {"eta": 0.0}, 20), (DDIMSampler, {"eta": 0.7}, 20),
    (DPMSolverSampler, {}, 20), (DPMSolverSampler, {"temperature": 0.5}, 8),
])
def test_oracle_model_recovers_point_mass(sched, cls, kw, n):
    # For data = a single point x*, the exact ε is (x_k - √ᾱ_k x*) / √(1 - ᾱ_k).
    x_star = torch.tensor([0.7, -1.2, 0.1]).view(1, 1, 3)
    abar = sched.alphas_cumprod

    def model_fn(x, k):
        a = abar[k].view(-1, 1, 1)
        return (x - a.sqrt() * x_star) / (1 - a).sqrt()

    s = cls(sched, n, **kw)
    out = sample(model_fn, (16, 2, 3), s, generator=torch.Generator().manual_seed(4))
    assert (out - x_star).abs().max().item() < 1e-3


def _eps_fn(c: torch.Tensor):
    def fn(x: torch.Tensor, t: int) -> torch.Tensor:
        return 0.4 * x + math.sin(t / 17.0) * c
    return fn


def _run_pair(ours, theirs, x, eps_fn, noises=None, **their_kw):
    theirs_x, ours_x = x.clone(), x.clone()
    assert list(theirs.timesteps.tolist()) == ours.timesteps
    for i, t in enumerate(ours.timesteps):
        kw = {} if noises is None else {"noise": noises[i]}
        ours_x = ours.step(eps_fn(ours_x, t), t, ours_x, **kw).prev_sample
        tkw = dict(their_kw) if noises is None else {"variance_noise": noises[i], **their_kw}
        theirs_x = theirs.step(eps_fn(theirs_x, t), t, theirs_x, **tkw).prev_sample
        torch.testing.assert_close(ours_x, theirs_x, atol=2e-4, rtol=2e-4)
    return ours_x


def test_ddim_matches_diffusers(sched):
    diffusers = pytest.importorskip("diffusers")
    g = torch.Generator().manual_seed(5)
    x, c = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    for eta in (0.0, 0.5):
        theirs = diffusers.DDIMScheduler(num_train_timesteps=K, trained_betas=sched.betas64.numpy(),
                                         clip_sample=False, set_alpha_to_one=True,
                                         timestep_spacing="trailing")
        theirs.set_timesteps(20)
        ours = DDIMSampler(sched, 20, eta=eta)
        noises = [torch.randn(x.shape, generator=g) for _ in range(20)]
        # diffusers' DDIM takes eta per step call
        _run_pair(ours, theirs, x, _eps_fn(c), noises if eta > 0 else None, eta=eta)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' own numpy 2 warning
@pytest.mark.parametrize("n", [10, 25])
def test_dpmsolver_matches_diffusers(sched, n):
    diffusers = pytest.importorskip("diffusers")
    g = torch.Generator().manual_seed(6)
    x, c = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    theirs = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=K, trained_betas=sched.betas64.numpy(), solver_order=2,
        algorithm_type="dpmsolver++", solver_type="midpoint", lower_order_final=True,
        final_sigmas_type="zero", timestep_spacing="trailing")
    theirs.set_timesteps(n)
    _run_pair(DPMSolverSampler(sched, n), theirs, x, _eps_fn(c))


def test_ddpm_matches_diffusers(sched):
    diffusers = pytest.importorskip("diffusers")
    g = torch.Generator().manual_seed(7)
    x, c = torch.randn(4, 6, 3, generator=g), torch.randn(4, 6, 3, generator=g)
    theirs = diffusers.DDPMScheduler(num_train_timesteps=K, trained_betas=sched.betas64.numpy(),
                                     variance_type="fixed_small", clip_sample=False,
                                     timestep_spacing="trailing")
    theirs.set_timesteps(K)
    ours = DDPMSampler(sched, K)
    eps_fn = _eps_fn(c)
    a, b = x.clone(), x.clone()
    ga, gb = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    for t in ours.timesteps:  # same noise stream: one randn of x's shape per step with t > 0
        a = ours.step(eps_fn(a, t), t, a, generator=ga).prev_sample
        b = theirs.step(eps_fn(b, t), t, b, generator=gb).prev_sample
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_make_sampler_from_config(sched):
    cfg = DiffusionConfig(sampler="dpmsolver", sample_steps=10, temperature=0.5)
    s = make_sampler(cfg, sched)
    assert isinstance(s, DPMSolverSampler) and len(s.timesteps) == 10
    assert s.temperature == 0.5
    s = make_sampler(DiffusionConfig(), temperature=1.0)
    assert isinstance(s, DDPMSampler) and len(s.timesteps) == 200 and s.init_noise_sigma == 1.0


def test_objective_defaults_are_the_authors_and_weight_only_planned_actions():
    """Where the paper is silent the authors' objective is the default (Huber, the executed
    action weighted 10, min-max to [-1, 1], x0 clipped); the weight applies to planners'
    action sequences, not MTDiff-S's transitions."""
    from mtdiff import keys
    from mtdiff.config import Config, ModelConfig, apply_overrides
    from mtdiff.diffusion import DiffusionSchedule
    from mtdiff.models import build_model
    from mtdiff.train.core import diffusion_step_loss

    cfg = Config()
    assert (cfg.train.loss, cfg.train.action_weight) == ("huber", 10.0)
    assert cfg.data.normalizer == "minmax" and cfg.diffusion.clip_denoised is True
    sched = DiffusionSchedule.from_config(cfg.diffusion)
    g = torch.Generator().manual_seed(0)
    B, H, obs, act, J, L = 4, 6, 5, 2, 4, 2
    batch = {keys.BATCH_ACTIONS: torch.randn(B, H, act, generator=g),
             keys.BATCH_TRANSITIONS: torch.randn(B, H, obs + act + 1, generator=g),
             keys.BATCH_PROMPT: torch.randn(B, J, obs + act, generator=g),
             keys.BATCH_HISTORY: torch.randn(B, L, obs, generator=g),
             keys.BATCH_RETURN: torch.rand(B, 1, generator=g)}

    def loss(kind: str, weight: float) -> float:
        c = apply_overrides(cfg, [f"train.action_weight={weight}"])
        torch.manual_seed(0)
        m = build_model(ModelConfig(kind=kind, d_model=32, n_layer=2, n_head=2), obs_dim=obs,
                        act_dim=act, horizon=H, history=L, prompt_len=J, num_tasks=2)
        torch.manual_seed(1)
        return diffusion_step_loss(m, sched, batch, c).item()

    assert loss("mtdiff-p", 10.0) > 1.5 * loss("mtdiff-p", 1.0)
    assert loss("mtdiff-s", 10.0) == pytest.approx(loss("mtdiff-s", 1.0))
