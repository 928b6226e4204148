"""Networks of the MLP baselines (paper App. B): task-conditioned actors, per-task critic heads.

- `TaskEmbedding`: z = 3-layer Mish MLP of the one-hot task id (App. B: "the scalar taskID
  is embedded via 3-layered MLP (with Mish activation) into latent variable z").
- Actors read [s, z] with a 3-layer Mish MLP: `DeterministicActor` (MTBC; tanh output),
  `GaussianActor` (MTIQL: tanh mean, state-independent log std, as CORL's IQL) and
  `TanhGaussianActor` (MTCQL: mean and log std from the MLP, a tanh-squashed Normal, as
  CORL's CQL).
- `TaskHeads`: `n_nets` x `num_tasks` independent 3-layer Mish MLPs; each sample goes
  through its own task's head (App. B: "a multi-head critic network to predict the Q
  value for each task"). Samples are grouped by task and every head present in the batch
  runs as one batched matmul, so the cost is one MLP per sample, not one per task.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal, TanhTransform
from torch.distributions import TransformedDistribution as Transformed

from mtdiff.models.embedders import mlp

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # CORL (IQL and CQL)


class TaskEmbedding(nn.Module):
    """task id (B,) int64 -> z (B, dim): 3-layer Mish MLP of the one-hot id."""

    def __init__(self, num_tasks: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.mlp = mlp(num_tasks, dim, layers=3, hidden=hidden)

    def forward(self, task_id: torch.Tensor) -> torch.Tensor:
        """task_id: (B,) -> (B, dim)."""
        onehot = F.one_hot(task_id.long().reshape(-1), self.num_tasks)  # (B, T)
        return self.mlp(onehot.to(self.mlp[0].weight.dtype))


class _TaskActor(nn.Module):
    """Shared trunk: [s, z(task)] -> 3-layer Mish MLP -> out_dim features."""

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, *, hidden: int,
                 task_dim: int, out_dim: int) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.task_embed = TaskEmbedding(num_tasks, task_dim, hidden)
        self.net = mlp(obs_dim + task_dim, out_dim, layers=3, hidden=hidden)

    def features(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), task_id (B,) -> (B, out_dim)."""
        return self.net(torch.cat([obs, self.task_embed(task_id)], dim=-1))


