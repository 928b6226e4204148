"""TD3-BC (Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning", 2021).

TD3 with a behaviour-cloning term in the actor loss and normalised states:

    critic:  min_i (Q_i(s, a) - y)^2,   y = r + gamma (1 - done) min_j Q'_j(s', a~'),
             a~' = clip(pi'(s') + clip(N(0, sigma^2), -c, c), -1, 1)
    actor:   -lambda Q_1(s, pi(s)) + (pi(s) - a)^2,   lambda = alpha / mean|Q_1(s, pi(s))|
             every `policy_delay` critic steps, followed by Polyak updates of the targets

States are z-scored with the training data's mean and std (+1e-3, the authors' epsilon);
rewards are used as they are. Actions live in [-1, 1] (max action 1), as Meta-World's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mtdiff.config import OfflineConfig, from_dict, to_dict
from mtdiff.data.transitions import Transitions

CHECKPOINT_FORMAT = 1
Batch = dict[str, torch.Tensor]  # obs (B, obs_dim), act (B, act_dim), rew (B,), next_obs, done


def mlp(inp: int, out: int, hidden: int) -> nn.Sequential:
    """The authors' network: two hidden ReLU layers of width `hidden`."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out))


class Actor(nn.Module):
    """Deterministic policy pi(s) in [-1, 1]^act_dim (input: normalised state)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> (B, act_dim)."""
        return torch.tanh(self.net(obs))


