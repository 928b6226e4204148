"""Soft Actor-Critic (Haarnoja et al. 2018), CleanRL's `sac_continuous_action.py` maths as
one class, made fast for one CPU thread.

The maths (per update, batch B, squashed Gaussian policy pi, twin critics Q1, Q2, their
Polyak-averaged targets Q1', Q2', temperature alpha = exp(log_alpha)):

    a' ~ pi(.|s'),  y = r + gamma (1 - terminated) (min_i Q_i'(s', a') - alpha log pi(a'|s'))
    L_Q     = sum_i mean_B (Q_i(s, a) - y)^2
    L_pi    = mean_B (alpha log pi(a~|s) - min_i Q_i(s, a~)),  a~ ~ pi(.|s)  (reparameterised)
    L_alpha = mean_B -log_alpha (log pi(a~|s) + target_entropy),  target_entropy = -act_dim
    Q' <- (1 - tau) Q' + tau Q

Departures from CleanRL, none of which changes the maths: the three losses are built from
the same parameters and stepped together (the original SAC's update, as in softlearning;
CleanRL steps the critics first and builds the policy loss on the updated ones); the
policy is updated every step (CleanRL's default delays it by 2 steps and then does 2
updates: the same count); the temperature loss reuses the policy step's
log-probabilities instead of sampling again; one learning rate for all parameters.

Why it is fast (measured by `benchmarks/sac_collect.py`; on one CPU thread the update is
~8 ms, of which ~6 ms are the matmuls themselves): one backward pass and one fused Adam
step per update (three optimisers cost ~0.2 ms of Python each), the twin critics are one
network with stacked weights (every layer one batched matmul for both: half the
dispatches, and on a GPU half the kernel launches), the critic's weights are frozen
while the policy loss is built through it (no weight gradients nobody uses), the
Polyak update is one `_foreach_lerp_`, the temperature stays a tensor (no `.item()`
per step) and the replay batch is gathered into preallocated tensors. The collection
process flushes denormal floats to zero (`mtdiff.runtime.set_torch_threads`): without
it the update slows from 7.6 to ~9 ms within 2,000 updates as values drift below 1e-38.
Measured and
left out: `torch.compile` (slower on CPU here: 13.7 vs 8.7 ms per update), bf16
matmuls (slower on this CPU, and too coarse for Q-targets of ~10^3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from mtdiff.collect.sac_run import (
    EpisodeRecorder,
    SACTaskRun,
    curve_metrics,
    evaluate,
    final_metrics,
)
from mtdiff.runtime import duration
from mtdiff.tracking.remote import LiveChild

if TYPE_CHECKING:
    from mtdiff.collect.sac_env import SACEnv
    from mtdiff.config import Config

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's bounds of the policy's log std


@dataclass
class SACHyper:
    """The agent's hyper-parameters (`mtdiff.config.SACConfig` carries the same names)."""

    hidden: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256


def _uniform_(t: Tensor, fan_in: int, gen: torch.Generator | None) -> Tensor:
    """`nn.Linear`'s default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for weights and biases."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        return t.uniform_(-bound, bound, generator=gen)


class TwinQ(nn.Module):
    """Two Q networks (in -> hidden -> hidden -> 1, ReLU) held as stacked weights.

    `forward(obs (B, obs_dim), act (B, act_dim)) -> (2, B)`. Every layer is one batched
    matmul for both critics, half the dispatches of two `nn.Sequential`s.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: int,
                 gen: torch.Generator | None = None) -> None:
        super().__init__()
        d_in = obs_dim + act_dim
        self.w1 = nn.Parameter(_uniform_(torch.empty(2, d_in, hidden), d_in, gen))
        self.b1 = nn.Parameter(_uniform_(torch.empty(2, 1, hidden), d_in, gen))
        self.w2 = nn.Parameter(_uniform_(torch.empty(2, hidden, hidden), hidden, gen))
        self.b2 = nn.Parameter(_uniform_(torch.empty(2, 1, hidden), hidden, gen))
        self.w3 = nn.Parameter(_uniform_(torch.empty(2, hidden, 1), hidden, gen))
        self.b3 = nn.Parameter(_uniform_(torch.empty(2, 1, 1), hidden, gen))

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        """Q1(s, a) and Q2(s, a) stacked: (2, B)."""
        x = torch.cat([obs, act], -1).expand(2, -1, -1)  # (2, B, d_in), no copy
        h = torch.relu(torch.baddbmm(self.b1, x, self.w1))  # (2, B, hidden)
        h = torch.relu(torch.baddbmm(self.b2, h, self.w2))  # (2, B, hidden)
        return torch.baddbmm(self.b3, h, self.w3).squeeze(-1)  # (2, B)


