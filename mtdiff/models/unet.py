"""Temporal 1-D U-Net noise model: the backbone ablation of paper App. C (MTDiff-P only).

Following App. C: a temporal U-Net in the style of Diffuser (Janner et al. 2022) over the
action sequence, the prompt encoded by a temporal convolutional network (TCN, Bai et al.
2018: causal dilated residual blocks) into one embedding z_p, and the conditions
(timestep, z_p, history, return) injected into every residual block, as Decision
Diffuser does. Same call signature and cond keys as `MTDiffP`
(or `MTDiffPOneHot` with `onehot=True`), so training and planning code do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mtdiff import keys
from mtdiff.models.embedders import ReturnEmbedder, TimestepEmbedder, mlp


class Conv1dBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish: (B, C_in, H) -> (B, C_out, H)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 5, groups: int = 8) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2),
                                   nn.GroupNorm(min(groups, c_out), c_out), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H) -> (B, C_out, H)."""
        return self.block(x)


class ResidualTemporalBlock(nn.Module):
    """Two conv blocks with the condition embedding added in between, plus a skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = Conv1dBlock(c_in, c_out), Conv1dBlock(c_out, c_out)
        self.emb = nn.Sequential(nn.Mish(), nn.Linear(emb_dim, c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, H), emb: (B, E) -> (B, C_out, H)."""
        h = self.conv1(x) + self.emb(emb).unsqueeze(-1)  # (B, C_out, H) + (B, C_out, 1)
        return self.conv2(h) + self.skip(x)


class TCNBlock(nn.Module):
    """A residual block of the TCN (Bai et al. 2018, Fig. 1b): two causal dilated
    convolutions with weight normalisation, ReLU and dropout, plus the (1x1) skip."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int,
                 dropout: float) -> None:
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm
        self.pad = (kernel - 1) * dilation  # left padding only: step j sees steps <= j
        self.conv1 = wn(nn.Conv1d(c_in, c_out, kernel, dilation=dilation))
        self.conv2 = wn(nn.Conv1d(c_out, c_out, kernel, dilation=dilation))
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C_in, J) -> (B, C_out, J)."""
        h = self.drop(F.relu(self.conv1(F.pad(x, (self.pad, 0)))))
        h = self.drop(F.relu(self.conv2(F.pad(h, (self.pad, 0)))))
        return F.relu(h + self.skip(x))