class TwinCritic(nn.Module):
    """Two independent Q networks Q_1, Q_2 (input: normalised state, action)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, obs_dim), (B, act_dim) -> Q_1, Q_2 each (B,)."""
        x = torch.cat([obs, act], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class TD3BC:
    """A TD3-BC agent: networks, targets, optimisers, state normaliser and its own RNG."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: OfflineConfig | None = None, *,
                 device: str | torch.device = "cpu", seed: int | None = None) -> None:
        self.cfg = cfg or OfflineConfig()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.device = torch.device(device)
        seed = self.cfg.seed if seed is None else seed
        self.gen = torch.Generator(self.device).manual_seed(seed)  # batches and target noise
        h = self.cfg.hidden
        with torch.random.fork_rng(devices=[]):  # seeded init, caller's global RNG untouched
            torch.manual_seed(seed)
            self.actor = Actor(obs_dim, act_dim, h).to(self.device)
            self.critic = TwinCritic(obs_dim, act_dim, h).to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.lr)
        self.obs_mean = torch.zeros(obs_dim, device=self.device)
        self.obs_std = torch.ones(obs_dim, device=self.device)
        self.step = 0  # critic updates done

    # --- normalisation --------------------------------------------------------------------

    def fit_normalizer(self, observations: np.ndarray) -> None:
        """Set the state normaliser from training states (identity if disabled in cfg)."""
        if not self.cfg.normalize_states:
            return
        obs = np.asarray(observations, np.float64)
        self.obs_mean = torch.as_tensor(obs.mean(0), dtype=torch.float32, device=self.device)
        self.obs_std = torch.as_tensor(obs.std(0) + 1e-3, dtype=torch.float32, device=self.device)

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw states (..., obs_dim) -> normalised (differentiable, for S4RL's gradient)."""
        return (obs - self.obs_mean) / self.obs_std

    # --- acting and values ----------------------------------------------------------------

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions (N, act_dim) float32 in [-1, 1] for raw states (N, obs_dim)."""
        x = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        return self.actor(self.normalize(x)).cpu().numpy()

    def q_value(self, obs: torch.Tensor, act: torch.Tensor | None = None) -> torch.Tensor:
        """Q_1 for raw states (B, obs_dim) and actions (B, act_dim); act=None: a = pi(s),
        i.e. J_Q(pi(s)) of S4RL. Differentiable in `obs` (through pi too when act is None)."""
        s = self.normalize(obs)
        a = self.actor(s) if act is None else act
        return self.critic(s, a)[0]

    # --- training -------------------------------------------------------------------------

    def batches(self, data: Transitions) -> Callable[[], Batch]:
        """A sampler of uniform random batches (with replacement) from `data`, on device."""
        t = {k: torch.as_tensor(v, device=self.device) for k, v in (
            ("obs", data.observations), ("act", data.actions), ("rew", data.rewards),
            ("next_obs", data.next_observations), ("done", data.terminals))}
        n, b = len(data), self.cfg.batch_size

        def sample() -> Batch:
            i = torch.randint(n, (b,), device=self.device, generator=self.gen)
            return {k: v[i] for k, v in t.items()}

        return sample

    def update(self, batch: Batch) -> dict[str, float]:
        """One critic step (and, every `policy_delay` steps, one actor step + target update).

        Returns this step's losses as floats: critic_loss, q_mean, and when the actor moved
        actor_loss, bc_loss (the (pi(s) - a)^2 term alone) and lambda.
        """
        return {k: v.item() for k, v in self._update(batch).items()}

    def _update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """`update` with the losses left as detached tensors: no GPU sync per step."""
        c = self.cfg
        obs, next_obs = self.normalize(batch["obs"]), self.normalize(batch["next_obs"])
        act = batch["act"]
        with torch.no_grad():
            noise = torch.randn(act.shape, device=self.device, generator=self.gen)
            noise = (noise * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            next_act = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            tq1, tq2 = self.critic_target(next_obs, next_act)
            target = batch["rew"] + c.gamma * (1.0 - batch["done"]) * torch.min(tq1, tq2)
        q1, q2 = self.critic(obs, act)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.step += 1
        out = {"critic_loss": critic_loss.detach(), "q_mean": q1.detach().mean()}
        if self.step % c.policy_delay == 0:
            pi = self.actor(obs)
            q = self.critic(obs, pi)[0]
            lmbda = c.alpha / q.abs().mean().detach().clamp_min(1e-6)  # scale-free Q term
            bc_loss = F.mse_loss(pi, act)
            actor_loss = -lmbda * q.mean() + bc_loss
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            self._polyak()
            out.update({"actor_loss": actor_loss.detach(), "bc_loss": bc_loss.detach(),
                        "lambda": lmbda})
        return out

    @torch.no_grad()
    def _polyak(self) -> None:
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                tp.lerp_(p, self.cfg.tau)  # tp <- (1 - tau) tp + tau p

    def train(self, data: Transitions | Callable[[], Batch], steps: int, *, log_every: int = 1000,
              on_log: Callable[[int, dict[str, float]], None] | None = None
              ) -> list[dict[str, float]]:
        """`steps` updates on `data` (or a batch sampler from `batches`, to keep one across
        calls). Every `log_every` steps the window's mean losses are appended to the returned
        list (with "step") and passed to `on_log(step, metrics)`."""
        sample = self.batches(data) if isinstance(data, Transitions) else data
        logs: list[dict[str, float]] = []
        acc: dict[str, list[torch.Tensor]] = {}
        for _ in range(steps):
            for k, v in self._update(sample()).items():
                acc.setdefault(k, []).append(v)
            if self.step % log_every == 0:
                metrics = {k: torch.stack(v).mean().item() for k, v in acc.items()}
                logs.append({"step": float(self.step), **metrics})
                if on_log is not None:
                    on_log(self.step, metrics)
                acc = {}
        return logs

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume or act: weights, optimisers, normaliser, step, config.

        Only tensors and plain Python values, so `torch.load(weights_only=True)` reads it.
        """
        return {"format": CHECKPOINT_FORMAT, "obs_dim": self.obs_dim, "act_dim": self.act_dim,
                "config": to_dict(self.cfg), "step": self.step,
                "obs_mean": self.obs_mean.cpu(), "obs_std": self.obs_std.cpu(),
                "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(),
                "gen": self.gen.get_state()}

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint atomically (temp file + rename); returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | torch.device = "cpu") -> TD3BC:
        """An agent from a checkpoint written by `save` (read with weights_only=True)."""
        sd = torch.load(path, map_location="cpu", weights_only=True)
        if sd.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: TD3-BC checkpoint format {sd.get('format')!r}, this "
                             f"code reads format {CHECKPOINT_FORMAT}")
        cfg = from_dict({"offline": sd["config"]}).offline  # JSON-style lists -> tuples
        agent = cls(sd["obs_dim"], sd["act_dim"], cfg, device=device)
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_opt",
                     "critic_opt"):
            getattr(agent, name).load_state_dict(sd[name])
        agent.obs_mean = sd["obs_mean"].to(agent.device)
        agent.obs_std = sd["obs_std"].to(agent.device)
        agent.step = int(sd["step"])
        if agent.device.type == "cpu":  # a CUDA generator's state does not fit a CPU one
            agent.gen.set_state(sd["gen"])
        return agent
