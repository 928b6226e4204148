"""FLOPs of the project's networks, from a config's sizes alone (no model is built): what
the cost model (`mtdiff.experiment.workload`) prices a training step or a network call by.

Counted: the matmuls (and convolutions) of a forward pass per sample; a training step is
3x its forward (forward + backward). The GPT-2 blocks: 12 d^2 weights per token and layer
and attention's 2 T^2 d; the token layouts of `mtdiff.models.mtdiff` and
`mtdiff.baselines.dt`; the U-Net's convolutions (`mtdiff.models.unet`, dim = d_model / 4);
the baselines' 3-layer MLPs; a SAC and a TD3-BC update. For the paper-sized MTDiff-P this
gives 1.72 GFLOP per sample and training step, against 1.75 by torch's FlopCounterMode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mtdiff.config import Config
from mtdiff.methods import method_of_kind


def mlp_flops(sizes: list[int]) -> float:
    """Forward FLOPs of an MLP with these layer widths, per sample."""
    return 2.0 * sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def gpt2_flops(d: int, n_layer: int, tokens: int) -> float:
    """Forward FLOPs of the GPT-2 blocks on `tokens` tokens: 12 d^2 weights per token and
    layer (QKV, projection, 4x MLP) and attention's 2 T^2 d."""
    return n_layer * (24.0 * tokens * d * d + 4.0 * tokens * tokens * d)


def _unet_flops(d: int, horizon: int, act_dim: int, prompt_len: int) -> float:
    dim = max(1, d // 4)  # `build_model`: dim = d_model // 4, dim_mults (1, 2, 4)
    chans = [dim, 2 * dim, 4 * dim]

    def res(ci: int, co: int, h: float) -> float:  # two k=5 convs and the 1x1 skip
        return 2.0 * h * (5 * ci * co + 5 * co * co + (ci * co if ci != co else 0))

    f, c_prev, h, hs = 0.0, act_dim, float(horizon), []
    for i, c in enumerate(chans):
        f += res(c_prev, c, h) + res(c, c, h)
        hs.append(h)
        if i < len(chans) - 1:
            h = math.ceil(h / 2)
            f += 2.0 * h * 3 * c * c
        c_prev = c
    f += 2 * res(c_prev, c_prev, h)
    for c_out, c_in, hh in zip(reversed(chans[:-1]), reversed(chans[1:]), reversed(hs[:-1]),
                               strict=True):
        f += res(2 * c_in, c_out, hh) + res(c_out, c_out, hh) + 2.0 * hh * 4 * c_in * c_in
    return f + 2.0 * prompt_len * 2 * 3 * dim * dim * 3  # the prompt's TCN


@dataclass(frozen=True)
class Net:
    """A job's network: its family (which calibrated rate prices it) and forward FLOPs
    per sample in training and per row of a policy call."""

    family: str  # "gpt2" | "unet" | "dt" | "mlp"
    train_flops: float  # forward + backward, per sample
    call_flops: float  # one forward, per row (a denoiser or policy call)
    diffusion: bool
    size: str = ""  # "d128-l3": a calibration's line for this size, where it has one


def network(cfg: Config, suite: str, obs_dim: int, act_dim: int, n_tasks: int) -> Net:
    """The network `cfg.model.kind` trains on `suite`'s data (`obs_dim`, `act_dim`,
    `n_tasks` training tasks), sizes from the config. MTDiff's own models are priced here;
    every other method says its cost in its own file (`Method.network`)."""
    m, dt = cfg.model, cfg.data
    method = method_of_kind(m.kind, m.backbone)
    if method.network is not None:
        return method.load("network")(cfg, suite, obs_dim, act_dim, n_tasks)
    od, ad, d = obs_dim, act_dim, m.d_model
    L, H, J = dt.history_for(suite), dt.horizon, dt.prompt_len
    if m.backbone == "unet":
        f = _unet_flops(d, H, ad, J) + mlp_flops([L * od, 2 * d // 4, d // 4])
        return Net("unet", 3 * f, f, True, f"d{d}")
    if m.kind == "mtdiff-s":
        cond, x_dim = J + 1, od + ad + 1
    else:
        cond, x_dim = (1 if m.kind == "mtdiff-p-onehot" else J) + 2 + L, ad
    T = cond + H
    f = gpt2_flops(d, m.n_layer, T) + T * mlp_flops([od + ad, 2 * d, d]) \
        + H * mlp_flops([d, 2 * d, x_dim])
    return Net("gpt2", 3 * f, f, True, f"d{d}-l{m.n_layer}")


def sac_update_flops(cfg: Config, od: int, ad: int) -> float:
    """FLOPs of one SAC update at `cfg.sac`'s widths and batch."""
    h = cfg.sac.hidden
    actor, q = mlp_flops([od, h, h, 2 * ad]), mlp_flops([od + ad, h, h, 1])
    # target (actor + twin Q, no grad), critics fwd+bwd, policy through the critics
    return cfg.sac.batch_size * (actor + 2 * q + 3 * 2 * q + 3 * (actor + 2 * q))


def td3bc_update_flops(cfg: Config, od: int, ad: int) -> float:
    """FLOPs of one TD3-BC update at `cfg.offline`'s widths and batch."""
    o = cfg.offline
    actor, q = mlp_flops([od, o.hidden, o.hidden, ad]), mlp_flops([od + ad, o.hidden,
                                                                     o.hidden, 1])
    # critics every update (+ target actor and critics), the actor every policy_delay
    return o.batch_size * (3 * 2 * q + actor + 2 * q + 3 * (actor + q) / o.policy_delay)
