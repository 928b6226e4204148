"""MTDiff noise models ε_θ (paper §3.3, Fig. 3): embedders -> GPT-2 -> prediction head.

Token layouts (one token per environment step for prompt and history, so a prompt of J
steps is J tokens and a history of L states is L tokens; the (s, a) pair of a prompt
step is one token, as in the authors' code):

    MTDiff-P          [prompt (J), timestep (1), return (1), history (L), actions (H)]
                      h = LN(h_Ti * tokens + h_R + E_pos)
    MTDiff-P-onehot   [task (1),   timestep (1), return (1), history (L), actions (H)]
    MTDiff-S          [prompt (J), timestep (1), transitions (H)]
                      h = LN(h_Ti * tokens + E_pos)

The head reads only the last H outputs (the x tokens) and predicts ε with x's shape.
Because x comes last, a model built for horizon H also accepts any shorter horizon at
sampling time (the authors train with 32 and plan with 14): E_pos is sliced.

Attention is causal by default (GPT-2 / decision-transformer, as the authors): with the
condition first, every x token sees the whole condition (see `mtdiff.models.gpt2`). The
classifier-free "null" return is a zero mask on h_R (see `ReturnEmbedder`).

Every model has one call signature, `model(x, k, cond, drop_return=None) -> eps`, with
k the 0-based diffusion step (B,) int64 (index k stands for the paper's step k + 1) and
`cond` a dict keyed by the `mtdiff.keys` batch keys listed in `model.cond_keys`.
"""

from __future__ import annotations

import torch
from torch import nn

from mtdiff import keys
from mtdiff.config import ModelConfig
from mtdiff.models.embedders import ReturnEmbedder, TimestepEmbedder, mlp
from mtdiff.models.gpt2 import GPT2, AttnImpl, GPTConfig
from mtdiff.models.unet import TemporalUNet


def _checked_prompt(cond: dict[str, torch.Tensor], B: int, J: int, width: int) -> torch.Tensor:
    """cond[prompt], checked to be (B, J, width) (width: obs_dim + act_dim for a demo)."""
    z = cond[keys.BATCH_PROMPT]
    if z.shape != (B, J, width):
        raise ValueError(f"prompt must be (B, {J}, {width}), got {tuple(z.shape)}")
    return z


class _TokenNoiseModel(nn.Module):
    """Shared parts: timestep embedder, E_pos, input LayerNorm, GPT-2, head on the x tokens."""

    x_key: str = ""
    cond_keys: tuple[str, ...] = ()
    uses_return: bool = False

    def __init__(self, x_dim: int, horizon: int, n_cond_tokens: int, gpt: GPTConfig) -> None:
        super().__init__()
        d = gpt.d_model
        self.x_dim = x_dim
        self.horizon = horizon
        self.n_cond_tokens = n_cond_tokens
        n_tokens = n_cond_tokens + horizon
        if gpt.max_tokens < n_tokens:
            gpt = GPTConfig(**{**gpt.__dict__, "max_tokens": n_tokens})
        self.time_embed = TimestepEmbedder(d)  # f_Ti
        self.x_embed = mlp(x_dim, d, layers=2, hidden=2 * d)  # f_A or f_Tr
        self.pos_emb = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)  # E_pos
        self.ln_in = nn.LayerNorm(d)
        self.transformer = GPT2(gpt)
        self.head = mlp(d, x_dim, layers=2, hidden=2 * d)  # prediction head

    def _check_x(self, x: torch.Tensor) -> int:
        if x.ndim != 3 or x.shape[-1] != self.x_dim:
            raise ValueError(f"x must be (B, H, {self.x_dim}), got {tuple(x.shape)}")
        if x.shape[1] > self.horizon:
            raise ValueError(f"horizon {x.shape[1]} exceeds the built horizon {self.horizon}")
        return x.shape[1]

    def _denoise(self, cond_tokens: torch.Tensor, h_ti: torch.Tensor, x: torch.Tensor,
                 h_r: torch.Tensor | None) -> torch.Tensor:
        """cond_tokens (B, C, d) incl. h_Ti; x (B, H, x_dim); h_r (B, 1, d) -> eps (B, H, x_dim)."""
        H = x.shape[1]
        tokens = torch.cat([cond_tokens, self.x_embed(x)], dim=1)  # (B, C + H, d)
        T = tokens.shape[1]
        # Paper §3.3: the stacked tokens are multiplied by h_Ti (and shifted by h_R for -P).
        h = h_ti * tokens + self.pos_emb[:, :T]  # (B, T, d)
        if h_r is not None:
            h = h + h_r
        out = self.transformer(self.ln_in(h))  # (B, T, d)
        return self.head(out[:, -H:])  # x tokens only: (B, H, d) -> (B, H, x_dim)

    def set_attn_impl(self, impl: str) -> None:
        """Switch the backbone's attention implementation ("auto" | "sdpa" | "math")."""
        self.transformer.set_attn_impl(impl)  # type: ignore[arg-type]