class PromptTCN(nn.Module):
    """App. C: "a Temporal Convolutional Network (TCN) [4] to encode the prompt into an
    embedding z_p". Prompt Z (B, J, obs + act) -> z_p (B, dim).

    TCN (Bai et al. 2018): residual blocks of causal convolutions (kernel 3) with
    dilations 1, 2, 4, ..., as many as make the receptive field cover all J steps; the
    output at the last step, which sees the whole prompt, is z_p (their sequence-level
    read-out), after a linear layer.
    """

    def __init__(self, in_dim: int, dim: int, prompt_len: int, *, kernel: int = 3,
                 dropout: float = 0.0) -> None:
        super().__init__()
        levels = 1
        while 1 + 2 * (kernel - 1) * (2 ** levels - 1) < prompt_len:
            levels += 1
        self.receptive_field = 1 + 2 * (kernel - 1) * (2 ** levels - 1)
        self.blocks = nn.Sequential(*[TCNBlock(in_dim if i == 0 else dim, dim, kernel, 2 ** i,
                                               dropout) for i in range(levels)])
        self.out = nn.Linear(dim, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, J, in_dim) -> (B, dim)."""
        h = self.blocks(z.transpose(1, 2))  # (B, in_dim, J) -> (B, dim, J)
        return self.out(h[:, :, -1])  # the last step: (B, dim)


class TemporalUNet(nn.Module):
    """ε_θ(actions, k, [Z or task id, history, R]) with a temporal U-Net: (B, H, act_dim).

    dim: channels at the top level (dim_mults scale the lower ones). H need not be a
    multiple of 2^levels: x is zero-padded on the right and the output cropped.
    """

    x_key = keys.BATCH_ACTIONS
    uses_return = True

    def __init__(self, *, obs_dim: int, act_dim: int, horizon: int, history: int, prompt_len: int,
                 num_tasks: int, dim: int = 64, dim_mults: tuple[int, ...] = (1, 2, 4),
                 onehot: bool = False, dropout: float = 0.0,
                 prompt_dim: int | None = None) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.horizon = obs_dim, act_dim, horizon
        self.history, self.prompt_len, self.onehot = history, prompt_len, onehot
        self.cond_keys = ((keys.BATCH_TASK_ID if onehot else keys.BATCH_PROMPT),
                          keys.BATCH_HISTORY, keys.BATCH_RETURN)
        self.time_embed = TimestepEmbedder(dim)  # (B, 1, dim)
        if onehot:
            self.task_embed = nn.Embedding(num_tasks, dim)
        else:
            self.prompt_embed = PromptTCN(prompt_dim or obs_dim + act_dim, dim, prompt_len,
                                          dropout=dropout)
        self.history_embed = mlp(history * obs_dim, dim, layers=3, hidden=2 * dim)
        self.return_embed = ReturnEmbedder(dim)
        emb = 4 * dim  # [t, z_p, history, R] concatenated
        chans = [dim * m for m in dim_mults]
        self.down = nn.ModuleList()
        c_prev = act_dim
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            self.down.append(nn.ModuleList([
                ResidualTemporalBlock(c_prev, c, emb), ResidualTemporalBlock(c, c, emb),
                nn.Identity() if last else nn.Conv1d(c, c, 3, stride=2, padding=1)]))
            c_prev = c
        self.mid = nn.ModuleList([ResidualTemporalBlock(c_prev, c_prev, emb),
                                  ResidualTemporalBlock(c_prev, c_prev, emb)])
        self.up = nn.ModuleList()
        for c_out, c_in in zip(reversed(chans[:-1]), reversed(chans[1:]), strict=True):
            self.up.append(nn.ModuleList([
                ResidualTemporalBlock(2 * c_in, c_out, emb),
                ResidualTemporalBlock(c_out, c_out, emb),
                nn.ConvTranspose1d(c_out, c_out, 4, stride=2, padding=1)]))
        self.final = nn.Sequential(Conv1dBlock(dim, dim), nn.Conv1d(dim, act_dim, 1))
        self._factor = 2 ** (len(chans) - 1)

    def forward(self, x: torch.Tensor, k: torch.Tensor, cond: dict[str, torch.Tensor],
                drop_return: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, act_dim), k: (B,) int64, cond as `MTDiffP` -> eps (B, H, act_dim)."""
        B, H, _ = x.shape
        if H > self.horizon or x.shape[-1] != self.act_dim:
            raise ValueError(f"x must be (B, <= {self.horizon}, {self.act_dim}), "
                             f"got {tuple(x.shape)}")
        h_t = self.time_embed(k).squeeze(1)  # (B, dim)
        if self.onehot:
            z = self.task_embed(cond[keys.BATCH_TASK_ID].long().reshape(B))  # (B, dim)
        else:
            z = self.prompt_embed(cond[keys.BATCH_PROMPT])  # (B, dim)
        hist = self.history_embed(cond[keys.BATCH_HISTORY].reshape(B, -1))  # (B, dim)
        keep = None if drop_return is None else ~drop_return.bool()
        h_r = self.return_embed(cond.get(keys.BATCH_RETURN), keep, batch_size=B, like=x)
        emb = torch.cat([h_t, z, hist, h_r.squeeze(1)], dim=-1)  # (B, 4 dim)

        pad = (-H) % self._factor
        h = F.pad(x.transpose(1, 2), (0, pad))  # (B, act_dim, H + pad)
        skips = []
        for res1, res2, down in self.down:  # type: ignore[misc]
            h = res2(res1(h, emb), emb)
            skips.append(h)
            h = down(h)  # (B, C, H / 2) except at the bottom
        h = self.mid[1](self.mid[0](h, emb), emb)
        for res1, res2, up in self.up:  # type: ignore[misc]
            # Bottom level first; as in Diffuser, the top level's skip is left unused.
            h = torch.cat([h, skips.pop()], dim=1)  # (B, 2 C, H_level)
            h = up(res2(res1(h, emb), emb))  # (B, C', 2 H_level)
        out = self.final(h)  # (B, act_dim, H + pad)
        return out[:, :, :H].transpose(1, 2)  # (B, H, act_dim)
