"""The augmentation baselines of Table 2 / Table 4 (paper §5.3, App. B): RAD and S4RL.

Both perturb states only: actions, rewards and terminals are the original transition's.
Each function returns a new `Transitions` of `copies * N` rows, copy k of row i at row
k*N + i, with `rows` kept, to be concatenated with the original data
(`mtdiff.data.transitions.concat`).

RAD (Laskin et al. 2020, random amplitude scaling): s <- z s, s' <- z s', z ~ U[0.8, 1.2].
    One scalar z per transition (default), used for both s and s'. Per-sample is RAD's own
    choice (the paper writes a scalar z; d3rlpy calls it `SingleAmplitudeScaling`) and it
    keeps each transition self-consistent: a uniformly scaled state and next state, whose
    difference is the scaled true motion. A per-dimension z (`per_dimension=True`,
    d3rlpy's `MultipleAmplitudeScaling`) also distorts the state's shape, e.g. moves the
    hand and the object by different factors.

S4RL (Sinha et al. 2022, adversarial state training): s <- s + eps * d(s), with d the
    direction that increases J_Q(pi(s)) = Q_1(s, pi(s)) of a TD3-BC agent trained on the
    original data (the paper: "taking gradients with respect to the value function").
    The gradient is taken with respect to the raw state (through the agent's normaliser
    and actor), so eps = 0.01 is in the observation's own units (metres for positions).
    `step="sign"` (default) is the fast-gradient-sign step, |s~ - s|_inf = eps: it moves
    every dimension by eps, and is what makes the paper's Table 4 dynamics error of S4RL
    (0.0001 = eps^2) come out. `step="l2"` uses g / |g|_2, so |s~ - s|_2 = eps. s' is
    moved the same way with the gradient at s' (S4RL augments both states of the Bellman
    backup); `perturb_next=False` keeps s'. Dimensions constant in `data` (Meta-World's
    zero padding for a missing second object, a fixed quaternion) are not moved: the
    critic never saw them vary, so its gradient there is untrained initial weights, and a
    0.01 step would be a jump of 10 normalised units (TD3-BC's std floor is 1e-3).
"""

from __future__ import annotations

from typing import Literal, Protocol

import numpy as np
import torch

from mtdiff.data.transitions import Transitions


def _tile(data: Transitions, copies: int) -> Transitions:
    """`copies` stacked copies of `data` (row i of copy k at k*N + i)."""
    if copies <= 0:
        raise ValueError(f"copies must be > 0, got {copies}")
    idx = np.tile(np.arange(len(data)), copies)
    return data.subset(idx)


def rad_augment(data: Transitions, *, low: float = 0.8, high: float = 1.2, copies: int = 1,
                per_dimension: bool = False, seed: int = 0) -> Transitions:
    """RAD's random amplitude scaling of s and s' (same z for both; see module doc).

    z has shape (copies*N, 1) by default, (copies*N, obs_dim) with `per_dimension`.
    """
    if not 0 < low <= high:
        raise ValueError(f"need 0 < low <= high, got [{low}, {high}]")
    out = _tile(data, copies)
    rng = np.random.default_rng(seed)
    shape = out.observations.shape if per_dimension else (len(out), 1)
    z = rng.uniform(low, high, shape).astype(np.float32)
    out.observations = out.observations * z
    out.next_observations = out.next_observations * z
    return out


class QAgent(Protocol):
    """What S4RL needs of an agent: its device and Q_1(s, pi(s)) of raw states (TD3-BC's
    `mtdiff.offline.td3bc.TD3BC` is one)."""

    device: torch.device | str

    def q_value(self, obs: torch.Tensor) -> torch.Tensor: ...


def value_gradient(agent: QAgent, obs: np.ndarray, *, batch_size: int = 4096
                   ) -> tuple[np.ndarray, np.ndarray]:
    """grad_s Q_1(s, pi(s)) for raw states (N, obs_dim), and the values Q_1(s, pi(s)) (N,)."""
    grads = np.empty(obs.shape, np.float32)
    values = np.empty(len(obs), np.float32)
    for lo in range(0, len(obs), batch_size):
        s = torch.as_tensor(obs[lo:lo + batch_size], device=agent.device).requires_grad_(True)
        q = agent.q_value(s)  # (B,)
        # Rows are independent, so the gradient of the sum is each row's own gradient.
        (g,) = torch.autograd.grad(q.sum(), s)
        grads[lo:lo + len(s)] = g.cpu().numpy()
        values[lo:lo + len(s)] = q.detach().cpu().numpy()
    return grads, values


def _direction(grad: np.ndarray, step: Literal["sign", "l2"]) -> np.ndarray:
    if step == "sign":
        return np.sign(grad)
    if step == "l2":
        norm = np.linalg.norm(grad, axis=1, keepdims=True)
        return np.divide(grad, norm, out=np.zeros_like(grad), where=norm > 0)
    raise ValueError(f"unknown step {step!r}; use 'sign' or 'l2'")


def s4rl_augment(data: Transitions, agent: QAgent, *, eps: float = 0.01, copies: int = 1,
                 step: Literal["sign", "l2"] = "sign", perturb_next: bool = True
                 ) -> Transitions:
    """S4RL's adversarial state step s <- s + eps * d(grad_s Q_1(s, pi(s))) (module doc).

    The step is deterministic, so the `copies` are identical: they only set the augmented
    data's share of a training mix.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    varying = (data.observations.std(0) > 0).astype(np.float32)  # (obs_dim,) see module doc

    def moved(obs: np.ndarray) -> np.ndarray:
        grad, _ = value_gradient(agent, obs)
        return obs + eps * _direction(grad * varying, step).astype(np.float32)

    obs = moved(data.observations)
    next_obs = moved(data.next_observations) if perturb_next else data.next_observations
    one = Transitions(obs, data.actions, data.rewards, next_obs, data.terminals, data.rows)
    return _tile(one, copies)