class Actor(nn.Module):
    """tanh-squashed Gaussian policy: obs -> hidden -> hidden -> (mean, log std)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int,
                 gen: torch.Generator | None = None) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.trunk = nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(),
                                   nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * act_dim)  # mean and log std in one matmul
        for m in (*self.trunk, self.head):
            if isinstance(m, nn.Linear):
                _uniform_(m.weight, m.in_features, gen)
                _uniform_(m.bias, m.in_features, gen)

    def dist(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log std), each (B, act_dim); log std squashed into CleanRL's bounds."""
        mean, log_std = self.head(self.trunk(obs)).split(self.act_dim, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        return mean, log_std

    def sample(self, obs: Tensor, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """A reparameterised action in [-1, 1] (B, act_dim) and its log-probability (B,)."""
        mean, log_std = self.dist(obs)
        std = log_std.exp()
        eps = torch.randn(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype)
        x = mean + std * eps
        y = torch.tanh(x)
        # log N(x; mean, std) - log |d tanh(x)/dx|, summed over action dims. The env's
        # actions are already [-1, 1], so CleanRL's action scale is 1 and bias 0.
        log_prob = (-0.5 * eps.square() - log_std - 0.5 * math.log(2 * math.pi)
                    - torch.log1p(-y.square() + 1e-6)).sum(-1)
        return y, log_prob


class ReplayBuffer:
    """A ring buffer of transitions as preallocated tensors on the agent's device.

    Rows: obs (obs_dim), action (act_dim), reward, next obs (obs_dim), terminated. `sample`
    gathers a batch into preallocated tensors (no allocation per update). When the
    whole buffer is kept (App. G), `capacity` is the task's transition count and the
    ring never wraps.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, batch_size: int,
                 device: torch.device) -> None:
        self.capacity, self.size, self.pos = capacity, 0, 0
        self.obs_dim, self.act_dim = obs_dim, act_dim
        width = 2 * obs_dim + act_dim + 2
        # One row per transition: [obs | act | reward | next_obs | terminated]; one gather
        # per sample instead of five.
        self.data = torch.zeros(capacity, width, device=device)
        self.batch = torch.empty(batch_size, width, device=device)
        self.idx = torch.empty(batch_size, dtype=torch.long, device=device)

    def add(self, obs: np.ndarray, act: np.ndarray, reward: float, next_obs: np.ndarray,
            terminated: bool) -> None:
        """Append one transition (overwriting the oldest when full)."""
        row = np.concatenate([obs, act, [reward], next_obs, [float(terminated)]])
        self.data[self.pos] = torch.from_numpy(row.astype(np.float32, copy=False))
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_many(self, obs: np.ndarray, act: np.ndarray, reward: np.ndarray,
                 next_obs: np.ndarray, terminated: np.ndarray) -> None:
        """Append a block of transitions (N rows each) at once: refilling after a resume."""
        rows = np.concatenate([obs, act, reward[:, None], next_obs, terminated[:, None]],
                              axis=1).astype(np.float32)
        for start in range(0, len(rows), self.capacity):  # only the last `capacity` stay
            chunk = torch.from_numpy(rows[start:start + self.capacity])
            n = len(chunk)
            end = min(self.pos + n, self.capacity)
            self.data[self.pos:end] = chunk[:end - self.pos]
            self.data[:n - (end - self.pos)] = chunk[end - self.pos:]
            self.pos = (self.pos + n) % self.capacity
            self.size = min(self.size + n, self.capacity)

    def sample(self, gen: torch.Generator | None) -> tuple[Tensor, ...]:
        """(obs, act, reward, next_obs, terminated) views of one uniform batch."""
        torch.randint(self.size, self.idx.shape, generator=gen, out=self.idx)
        torch.index_select(self.data, 0, self.idx, out=self.batch)
        o, a = self.obs_dim, self.act_dim
        b = self.batch
        return (b[:, :o], b[:, o:o + a], b[:, o + a], b[:, o + a + 1:o + a + 1 + o], b[:, -1])


class SACAgent:
    """Twin-Q SAC with automatic entropy tuning; see the module docstring for the maths.

    One `torch.Generator` drives every random draw of the agent (warm-up actions,
    exploration noise, replay indices), so `state_dict()` (tensors and numbers only:
    `torch.load(weights_only=True)` reads it) restores a run exactly.
    """

    def __init__(self, obs_dim: int, act_dim: int, hyper: SACHyper, *, seed: int,
                 device: torch.device | str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.h, self.act_dim = hyper, act_dim
        self.gen = torch.Generator(self.device).manual_seed(seed)
        init_gen = torch.Generator().manual_seed(seed)  # CPU: weights equal on any device
        self.actor = Actor(obs_dim, act_dim, hyper.hidden, init_gen).to(self.device)
        self.q = TwinQ(obs_dim, act_dim, hyper.hidden, init_gen).to(self.device)
        self.q_target = TwinQ(obs_dim, act_dim, hyper.hidden).to(self.device)
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)
        self.log_alpha = torch.zeros(1, device=self.device, requires_grad=True)
        self.target_entropy = -float(act_dim)
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        # One optimiser, one parameter group per loss: a single fused step per update
        # (three optimisers cost ~0.2 ms of Python each per step on a CPU).
        self.opt = torch.optim.Adam(
            [{"params": self.q.parameters()}, {"params": self.actor.parameters()},
             {"params": [self.log_alpha]}], lr=hyper.lr, **fused)
        self._q_params = list(self.q.parameters())
        self._q_target_params = list(self.q_target.parameters())
        self._obs = torch.empty(1, obs_dim, device=self.device)  # act()'s input, reused

    # -- acting -------------------------------------------------------------------------

    def random_action(self) -> np.ndarray:
        """A uniform action in [-1, 1]^act_dim (the warm-up steps before learning)."""
        a = torch.rand(self.act_dim, generator=self.gen, device=self.device) * 2 - 1
        return a.cpu().numpy()

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The policy's action for one observation: sampled, or tanh(mean) when evaluating."""
        self._obs.copy_(torch.from_numpy(obs).view(1, -1))
        if deterministic:
            return torch.tanh(self.actor.dist(self._obs)[0])[0].cpu().numpy()
        return self.actor.sample(self._obs, self.gen)[0][0].cpu().numpy()

    # -- learning -----------------------------------------------------------------------

    def update(self, buffer: ReplayBuffer) -> dict[str, Tensor]:
        """One gradient step on critics, policy and temperature from one replay batch.

        All three losses are built from the same (pre-step) parameters, summed, and
        back-propagated once; one fused Adam then steps every parameter. This is the
        original SAC's update (softlearning runs the three train ops together); CleanRL
        steps the critic first and builds the policy loss on the updated critic.

        Returns the losses as 0-d tensors (not floats: reading them would synchronise a
        GPU every step; callers that log them call `.item()` only when they log).
        """
        obs, act, rew, next_obs, term = buffer.sample(self.gen)
        alpha = self.log_alpha.detach().exp()  # (1,)
        with torch.no_grad():
            next_act, next_logp = self.actor.sample(next_obs, self.gen)
            q_next = self.q_target(next_obs, next_act).amin(0) - alpha * next_logp  # (B,)
            y = rew + self.h.gamma * (1.0 - term) * q_next  # (B,)
        q_loss = (self.q(obs, act) - y).square().mean(-1).sum()  # both critics' MSE

        # Policy: gradients flow through the critic to the action, not into its weights
        # (frozen while this part of the graph is built).
        self.q.requires_grad_(False)
        pi_act, logp = self.actor.sample(obs, self.gen)
        pi_loss = (alpha * logp - self.q(obs, pi_act).amin(0)).mean()
        self.q.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.opt.zero_grad(set_to_none=True)
        (q_loss + pi_loss + alpha_loss).backward()  # the three share no parameter
        self.opt.step()

        with torch.no_grad():  # Polyak: Q' <- Q' + tau (Q - Q'), all tensors in one call
            torch._foreach_lerp_(self._q_target_params, self._q_params, self.h.tau)
        return {"q_loss": q_loss.detach(), "pi_loss": pi_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "alpha": alpha[0]}

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything that determines the agent's future: networks, targets, optimisers,
        temperature and the random generator. Tensors, numbers and dicts only."""
        return {
            "actor": self.actor.state_dict(), "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(), "log_alpha": self.log_alpha.detach(),
            "opt": self.opt.state_dict(), "gen": self.gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output (from any device onto this agent's device)."""
        self.actor.load_state_dict(state["actor"])
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"].cpu())


# ----------------------------------------------------------------------------------------
# The lean backend's collection loop (the format and resume rules: `SACTaskRun`)
# ----------------------------------------------------------------------------------------


def make_agent(cfg: Config, obs_dim: int, act_dim: int, seed: int) -> SACAgent:
    """A fresh agent with `cfg.sac`'s hyper-parameters (CUDA when Ray gave us a GPU)."""
    sc = cfg.sac
    hyper = SACHyper(hidden=sc.hidden, lr=sc.lr, gamma=sc.gamma, tau=sc.tau,
                     batch_size=sc.batch_size)
    return SACAgent(obs_dim, act_dim, hyper, seed=seed)


def collect_task_lean(task: str, cfg: Config, root: str, seed: int,
                      env_spec: SACEnv | None = None, *,
                      init_state: dict[str, Any] | None = None,
                      learning_starts: int | None = None) -> None:
    """Train this module's SAC on `task` from scratch, streaming every transition
    into the task's shards; resumes from the last committed checkpoint. `env_spec`: the
    suite (default Meta-World's). `init_state`: an agent's `state_dict()` to start a fresh
    run from (fine-tuning; its random generator is reseeded with `seed`);
    `learning_starts`: overrides `sac.learning_starts` (uniform random actions before)."""
    import time

    run = SACTaskRun(task, cfg, root, seed, env=env_spec)
    if run.done:
        return
    spec = run.env
    sc, T, obs_dim, act_dim = cfg.sac, spec.episode_steps, spec.obs_dim, spec.act_dim
    starts = sc.learning_starts if learning_starts is None else learning_starts
    agent = make_agent(cfg, obs_dim, act_dim, seed)
    buffer = ReplayBuffer(run.total, obs_dim, act_dim, sc.batch_size, agent.device)
    if run.ckpt_dir is None and init_state is not None:
        agent.load_state_dict(init_state)
        agent.gen.manual_seed(seed)  # this run's own random stream
    if run.ckpt_dir is not None:
        agent.load_state_dict(torch.load(run.ckpt_dir / "agent.pt", weights_only=True,
                                         map_location=agent.device))
        rows = run.replay()
        buffer.add_many(rows["obs"], rows["act"], rows["rew"], rows["next_obs"], rows["term"])

    def save(folder: Path) -> None:
        torch.save(agent.state_dict(), folder / "agent.pt")

    env = spec.make(task, seed)
    clock, clock_steps = time.perf_counter(), run.steps
    losses: dict[str, torch.Tensor] = {}
    # The curve goes to MLflow as it is measured (a child run of the collect job's run);
    # a run resumed from a checkpoint starts its child run with the committed points.
    with LiveChild(f"sac-{task}", key={"stage": "collect-sac", "task": task},
                   tags={"suite": spec.suite, "backend": "lean", "dataset_path": root}
                   ) as curve:
        if not curve.resumed:
            for h in run.history:
                curve.log(curve_metrics(h, spec.suite), step=int(h["step"]))
        while run.steps < run.total:
            n = min(T, run.total - run.steps)  # the last episode may be cut by the budget
            rec = EpisodeRecorder(n, obs_dim, act_dim)
            obs, _ = env.reset(seed=run.episode_seed())
            for t in range(n):
                step = run.steps + t  # env steps taken before this one
                action = agent.random_action() if step < starts else agent.act(obs)
                next_obs, reward, term, trunc, info = env.step(action)
                rec.add(obs, action, float(reward), term, trunc or t == n - 1,
                        bool(info.get("success", False)))
                buffer.add(obs, action, float(reward), next_obs, term)
                if step + 1 >= starts and buffer.size >= sc.batch_size:
                    for _ in range(sc.updates_per_step):
                        losses = agent.update(buffer)
                obs = next_obs
                if (step + 1) % sc.eval_every == 0:
                    sps = (step + 1 - clock_steps) / (time.perf_counter() - clock)
                    ret, succ = evaluate(lambda o: agent.act(o, deterministic=True), task, cfg,
                                         seed, (step + 1) // sc.eval_every, spec)
                    run.log_eval(step + 1, ret, succ, sps,
                                 **{k: float(v) for k, v in losses.items()})  # one sync
                    curve.log(curve_metrics(run.history[-1], spec.suite), step=step + 1)
                    # Live progress in the job's log (the collection's bar counts rows only
                    # once a task's data is written, which SAC does at its end).
                    print(f"[sac] {task} step {step + 1}/{run.total} return {ret:.1f} "
                          f"success {succ:.2f} {sps:.0f} steps/s, ETA "
                          f"{duration((run.total - step - 1) / max(sps, 1e-9))}", flush=True)
                    clock, clock_steps = time.perf_counter(), step + 1  # eval time excluded
                if term:
                    break
            run.end_episode(rec.episode(), obs, save)
        curve.log(final_metrics(run.history, spec.suite))
    env.close()