class MTDiffP(_TokenNoiseModel):
    """MTDiff-P planner noise model: ε_θ(x_k = actions, k, y = [Z, s_{t-L+1..t}, R]).

    cond: `keys.BATCH_PROMPT` (B, J, prompt_dim), `keys.BATCH_HISTORY` (B, L, obs_dim),
    `keys.BATCH_RETURN` (B, 1) (optional: absent or None = unconditional for all samples).
    prompt_dim: obs_dim + act_dim for a demonstration prompt (default), the width of a
    layout token for a Maze2D layout prompt (`mtdiff.envs.maze2d_layout`, J = its cells).
    """

    x_key = keys.BATCH_ACTIONS
    cond_keys = (keys.BATCH_PROMPT, keys.BATCH_HISTORY, keys.BATCH_RETURN)
    uses_return = True

    def __init__(self, *, obs_dim: int, act_dim: int, horizon: int, history: int, prompt_len: int,
                 gpt: GPTConfig, prompt_dim: int | None = None) -> None:
        super().__init__(act_dim, horizon, self._n_prompt_tokens(prompt_len) + 2 + history, gpt)
        d = gpt.d_model
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.history, self.prompt_len = history, prompt_len
        self.prompt_dim = prompt_dim or obs_dim + act_dim
        self._build_prompt_embed(self.prompt_dim, d)
        self.history_embed = mlp(obs_dim, d, layers=3, hidden=2 * d)  # f_H
        self.return_embed = ReturnEmbedder(d)  # f_R

    @staticmethod
    def _n_prompt_tokens(prompt_len: int) -> int:
        return prompt_len

    def _build_prompt_embed(self, in_dim: int, d: int) -> None:
        self.prompt_embed = mlp(in_dim, d, layers=3, hidden=2 * d, layer_norm=True)  # f_P

    def _prompt_tokens(self, cond: dict[str, torch.Tensor], B: int) -> torch.Tensor:
        return self.prompt_embed(_checked_prompt(cond, B, self.prompt_len,
                                                 self.prompt_dim))  # (B, J, d)

    def forward(self, x: torch.Tensor, k: torch.Tensor, cond: dict[str, torch.Tensor],
                drop_return: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise in the action sequence.

        x: (B, H, act_dim) noisy actions x_k; k: (B,) int64 steps in [0, K);
        cond: see the class docstring; drop_return: (B,) bool, True = null return
        (training: `sample_return_drop`; CFG's unconditional branch: all True).
        Returns eps: (B, H, act_dim).
        """
        B = x.shape[0]
        self._check_x(x)
        hist = cond[keys.BATCH_HISTORY]
        if hist.shape != (B, self.history, self.obs_dim):
            raise ValueError(f"history must be (B, {self.history}, {self.obs_dim}), "
                             f"got {tuple(hist.shape)}")
        keep = None if drop_return is None else ~drop_return.bool()
        h_ti = self.time_embed(k)  # (B, 1, d)
        h_r = self.return_embed(cond.get(keys.BATCH_RETURN), keep, batch_size=B, like=h_ti)
        cond_tokens = torch.cat([
            self._prompt_tokens(cond, B),  # (B, J, d)
            h_ti,  # (B, 1, d)
            h_r,  # (B, 1, d)
            self.history_embed(hist),  # (B, L, d)
        ], dim=1)  # (B, J + 2 + L, d)
        return self._denoise(cond_tokens, h_ti, x, h_r)


class MTDiffPOneHot(MTDiffP):
    """MTDiff-P with a learned task-id embedding in place of the prompt (one token).

    cond: `keys.BATCH_TASK_ID` (B,) int64, `keys.BATCH_HISTORY`, `keys.BATCH_RETURN`.
    Cannot generalise to unseen tasks (paper §3.2); a baseline for the prompt.
    """

    cond_keys = (keys.BATCH_TASK_ID, keys.BATCH_HISTORY, keys.BATCH_RETURN)

    def __init__(self, *, obs_dim: int, act_dim: int, horizon: int, history: int, num_tasks: int,
                 gpt: GPTConfig) -> None:
        self.num_tasks = num_tasks
        super().__init__(obs_dim=obs_dim, act_dim=act_dim, horizon=horizon, history=history,
                         prompt_len=1, gpt=gpt)

    def _build_prompt_embed(self, in_dim: int, d: int) -> None:
        self.task_embed = nn.Embedding(self.num_tasks, d)

    def _prompt_tokens(self, cond: dict[str, torch.Tensor], B: int) -> torch.Tensor:
        task = cond[keys.BATCH_TASK_ID].long().reshape(B)
        return self.task_embed(task).unsqueeze(1)  # (B,) -> (B, 1, d)


class MTDiffS(_TokenNoiseModel):
    """MTDiff-S synthesizer noise model: ε_θ(x_k = (s, a, r) transitions, k, y = [Z]).

    cond: `keys.BATCH_PROMPT` (B, J, obs_dim + act_dim). No return, no guidance (eq. 11).
    """

    x_key = keys.BATCH_TRANSITIONS
    cond_keys = (keys.BATCH_PROMPT,)
    uses_return = False

    def __init__(self, *, obs_dim: int, act_dim: int, horizon: int, prompt_len: int,
                 gpt: GPTConfig) -> None:
        super().__init__(obs_dim + act_dim + 1, horizon, prompt_len + 1, gpt)
        d = gpt.d_model
        self.obs_dim, self.act_dim, self.prompt_len = obs_dim, act_dim, prompt_len
        self.prompt_embed = mlp(obs_dim + act_dim, d, layers=3, hidden=2 * d, layer_norm=True)

    def forward(self, x: torch.Tensor, k: torch.Tensor, cond: dict[str, torch.Tensor],
                drop_return: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, H, obs_dim + act_dim + 1) noisy transitions; k: (B,) int64 in [0, K);
        cond: {prompt}; drop_return is accepted for a uniform interface and ignored.
        Returns eps: (B, H, obs_dim + act_dim + 1).
        """
        B = x.shape[0]
        self._check_x(x)
        z = _checked_prompt(cond, B, self.prompt_len, self.obs_dim + self.act_dim)
        h_ti = self.time_embed(k)  # (B, 1, d)
        cond_tokens = torch.cat([self.prompt_embed(z), h_ti], dim=1)  # (B, J + 1, d)
        return self._denoise(cond_tokens, h_ti, x, None)


def build_model(model_cfg: ModelConfig, *, obs_dim: int, act_dim: int, horizon: int, history: int,
                prompt_len: int, num_tasks: int, attn_impl: AttnImpl = "auto",
                causal: bool = True, prompt_dim: int | None = None) -> nn.Module:
    """The noise model named by `model_cfg.kind` / `model_cfg.backbone`.

    horizon: H (the largest the model will see); history: L; prompt_len: J; num_tasks: the
    task count (used by the one-hot variant only); prompt_dim: width of a prompt token
    (None: obs_dim + act_dim, a demonstration; MTDiff-P only). `attn_impl` and `causal`
    are backbone options (see `mtdiff.models.gpt2`); the paper's model is causal.
    """
    if prompt_dim is not None and model_cfg.kind == "mtdiff-s":
        raise ValueError("MTDiff-S is prompted by demonstrations; prompt_dim is for MTDiff-P")
    if model_cfg.backbone == "unet":
        if model_cfg.kind == "mtdiff-s":
            raise ValueError("the U-Net ablation (App. C) is for MTDiff-P; use backbone='gpt2'")
        return TemporalUNet(obs_dim=obs_dim, act_dim=act_dim, horizon=horizon, history=history,
                            prompt_len=prompt_len, num_tasks=num_tasks, dim=model_cfg.d_model // 4,
                            onehot=model_cfg.kind == "mtdiff-p-onehot",
                            dropout=model_cfg.dropout, prompt_dim=prompt_dim)
    n_tokens = (1 if model_cfg.kind == "mtdiff-p-onehot" else prompt_len) + 2 + history + horizon
    gpt = GPTConfig(d_model=model_cfg.d_model, n_layer=model_cfg.n_layer, n_head=model_cfg.n_head,
                    dropout=model_cfg.dropout, max_tokens=n_tokens, causal=causal,
                    attn_impl=attn_impl)
    if model_cfg.kind == "mtdiff-p":
        return MTDiffP(obs_dim=obs_dim, act_dim=act_dim, horizon=horizon, history=history,
                       prompt_len=prompt_len, gpt=gpt, prompt_dim=prompt_dim)
    if model_cfg.kind == "mtdiff-p-onehot":
        return MTDiffPOneHot(obs_dim=obs_dim, act_dim=act_dim, horizon=horizon, history=history,
                             num_tasks=num_tasks, gpt=gpt)
    return MTDiffS(obs_dim=obs_dim, act_dim=act_dim, horizon=horizon, prompt_len=prompt_len,
                   gpt=gpt)
