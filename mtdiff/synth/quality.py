"""Data-quality metrics of Table 4 (paper App. E, following SynthER): dynamics error,
L2 distance from the dataset (the 2-D embedding plot is in `mtdiff.synth.embedding`).

Dynamics error = mean over transitions and the 39 observation dims of (s'_data - s'_sim)^2,
where s'_sim is the simulator's next observation after setting it to s and stepping a.
Meta-World cannot be set to an observation exactly: the 39 numbers are the current frame
(hand xyz, gripper opening, object pos+quat, 18), the previous frame (18) and the goal (3),
while the simulator state is qpos (arm 7, fingers 2, object joints), qvel and the mocap
body that drags the hand. `MetaWorldSimulator.set_state` approximates as follows:

- arm joints: the hand is driven to s's hand position by the mocap weld from the reset
  pose (contacts off, `settle_steps` steps), then Gauss-Newton on all non-finger joints
  (arm + object) matches the current frame exactly, with the hand's orientation held at
  the weld's target. Not observable, so approximated: the arm's redundant (elbow) joint
  and the hand's small dynamic tilt (up to ~3 degrees).
- fingers: symmetric, opening looked up from the gripper value (one number for 2 joints).
- object: its joints solved by the same Gauss-Newton (exact for free joints).
- velocities: finite differences of the two frames in s, (frame - previous frame) / dt,
  mapped to joint velocities by damped least squares (an average, not the instantaneous
  velocity).
- mocap: hand position + `mocap_offset`. The offset is hidden state; for dataset rows it is
  exact from `episode_mocap_offsets` (the mocap is a pure function of the episode's
  actions); without it, 0 (the hand exactly at the mocap).
- goal: set from s; the previous frame of s'_sim is the reconstructed current frame of s.
- object quaternions of s'_sim take the sign closest to s' (q and -q: one orientation).

Its own error is what `dynamics_error` reports for real transitions (500 rows of noisy
scripted data): reach-v3 1.7e-6, push-v3 1.1e-5 (7e-6 on the 496 rows it sets exactly;
4 have the arm at its joint limits, which the settle cannot reach), against S4RL (eps
0.01) 1.2e-4 / 1.5e-4 and RAD 1.6e-3 / 1.1e-3 on the same data. From the true simulator
state the step is exact (~1e-16); swapping in one approximation at a time (push-v3) puts
most of the error on the arm's redundant joint and hand tilt (hand dims, and the object
through contact), ~2e-7 on the finite-difference velocities, ~4e-6 on a zero mocap offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mtdiff.data.reader import TaskData
from mtdiff.data.transitions import Transitions
from mtdiff.envs.metaworld import make_env

FRAME = 18  # one frame of a Meta-World observation: hand 3, gripper 1, objects 14
QUAT_DIMS = (7, 14, 7 + FRAME, 14 + FRAME)  # start of each object quaternion in the obs


class MetaWorldSimulator:
    """One task's simulator, settable (approximately) to a 39-dim observation."""

    def __init__(self, task: str, *, settle_steps: int = 30) -> None:
        import mujoco

        self.mj = mujoco
        self.env = make_env(task, seed=0)
        self.env.reset()
        self.u = self.env.unwrapped
        self.m, self.d = self.u.model, self.u.data
        self.settle_steps = settle_steps
        self.q_nom = self.d.qpos.copy()  # reset pose: the settle's start and the IK's seed
        self.hand = self.m.body("hand").id
        self.hand_quat = np.array([1.0, 0.0, 1.0, 0.0]) / np.sqrt(2)  # the weld's target
        fingers = [self.m.joint(n) for n in ("r_close", "l_close")]
        self.finger_q = [int(j.qposadr[0]) for j in fingers]
        self.finger_v = [int(j.dofadr[0]) for j in fingers]
        self.solve_dofs = np.array([i for i in range(self.m.nv) if i not in self.finger_v])
        # Gripper value as a function of a symmetric finger closure c (r = c, l = -c).
        self.closure = np.linspace(0.0, min(self.m.jnt_range[fingers[0].id][1], 0.04), 161)
        values = []
        for c in self.closure:
            self._set_fingers(self.q_nom, c)
            values.append(self._frame()[3])
        self.gripper = np.array(values)  # decreasing in c (clipped to 1 when open)

    # --- kinematics -----------------------------------------------------------------------

    def _set_fingers(self, qpos: np.ndarray, c: float) -> None:
        self.d.qpos[:] = qpos
        self.d.qpos[self.finger_q[0]], self.d.qpos[self.finger_q[1]] = c, -c

    def _closure_of(self, gripper: float) -> float:
        return float(np.interp(-gripper, -self.gripper, self.closure))

    def _frame(self) -> np.ndarray:
        self.mj.mj_kinematics(self.m, self.d)
        return np.asarray(self.u._get_curr_obs_combined_no_goal(), np.float64)

    def _residual(self, target: np.ndarray) -> np.ndarray:
        """(21,): frame - target (18), hand orientation error vs the weld target (3)."""
        err = np.zeros(3)
        r = self._frame() - target
        self.mj.mju_subQuat(err, self.d.xquat[self.hand], self.hand_quat)
        return np.r_[r, err]

    def _jacobian(self, target: np.ndarray, h: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
        """Residual (21,) and its finite-difference Jacobian (21, nv) in velocity space."""
        q0 = self.d.qpos.copy()
        r0 = self._residual(target)
        J = np.zeros((len(r0), self.m.nv))
        for j in self.solve_dofs:
            dq = np.zeros(self.m.nv)
            dq[j] = h
            q = q0.copy()
            self.mj.mj_integratePos(self.m, q, dq, 1.0)  # quaternion-safe perturbation
            self.d.qpos[:] = q
            J[:, j] = (self._residual(target) - r0) / h
        self.d.qpos[:] = q0
        return r0, J

    def _dls(self, J: np.ndarray, rhs: np.ndarray, damping: float) -> np.ndarray:
        """Damped least squares over the solved dofs: argmin |J x - rhs|^2 + damping |x|^2."""
        Js = J[:, self.solve_dofs]
        x = np.zeros(self.m.nv)
        x[self.solve_dofs] = np.linalg.solve(Js.T @ Js + damping * np.eye(Js.shape[1]),
                                             Js.T @ rhs)
        return x

    def _settle_arm(self, hand_pos: np.ndarray) -> np.ndarray:
        """qpos after dragging the hand from the reset pose to `hand_pos` (contacts off)."""
        m, d = self.m, self.d
        d.qpos[:], d.qvel[:] = self.q_nom, 0.0
        start = np.asarray(self.u.hand_init_pos, np.float64)  # the mocap at reset
        d.mocap_pos[0], d.mocap_quat[0] = start, [1.0, 0.0, 1.0, 0.0]
        self.mj.mj_forward(m, d)
        ramp = max(1, self.settle_steps - 10)  # move, then hold for 10 steps
        flag = int(self.mj.mjtDisableBit.mjDSBL_CONTACT)
        m.opt.disableflags |= flag
        try:
            for k in range(1, self.settle_steps + 1):
                d.mocap_pos[0] = start + (hand_pos - start) * min(1.0, k / ramp)
                self.mj.mj_step(m, d, nstep=self.u.frame_skip)
        finally:
            m.opt.disableflags &= ~flag
        return d.qpos.copy()

    def _solve(self, target: np.ndarray, seed: np.ndarray, iters: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """Gauss-Newton from `seed` until the frame matches `target`; residual, Jacobian."""
        self._set_fingers(seed, self._closure_of(target[3]))
        for it in range(iters + 1):
            r, J = self._jacobian(target)
            # float32 observations carry ~1e-7 rounding: 1e-6 is "exact" for them.
            if np.abs(r).max() < 1e-6 or it == iters:
                break
            q = self.d.qpos.copy()
            self.mj.mj_integratePos(self.m, q, -self._dls(J, r, 1e-9), 1.0)
            self.d.qpos[:] = q
        return r, J

    # --- setting and stepping -------------------------------------------------------------

    def set_state(self, obs: np.ndarray, mocap_offset: np.ndarray | None = None,
                  iters: int = 10) -> float:
        """Set the simulator to (approximately) the 39-dim `obs` (module doc); returns the
        largest |reconstructed frame - obs frame| (0 when s is representable)."""
        obs = np.asarray(obs, np.float64)
        target = obs[:FRAME]
        r, J = self._solve(target, self._settle_arm(target[:3]) if self.settle_steps
                           else self.q_nom, iters)
        if np.abs(r).max() > 1e-4 and self.settle_steps:  # rare: the settled seed misled it
            r, J = self._solve(target, self.q_nom, iters)
        dt = self.u.dt
        qvel = self._dls(J, np.r_[(target - obs[FRAME:2 * FRAME]) / dt, np.zeros(3)], 1e-6)
        vc = (self._closure_of(obs[3]) - self._closure_of(obs[FRAME + 3])) / dt
        qvel[self.finger_v[0]], qvel[self.finger_v[1]] = vc, -vc
        self.d.qvel[:] = qvel
        self.d.qacc_warmstart[:] = 0.0
        offset = np.zeros(3) if mocap_offset is None else np.asarray(mocap_offset, np.float64)
        self.d.mocap_pos[0] = self.d.xpos[self.hand] + offset
        self.d.mocap_quat[0] = [1.0, 0.0, 1.0, 0.0]
        self.mj.mj_forward(self.m, self.d)
        self.u._target_pos = obs[2 * FRAME:].copy()
        self.u._prev_obs = self._frame()
        self.u.curr_path_length = 0
        self.u._did_see_sim_exception = False
        return float(np.abs(r[:FRAME]).max())

    def step(self, obs: np.ndarray, action: np.ndarray,
             mocap_offset: np.ndarray | None = None) -> tuple[np.ndarray, float, bool]:
        """s'_sim (39,) from s and a, the set_state residual, and False if MuJoCo went
        unstable (then s'_sim is NaN)."""
        residual = self.set_state(obs, mocap_offset)
        warned: list[str] = []
        old = self.mj.get_mju_user_warning()
        self.mj.set_mju_user_warning(warned.append)  # not MUJOCO_LOG.TXT in the cwd
        try:
            nxt, *_ = self.u.step(np.clip(np.asarray(action, np.float64), -1.0, 1.0))
        finally:
            self.mj.set_mju_user_warning(old)
        if warned or self.u._did_see_sim_exception:
            return np.full(len(obs), np.nan), residual, False
        return np.asarray(nxt, np.float64), residual, True

    @staticmethod
    def align_quaternions(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """`pred` (39,) with each object quaternion's sign flipped where -q is closer to
        `ref`'s: q and -q are one orientation, and Meta-World's quaternion (scipy's, not
        canonicalised) can change sign between steps of a tumbling object."""
        out = pred.copy()
        for lo in QUAT_DIMS:
            q, r = out[lo:lo + 4], ref[lo:lo + 4]
            if np.sum((q + r) ** 2) < np.sum((q - r) ** 2):
                out[lo:lo + 4] = -q
        return out

    def close(self) -> None:
        """Release the environment."""
        self.env.close()


def episode_mocap_offsets(task: str, data: TaskData) -> np.ndarray:
    """(N, 3) mocap - hand position at every row: the hidden offset, exact for real rows.

    The mocap starts each episode at the task's `hand_init_pos` and moves by
    clip(a) * action_scale per step, clipped to the mocap box: a function of the actions.
    """
    env = make_env(task, seed=0)
    env.reset()
    u = env.unwrapped
    start, scale = np.asarray(u.hand_init_pos, np.float64), u.action_scale
    lo, hi = np.asarray(u.mocap_low), np.asarray(u.mocap_high)
    env.close()
    mocap = np.empty((len(data), 3))
    starts = set(data.episode_starts.tolist())
    m = start
    for i in range(len(data)):
        if i in starts:
            m = start.copy()
        mocap[i] = m
        # float32 product, as Meta-World computes it from the float32 action.
        m = np.clip(m + np.clip(data.actions[i, :3], -1, 1) * np.float32(scale), lo, hi)
    return mocap - data.observations[:, :3]


@dataclass
class DynamicsError:
    """`dynamics_error`'s result: the Table 4 number and its parts."""

    mse: float  # mean over samples and all 39 dims (Table 4's "dynamics error")
    mse_frame: float  # current-frame dims only (hand, gripper, objects)
    per_sample: np.ndarray  # (n,) mean over dims
    residual: np.ndarray  # (n,) how far s was from the nearest settable state (max abs)
    unsettable: int  # samples with residual > 1e-3 (included: for augmented data a state
    #                  no arm pose reaches is an error; for real ones, e.g. the arm at its
    #                  joint limits, a miss of the setter)
    unstable: int  # samples where MuJoCo diverged (excluded from the means)
    index: np.ndarray  # (n,) which rows of the input were checked


def dynamics_error(task: str, data: Transitions, *, mocap_offsets: np.ndarray | None = None,
                   max_samples: int | None = 1000, seed: int = 0, settle_steps: int = 30
                   ) -> DynamicsError:
    """Dynamics error of `data` (original, augmented or synthetic) on Meta-World `task`.

    `mocap_offsets` (N, 3), per row of `data`, from `episode_mocap_offsets` indexed by
    `data.rows` (augmented rows share their source row's hidden state). A random subset
    of `max_samples` rows is checked (~10 ms each).
    """
    rng = np.random.default_rng(seed)
    n = len(data)
    index = np.arange(n) if max_samples is None or n <= max_samples else np.sort(
        rng.choice(n, max_samples, replace=False))
    sim = MetaWorldSimulator(task, settle_steps=settle_steps)
    errs, resid, ok = [], [], []
    try:
        for i in index:
            off = None if mocap_offsets is None else mocap_offsets[i]
            nxt, r, stable = sim.step(data.observations[i], data.actions[i], off)
            nxt = sim.align_quaternions(nxt, data.next_observations[i])
            errs.append((data.next_observations[i] - nxt) ** 2)
            resid.append(r)
            ok.append(stable)
    finally:
        sim.close()
    e, good, res = np.array(errs), np.array(ok), np.array(resid)
    return DynamicsError(float(e[good].mean()), float(e[good][:, :FRAME].mean()), e.mean(1),
                         res, int((res > 1e-3).sum()), int((~good).sum()), index)


# --- L2 distance from the dataset --------------------------------------------------------


def nearest_distance(queries: np.ndarray, reference: np.ndarray, *, query_chunk: int = 2048,
                     ref_chunk: int = 16384, device: str | torch.device | None = None
                     ) -> np.ndarray:
    """(N,) Euclidean distance from each query (N, D) to its nearest reference row (M, D).

    Brute force as matrix products (torch.cdist's |q|^2 + |r|^2 - 2 q.r in one matmul)
    over chunks with a running minimum, then the winner's distance recomputed as |q - r|
    directly (no cancellation error). O(N M D) flops at BLAS speed: in 40-80 dims KD-trees
    prune nothing and lose (benchmarks/offline_td3bc.py). Uses CUDA when available.
    Memory: one (query_chunk, ref_chunk) float32 block, 128 MiB by default.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    ref = torch.as_tensor(np.asarray(reference, np.float32), device=dev)
    out = np.empty(len(queries), np.float32)
    for lo in range(0, len(queries), query_chunk):
        q = torch.as_tensor(np.asarray(queries[lo:lo + query_chunk], np.float32), device=dev)
        best = torch.full((len(q),), float("inf"), device=dev)
        arg = torch.zeros(len(q), dtype=torch.long, device=dev)
        for rlo in range(0, len(ref), ref_chunk):
            d = torch.cdist(q, ref[rlo:rlo + ref_chunk], compute_mode="use_mm_for_euclid_dist")
            val, idx = d.min(1)  # (B,) over this reference chunk
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + rlo, arg)
        out[lo:lo + len(q)] = (q - ref[arg]).norm(dim=1).cpu().numpy()
    return out


def normalizer(original: np.ndarray, floor: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Per-dim mean and scale max(std, floor) of the original data. The floor keeps
    near-constant dims (an object's quaternion at rest varies by ~1e-6) from turning a
    0.01 change into thousands of standard deviations."""
    return original.mean(0), np.maximum(original.std(0), floor)


def l2_distance_from_dataset(data: Transitions, original: Transitions, *,
                             max_queries: int | None = 100_000,
                             max_reference: int | None = None, normalize: bool = False,
                             seed: int = 0) -> np.ndarray:
    """(n,) distance of each transition of `data` to its nearest neighbour in `original`.

    Points are whole transitions [s, a, r, s'] (the vectors SynthER's diffusion model
    generates); Table 4's number is the mean. Raw units by default: Meta-World's
    observation dims share units (metres, unit quaternions, gripper in [0, 1]), and the
    paper's values (0.40-0.46) are of the raw scale (held-out real transitions are ~0.4
    from the rest of a 25k-transition dataset). `normalize=True` divides by `normalizer`'s
    floored std first. Random subsets of `max_queries` queries / `max_reference`
    references bound the cost (None: all).
    """
    rng = np.random.default_rng(seed)
    orig = original.transition_matrix()
    mean, scale = normalizer(orig) if normalize else (0.0, 1.0)
    ref = orig if max_reference is None or len(orig) <= max_reference else orig[
        rng.choice(len(orig), max_reference, replace=False)]
    q = data.transition_matrix()
    if max_queries is not None and len(q) > max_queries:
        q = q[rng.choice(len(q), max_queries, replace=False)]
    return nearest_distance((q - mean) / scale, (ref - mean) / scale)