class DeterministicActor(_TaskActor):
    """a = tanh(MLP([s, z])) in [-1, 1]: (B, obs_dim), (B,) -> (B, act_dim)."""

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, *, hidden: int,
                 task_dim: int) -> None:
        super().__init__(obs_dim, act_dim, num_tasks, hidden=hidden, task_dim=task_dim,
                         out_dim=act_dim)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """The action, (B, act_dim)."""
        return torch.tanh(self.features(obs, task_id))

    def act(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """The evaluation action, (B, act_dim)."""
        return self(obs, task_id)


def gaussian(loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
    """N(loc, scale) over the last dim (log_prob sums over it)."""
    return Independent(Normal(loc, scale), 1)


def tanh_normal(loc: torch.Tensor, scale: torch.Tensor) -> Distribution:
    """tanh(N(loc, scale)) over the last dim (log_prob sums over it; rsample is cached, so
    the log_prob of a sample is exact, as in CORL's ReparameterizedTanhGaussian)."""
    return Transformed(Independent(Normal(loc, scale), 1), [TanhTransform(cache_size=1)])


class GaussianActor(_TaskActor):
    """pi(a|s, z) = N(tanh(MLP([s, z])), exp(log_std)) with a learned state-independent
    log std (CORL's IQL GaussianPolicy); evaluation acts with the mean.

    `forward` returns tensors (what a DDP wrapper passes through); `gaussian(*actor(s, z))`
    is the distribution.
    """

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, *, hidden: int,
                 task_dim: int) -> None:
        super().__init__(obs_dim, act_dim, num_tasks, hidden=hidden, task_dim=task_dim,
                         out_dim=act_dim)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (B, act_dim), std (B, act_dim))."""
        mean = torch.tanh(self.features(obs, task_id))
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp().expand_as(mean)
        return mean, std

    def act(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """The evaluation action: the mean, clipped to [-1, 1] (B, act_dim)."""
        return self(obs, task_id)[0].clamp(-1.0, 1.0)


class TanhGaussianActor(_TaskActor):
    """CORL's CQL TanhGaussianPolicy on [s, z]: the MLP gives mean and raw log std;
    log_std = multiplier * raw + offset (learned scalars, initial 1 and -1), clamped;
    `tanh_normal(*actor(s, z))` is the action distribution.

    Initialisation as CORL's actor: default inner layers, a last layer Xavier-uniform with
    gain 1e-2 and zero bias (near-zero mean and log std -1 at the start).
    """

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, *, hidden: int,
                 task_dim: int) -> None:
        super().__init__(obs_dim, act_dim, num_tasks, hidden=hidden, task_dim=task_dim,
                         out_dim=2 * act_dim)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))
        last = self.net[-1]
        nn.init.xavier_uniform_(last.weight, gain=1e-2)
        nn.init.zeros_(last.bias)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the pre-tanh Normal, (B, act_dim) each."""
        mean, raw = self.features(obs, task_id).chunk(2, dim=-1)
        log_std = (self.log_std_multiplier * raw + self.log_std_offset).clamp(LOG_STD_MIN,
                                                                              LOG_STD_MAX)
        return mean, log_std.exp()

    def act(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """The evaluation action tanh(mean), (B, act_dim)."""
        return torch.tanh(self(obs, task_id)[0])


def sample_tanh_normal(loc: torch.Tensor, scale: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(a ~ tanh(N(loc, scale)) reparameterised (B, act_dim), log pi(a) (B,))."""
    dist = tanh_normal(loc, scale)
    a = dist.rsample()
    return a, dist.log_prob(a)


class TaskHeads(nn.Module):
    """`n_nets` x `num_tasks` independent MLPs (3 Linear layers, Mish between them):
    x (B, in_dim), task (B,) -> (n_nets, B, out_dim), sample b through head task[b].

    Weights are stacked as (n_nets, num_tasks, d_in, d_out); a forward pass groups the
    samples by task (padding every group to the largest), runs the heads of the tasks
    present as one batched matmul, and scatters the rows back.
    """

    def __init__(self, in_dim: int, out_dim: int, num_tasks: int, *, hidden: int,
                 layers: int = 3, n_nets: int = 1, orthogonal_init: bool = False) -> None:
        super().__init__()
        self.num_tasks, self.n_nets = num_tasks, n_nets
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            w = torch.empty(n_nets, num_tasks, d_in, d_out)
            b = torch.empty(n_nets, num_tasks, 1, d_out)
            last = i == layers - 1
            for n in range(n_nets):
                for t in range(num_tasks):
                    if orthogonal_init:  # CORL's CQL: gain sqrt(2) inside, 1e-2 on the output
                        q = nn.init.orthogonal_(torch.empty(d_out, d_in),
                                                gain=1e-2 if last else math.sqrt(2))
                        w[n, t].copy_(q.T)  # as an nn.Linear weight (d_out, d_in), transposed
                        nn.init.zeros_(b[n, t])
                    else:  # nn.Linear's default: U(-1/sqrt(d_in), 1/sqrt(d_in))
                        bound = 1.0 / math.sqrt(d_in)
                        nn.init.uniform_(w[n, t], -bound, bound)
                        nn.init.uniform_(b[n, t], -bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))

    def forward(self, x: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """x: (B, in_dim), task_id: (B,) int64 -> (n_nets, B, out_dim)."""
        task_id = task_id.long().reshape(-1)
        B = x.shape[0]
        present, group, counts = torch.unique(task_id, return_inverse=True, return_counts=True)
        m = int(counts.max())  # rows in the largest group (one host sync)
        order = torch.argsort(group, stable=True)  # rows sorted by group
        g_sorted = group[order]
        starts = torch.cumsum(counts, 0) - counts  # (U,)
        pos = torch.arange(B, device=x.device) - starts[g_sorted]  # row within its group
        dense = x.new_zeros(len(present), m, x.shape[1]).index_put(
            (g_sorted, pos), x[order])  # (U, m, in_dim), padded rows are zeros
        h = dense.unsqueeze(0)  # (1, U, m, in_dim), broadcast over n_nets
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w[:, present] + b[:, present]  # (n, U, m, d_out)
            if i < len(self.weights) - 1:
                h = F.mish(h)
        out = h[:, g_sorted, pos]  # (n, B, out_dim) in sorted order
        return out[:, torch.argsort(order)]  # back to the input order


class MultiHeadQ(nn.Module):
    """Q_i(s, a) for the sample's task i, an ensemble of `n_nets`: (B, obs), (B, act), (B,)
    -> (n_nets, B)."""

    def __init__(self, obs_dim: int, act_dim: int, num_tasks: int, *, hidden: int,
                 n_nets: int = 2, orthogonal_init: bool = False) -> None:
        super().__init__()
        self.heads = TaskHeads(obs_dim + act_dim, 1, num_tasks, hidden=hidden, n_nets=n_nets,
                               orthogonal_init=orthogonal_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                task_id: torch.Tensor) -> torch.Tensor:
        """Q values, (n_nets, B)."""
        return self.heads(torch.cat([obs, action], dim=-1), task_id).squeeze(-1)


class MultiHeadV(nn.Module):
    """V_i(s) for the sample's task i: (B, obs), (B,) -> (B,)."""

    def __init__(self, obs_dim: int, num_tasks: int, *, hidden: int) -> None:
        super().__init__()
        self.heads = TaskHeads(obs_dim, 1, num_tasks, hidden=hidden, n_nets=1)

    def forward(self, obs: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
        """State values, (B,)."""
        return self.heads(obs, task_id)[0, :, 0]


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source (Polyak averaging of the target critics)."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s.detach(), tau)
