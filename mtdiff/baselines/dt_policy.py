"""The Decision Transformers as a `mtdiff.eval.policy.Policy` (MT-DT and Prompt-DT).

Per environment the policy keeps the last K steps of (R, s, a, t), newest last. `act` runs
the model on them (the newest step's action slot holds zeros: the causal mask keeps a_t's
prediction from seeing it) and executes the prediction at the newest state; `observe`
lowers R by reward / the task's return range and appends the next step. Before K steps
the context is simply shorter, which equals the official DT's left padding with
attention mask 0. Environments that act together have taken the same number of steps,
so one model call serves them all (a mixed batch is split by context length).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff import keys
from mtdiff.baselines.common import load_trained
from mtdiff.baselines.dt import DecisionTransformer, build_dt
from mtdiff.data.prompts import load_prompts
from mtdiff.data.windows import checkpoint_return_info, resolve_target
from mtdiff.eval.policy import PolicyBase


class SequencePolicy(PolicyBase):
    """A trained `DecisionTransformer` acting for N environments (module docstring).

    target_return: R at the first step, on the rtg scale the model was trained on
    (undiscounted, task-max in [0, 1]: `mtdiff.data.windows`, "sequence" fields); None = that
    definition's own target, 1 (the task's best return in the data).
    Tasks without a known return range (an unseen Maze2D map) use the median range of
    the training tasks.
    """

    def __init__(self, model: DecisionTransformer, normalizer: Any, meta: dict[str, Any], *,
                 target_return: float | None = None,
                 device: str | torch.device = "cpu") -> None:
        prompts = None
        if model.prompt_len and Path(meta["prompts"]).exists():
            prompts = load_prompts(Path(meta["prompts"]).parent)
        super().__init__(meta["tasks"], prompts, meta["build"]["prompt_len"])
        self.conditioning = "prompt" if model.prompt_len else "task_id"
        self.model = model.to(device).eval().requires_grad_(False)
        self.nz = normalizer
        self.device = torch.device(device)
        self.target_return = resolve_target(checkpoint_return_info(meta), target_return)
        self.ranges: dict[str, float] = dict(meta["return_range"])
        self.default_range = float(np.median(list(self.ranges.values())))
        self.K = model.context
        self._begun = False

    def begin(self, obs: np.ndarray, *, prompts: np.ndarray | None,
              task_ids: np.ndarray | None, env_tasks: list[str] | None = None) -> None:
        """Start N episodes: the first step's (R = target, s_0, t = 0)."""
        obs = np.asarray(obs, np.float32)
        N, od, ad = len(obs), self.model.obs_dim, self.model.act_dim
        if self.conditioning == "task_id":
            if task_ids is None:
                raise ValueError("MT-DT conditions on task ids; give task_ids")
            self.task_ids = np.asarray(task_ids, np.int64)
            names = env_tasks or [self.tasks[i] for i in self.task_ids]
        else:
            if prompts is None:
                raise ValueError("Prompt-DT needs a prompt (N, J, obs+act) per environment")
            p = np.asarray(prompts, np.float32)
            self.prompt = np.concatenate([self.nz.normalize(keys.OBSERVATION, p[..., :od]),
                                          self.nz.normalize(keys.ACTION, p[..., od:])], -1)
            names = env_tasks or []
        self.range = np.array([self.ranges.get(t, self.default_range) for t in names]
                              if names else [self.default_range] * N, np.float32)  # (N,)
        self.s = np.zeros((N, self.K, od), np.float32)  # normalised states
        self.a = np.zeros((N, self.K, ad), np.float32)
        self.r = np.zeros((N, self.K, 1), np.float32)
        self.ts = np.zeros((N, self.K), np.int64)
        self.n = np.ones(N, np.int64)  # steps held (<= K)
        self.t = np.zeros(N, np.int64)  # the newest step's index in its episode
        self.s[:, 0] = self.nz.normalize(keys.OBSERVATION, obs)
        self.r[:, 0, 0] = self.target_return
        self._begun = True

    @torch.no_grad()
    def act(self, idx: np.ndarray) -> np.ndarray:
        """Actions (n, act_dim) for environments `idx` from their last <= K steps."""
        if not self._begun:
            raise RuntimeError("call begin() before act()")
        out = np.empty((len(idx), self.model.act_dim), np.float32)
        for k in np.unique(self.n[idx]):  # one group in a lockstep rollout
            sel = np.flatnonzero(self.n[idx] == k)
            e = idx[sel]

            def tt(x: np.ndarray) -> torch.Tensor:
                return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

            pred = self.model(
                tt(self.s[e, :k]), tt(self.a[e, :k]), tt(self.r[e, :k]), tt(self.ts[e, :k]),
                task_id=tt(self.task_ids[e]) if self.conditioning == "task_id" else None,
                prompt=tt(self.prompt[e]) if self.conditioning == "prompt" else None)
            a = np.clip(pred[:, -1].float().cpu().numpy(), -1.0, 1.0)  # at the newest state
            self.a[e, k - 1] = a
            out[sel] = a
        return out

    def teacher_force(self, idx: np.ndarray, actions: np.ndarray) -> None:
        """The actions taken at environments `idx`'s newest step, in place of the policy's
        own (replaying recorded steps: `mtdiff.eval.state_use`)."""
        self.a[idx, self.n[idx] - 1] = np.asarray(actions, np.float32)

    def observe(self, idx: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        """R -= r / range; append (R, s', t + 1) for environments `idx` (drop the oldest
        step once K are held)."""
        n = self.n[idx]
        R = self.r[idx, n - 1, 0] - np.asarray(rewards, np.float32) / self.range[idx]
        full = idx[n == self.K]
        for arr in (self.s, self.a, self.r, self.ts):  # shift the full windows left
            arr[full, :-1] = arr[full, 1:]
        pos = np.minimum(n, self.K - 1)
        self.t[idx] += 1
        self.s[idx, pos] = self.nz.normalize(keys.OBSERVATION, np.asarray(obs, np.float32))
        self.a[idx, pos] = 0.0
        self.r[idx, pos, 0] = R
        self.ts[idx, pos] = self.t[idx]
        self.n[idx] = np.minimum(n + 1, self.K)


def sequence_policy(path: str | Path, method: str, *, task_dim: bool, prompt: bool,
                    device: str | torch.device = "cpu",
                    target_return: float | None = None) -> SequencePolicy:
    """The policy of an MT-DT (task_dim) or Prompt-DT (prompt) checkpoint of `method`."""
    state, cfg, nz = load_trained(path, device)
    meta = state["meta"]
    hp = cfg.methods[method]
    model = build_dt(cfg, meta["build"], hp, task_dim=hp.task_embed_dim if task_dim else 0,
                     prompt=prompt)
    model.load_state_dict(state["ema"])
    return SequencePolicy(model, nz, meta, target_return=target_return, device=device)
