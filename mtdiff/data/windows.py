"""Training batches: per-task balanced windows (paper App. A, Alg. 1 lines 2-7, Alg. 2).

Every batch holds M windows from each task (B = tasks x M). A window starts at a row t
of some episode, drawn uniformly over the task's rows, and carries (all normalised):

    actions      (B, H, act_dim)            a_t .. a_{t+H-1}                 (MTDiff-P x0)
    transitions  (B, H, obs+act+1)          (s, a, r)_t .. _{t+H-1}          (MTDiff-S x0)
    mask         (B, H)                     1 inside the episode, 0 past its end
    history      (B, L, obs_dim)            s_{t-L+1} .. s_t
    returns      (B, 1)                     R(tau): normalised return at t (`normalized_returns`)
    prompt       (B, J, obs+act)            a random window of the task's prompt set
                                            (or (B, cells, 5): a Maze2D layout)
    task_id      (B,)                       index of the task in the dataset

Which of them a batch carries is its `fields` ("planner", "synth", "all"). The baselines
(`mtdiff.baselines`) read two more sets, drawn with the same per-task balance:

    "qlearning"  one-step transitions (MTBC, MTIQL, MTCQL), a row drawn uniformly among the
                 task's rows that have a successor (an episode's last row only when it
                 is terminal: Meta-World episodes only truncate, so their last row, whose
                 s_{t+1} the data does not hold, is never drawn):
        obs (B, obs_dim), action (B, act_dim) raw in [-1, 1], reward (B,) raw,
        next_obs (B, obs_dim), done (B,), task_id (B,)
    "sequence"   K-step windows for the Decision Transformers (MT-DT, Prompt-DT), K = the
                 sampler's horizon; positions past the episode's end are zeros, mask 0:
        seq_obs (B, K, obs_dim), seq_actions (B, K, act_dim) raw, rtg (B, K, 1),
        timesteps (B, K) int64, mask (B, K), prompt (B, J, obs+act), task_id (B,)
        rtg: undiscounted reward-to-go mapped by the task's smallest and largest
        reward-to-go to [0, 1] (1 = the task's best return in the data, as the planner's
        R); `return_range[task]` (largest - smallest) turns a reward into its decrement.

Padding at episode edges: positions past the episode's end are zeros with mask 0 (the
loss ignores them); history before the episode's start repeats the first state (what
the planner sees at t=0 of an evaluation episode, see `mtdiff.eval`).

All rows of all tasks are concatenated once at construction; `sample` is then a handful
of vectorised numpy gathers, so it never starves training (see
`benchmarks/window_sampler.py`).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mtdiff import keys
from mtdiff.data.normalize import Normalizer
from mtdiff.data.reader import OfflineDataset, TaskData
from mtdiff.data.schema import DatasetError

Fields = Literal["planner", "synth", "all", "qlearning", "sequence"]


def reward_to_go(rewards: np.ndarray, starts: np.ndarray, gamma: float) -> np.ndarray:
    """(N,) discounted reward-to-go within each episode (episodes start at `starts`)."""
    out = np.empty(len(rewards), dtype=np.float64)
    bounds = np.r_[starts, len(rewards)]
    r64 = rewards.astype(np.float64)
    if gamma == 1.0:  # a reversed cumulative sum per episode, all at once
        csum = np.r_[0.0, np.cumsum(r64)]
        end = np.repeat(bounds[1:], np.diff(bounds))
        return csum[end] - csum[:-1]
    from scipy.signal import lfilter  # here: the torch-only GPU check has no scipy

    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        # y[n] = x[n] + gamma * y[n-1] on the reversed episode
        out[a:b] = lfilter([1.0], [1.0, -gamma], r64[a:b][::-1])[::-1]
    return out


ReturnScale = Literal["episode", "time-max", "task-max", "steps-left"]
RETURN_SCALES: tuple[str, ...] = ("episode", "time-max", "task-max", "steps-left")


def goal_terminated(suite: str, tasks: list[TaskData]) -> bool:
    """Whether a dataset's episodes end at a goal: Maze2D data with terminated episodes.

    Maze2D's environment terminates only on reaching G (`maze2d.episodes="goal"`); its
    D4RL-style episodes are cut from one continuing run and never terminate. Ant-dir's
    episodes terminate on falling, which is no goal, hence the suite check."""
    return suite == "maze2d" and any(bool(t.terminated.any()) for t in tasks)


def default_return_scale(suite: str, tasks: list[TaskData]) -> ReturnScale:
    """`data.return_scale=None`: "episode" for goal-terminated episodes, else "time-max"."""
    return "episode" if goal_terminated(suite, tasks) else "time-max"


def task_return_range(task: TaskData) -> float:
    """Largest minus smallest undiscounted reward-to-go of a task (> 0): the scale of the
    "sequence" fields' rtg, R = (G - G_min) / range, so a reward r lowers R by r / range."""
    rtg = reward_to_go(task.rewards, task.episode_starts, 1.0)
    return float(max(rtg.max() - rtg.min(), 1e-8))


def _time_max(rtg: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(N,) rtg scaled by the largest rtg seen with as many steps left (see below)."""
    # Steps left before the time limit; the limit is the task's longest episode in the
    # data (every Meta-World episode runs to it; a Maze2D goal episode ends early at G).
    left = int(steps.max()) + 1 - steps.astype(np.int64)  # (N,) in [1, T]
    lo = rtg.min()
    best = np.full(int(left.max()) + 1, -np.inf)
    np.maximum.at(best, left, rtg)  # best[n]: the largest rtg with n steps left
    span = best[left] - lo
    out = np.ones_like(rtg)  # every row at this n has the task's lowest rtg: all "best"
    ok = span > 1e-8
    out[ok] = (rtg[ok] - lo) / span[ok]
    return out


def _episode_return(task: TaskData) -> np.ndarray:
    """(N,) each row's whole-episode undiscounted return, min-max scaled over the task's
    episodes (1 at every row when all episodes return the same)."""
    starts = task.episode_starts
    lens = np.diff(np.r_[starts, len(task)])
    ret = np.add.reduceat(task.rewards.astype(np.float64), starts)  # (E,)
    lo, span = ret.min(), ret.max() - ret.min()
    scaled = (ret - lo) / span if span > 1e-8 else np.ones_like(ret)
    return np.repeat(scaled, lens)


def normalized_returns(task: TaskData, gamma: float, scale: ReturnScale) -> np.ndarray:
    """(N,) R(tau) for every row of a task (the definitions are `DataConfig.return_scale`'s).

    ``episode`` (paper: "the normalized return of tau"; authors' Maze2D code): the return
    of the row's whole episode, undiscounted (`gamma` is unused), mapped to [0, 1] by the
    task's smallest and largest episode return; every row of the best episodes has R = 1.
    The other scales read rtg = reward-to-go discounted by `gamma`, within each episode.
    ``time-max``: (rtg - lo) / (M(n) - lo), lo the task's smallest rtg, M(n) the largest rtg
    of the task's rows with the same number n of steps left before the time limit (the
    task's longest episode). In [0, 1], and R = 1 occurs at every n: "as good as the best
    episode in the data from this point in time", a target a planner can be given at every
    step of an episode.
    ``task-max``: rtg mapped to [0, 1] by the task's smallest and largest rtg.
    ``steps-left`` (authors' code): rtg / number of steps left in the episode.
    """
    if scale == "episode":
        return _episode_return(task).astype(np.float32)
    starts = task.episode_starts
    rtg = reward_to_go(task.rewards, starts, gamma)
    if scale == "steps-left":
        end = np.repeat(np.r_[starts[1:], len(task)], np.diff(np.r_[starts, len(task)]))
        return (rtg / (end - np.arange(len(task)))).astype(np.float32)
    if scale == "time-max":
        return _time_max(rtg, task.step).astype(np.float32)
    if scale != "task-max":
        raise ValueError(f"unknown return scale {scale!r}; use one of {list(RETURN_SCALES)}")
    lo, hi = rtg.min(), rtg.max()
    if hi - lo <= 1e-8:  # every row alike (e.g. goal episodes that all succeed): all "best"
        return np.ones(len(task), np.float32)
    return ((rtg - lo) / (hi - lo)).astype(np.float32)


def return_info(scale: ReturnScale, gamma: float, returns: np.ndarray) -> dict[str, Any]:
    """What a checkpoint records of its return definition: scale, discount (1 for the
    undiscounted ``episode``), the range of the training returns and the definition's
    natural target (1 for the [0, 1] scales, the largest training return for
    ``steps-left``)."""
    lo, hi = float(returns.min()), float(returns.max())
    return {"scale": scale, "discount": 1.0 if scale == "episode" else float(gamma),
            "min": lo, "max": hi, "target": hi if scale == "steps-left" else 1.0}


def resolve_target(info: dict[str, Any], target: float | None) -> float:
    """The R_max to plan toward: `target` checked against the range of the training returns
    `info` (from `return_info`), or the definition's natural target when None.

    The natural target itself is always accepted (an evaluation resolves None once and
    hands the value to its workers; a task whose returns are all equal has range [0, 0]
    on the [0, 1] scales, where 1 still means "its best")."""
    if target is None:
        return float(info["target"])
    lo, hi = float(info["min"]), float(info["max"])
    tol = 1e-6 * max(1.0, abs(hi))
    natural = abs(target - float(info["target"])) <= tol
    if not natural and not lo - tol <= target <= hi + tol:
        raise ValueError(
            f"eval.target_return={target:g} is outside the returns this checkpoint was trained "
            f"on, [{lo:.4g}, {hi:.4g}] (data.return_scale={info['scale']!r}, "
            f"return_discount={info['discount']:g}); give a value in that range, or null for "
            f"the definition's own target ({float(info['target']):.4g})")
    return float(target)


def checkpoint_return_info(meta: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's `return_info`; for one written before it was recorded, the old
    definition's (task-max in [0, 1], natural target 1)."""
    if "returns" in meta:
        return dict(meta["returns"])
    data = meta.get("config", {}).get("data", {})
    scale = data.get("return_scale", "task-max")
    hi = 1.0 if scale != "steps-left" else float("inf")
    return {"scale": scale, "discount": float(data.get("return_discount", 1.0)), "min": 0.0,
            "max": hi, "target": 1.0}


class WindowSampler:
    """Samples per-task balanced training batches from an `OfflineDataset` (see module doc)."""

    def __init__(
        self,
        dataset: OfflineDataset,
        prompts: dict[str, np.ndarray],
        normalizer: Normalizer,
        *,
        horizon: int,
        history: int,
        prompt_len: int,
        batch_per_task: int,
        return_scale: ReturnScale | None = None,
        return_discount: float = 0.99,
        fields: Fields = "all",
        tasks: list[str] | None = None,
        seed: int = 0,
        normalize_prompts: bool = True,
    ) -> None:
        self.task_names = tasks or dataset.task_names
        self.H, self.L, self.J, self.M = horizon, history, prompt_len, batch_per_task
        self.fields = fields
        self.rng = np.random.default_rng(seed)
        missing = [t for t in self.task_names if t not in prompts]
        if missing:
            raise DatasetError(f"no prompt set for tasks {missing}; the dataset's prompts.parquet "
                               "must cover every training task (rerun the collection)")
        tds = [dataset.tasks[t] for t in self.task_names]
        nz = normalizer.normalize
        self.obs = nz(keys.OBSERVATION, np.concatenate([t.observations for t in tds]))
        self.act = nz(keys.ACTION, np.concatenate([t.actions for t in tds]))
        self.rew = nz(keys.REWARD, np.concatenate([t.rewards for t in tds])[:, None])[:, 0]
        # None: the data's default (`default_return_scale`), which the checkpoint records.
        scale = return_scale or default_return_scale(dataset.suite, tds)
        self.ret = np.concatenate([normalized_returns(t, return_discount, scale) for t in tds])
        self.return_info = return_info(scale, return_discount, self.ret)
        sizes = np.array([len(t) for t in tds])
        self.offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        self.sizes = sizes
        # Per row: first row of its episode and one past its last (global indices).
        ep_start, ep_end = [], []
        for off, t in zip(self.offsets, tds, strict=True):
            s = t.episode_starts
            lens = np.diff(np.r_[s, len(t)])
            ep_start.append(np.repeat(s + off, lens))
            ep_end.append(np.repeat(np.r_[s[1:], len(t)] + off, lens))
        self.ep_start = np.concatenate(ep_start)
        self.ep_end = np.concatenate(ep_end)
        # Prompt sets stacked as (tasks, P_max, J, width); shorter sets are sampled only
        # within their own count. Demonstrations (width obs+act) are normalised like the
        # data; other prompts (Maze2D layouts) are features used as given.
        width = (dataset.obs_dim + dataset.act_dim if normalize_prompts
                 else prompts[self.task_names[0]].shape[-1])
        sets = []
        for t in self.task_names:
            p = prompts[t]
            if p.shape[1] < prompt_len or p.shape[2] != width:
                raise DatasetError(f"prompt set of {t!r} has shape {p.shape}; need windows of at "
                                   f"least J={prompt_len} steps and width {width}")
            sets.append(p[:, :prompt_len])
        self.prompt_counts = np.array([len(p) for p in sets])
        self.prompts = np.zeros((len(sets), self.prompt_counts.max(), prompt_len, width),
                                np.float32)
        for i, p in enumerate(sets):
            if normalize_prompts:
                p = np.concatenate([nz(keys.OBSERVATION, p[..., :dataset.obs_dim]),
                                    nz(keys.ACTION, p[..., dataset.obs_dim:])], axis=-1)
            self.prompts[i, : len(p)] = p
        self.task_ids = np.repeat(np.arange(len(self.task_names)), self.M)  # (B,)
        if fields in ("qlearning", "sequence"):
            self._init_baseline_fields(tds)

    def _init_baseline_fields(self, tds: list[TaskData]) -> None:
        """Arrays the "qlearning" / "sequence" fields read (module docstring)."""
        # Tanh-bounded actors: actions in the environments' units, clipped to [-1, 1].
        self.act_raw = np.clip(np.concatenate([t.actions for t in tds]), -1.0, 1.0).astype(
            np.float32)
        n = len(self.act_raw)
        if self.fields == "qlearning":
            self.rew_raw = np.concatenate([t.rewards for t in tds]).astype(np.float32)
            term = np.concatenate([t.terminated for t in tds])
            rows = np.arange(n)
            valid = (rows + 1 < self.ep_end) | term  # has s_{t+1}, or s_{t+1} is terminal
            self.next_row = np.where(term, rows, np.minimum(rows + 1, n - 1))
            self.done = term.astype(np.float32)
            per_task = [np.flatnonzero(valid[o:o + s]) + o
                        for o, s in zip(self.offsets, self.sizes, strict=True)]
            empty = [t for t, r in zip(self.task_names, per_task, strict=True) if len(r) == 0]
            if empty:
                raise DatasetError(f"tasks {empty} have no transition with a next state (only "
                                   "one-step episodes); Q-learning needs (s, a, r, s') rows")
            self.q_sizes = np.array([len(r) for r in per_task])
            self.q_offsets = np.r_[0, np.cumsum(self.q_sizes)[:-1]]
            self.q_rows = np.concatenate(per_task)
        else:
            self.steps = np.concatenate([t.step for t in tds]).astype(np.int64)
            self.rtg = np.concatenate([normalized_returns(t, 1.0, "task-max") for t in tds])
            # The Decision Transformers condition on this rtg, not on `data.return_scale`'s
            # R: their checkpoints record its definition (target 1 = the task's best).
            self.return_info = return_info("task-max", 1.0, self.rtg)
            self.return_range = {name: task_return_range(t)
                                 for name, t in zip(self.task_names, tds, strict=True)}

    @property
    def batch_size(self) -> int:
        """B = tasks x windows per task."""
        return len(self.task_ids)

    def _windows(self, tid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows (B,), idx (B, H), mask (B, H)): window starts and their in-episode rows."""
        B = len(tid)
        rows = self.offsets[tid] + (self.rng.random(B) * self.sizes[tid]).astype(np.int64)  # (B,)
        idx = rows[:, None] + np.arange(self.H)  # (B, H)
        end = self.ep_end[rows][:, None]  # (B, 1)
        mask = idx < end  # (B, H)
        return rows, np.minimum(idx, end - 1), mask

    def sample(self) -> dict[str, np.ndarray]:
        """One batch (numpy, float32 except task_id / timesteps); keys from `mtdiff.keys`."""
        tid = self.task_ids
        B = len(tid)
        if self.fields == "qlearning":
            return self._sample_transitions(tid)
        rows, idx, mask = self._windows(tid)
        hidx = np.maximum(rows[:, None] - np.arange(self.L - 1, -1, -1),
                          self.ep_start[rows][:, None])  # (B, L)
        pid = (self.rng.random(B) * self.prompt_counts[tid]).astype(np.int64)
        m = mask[..., None].astype(np.float32)  # (B, H, 1)
        batch = {
            keys.BATCH_MASK: mask.astype(np.float32),
            keys.BATCH_PROMPT: self.prompts[tid, pid],  # (B, J, obs+act)
            keys.BATCH_TASK_ID: tid,
        }
        if self.fields in ("planner", "all"):
            batch[keys.BATCH_ACTIONS] = self.act[idx] * m  # (B, H, act_dim)
            batch[keys.BATCH_HISTORY] = self.obs[hidx]  # (B, L, obs_dim)
            batch[keys.BATCH_RETURN] = self.ret[rows][:, None]  # (B, 1)
        if self.fields in ("synth", "all"):
            batch[keys.BATCH_TRANSITIONS] = np.concatenate(
                [self.obs[idx], self.act[idx], self.rew[idx][..., None]], axis=-1) * m
        if self.fields == "sequence":
            batch[keys.BATCH_SEQ_OBS] = self.obs[idx] * m  # (B, K, obs_dim)
            batch[keys.BATCH_SEQ_ACTIONS] = self.act_raw[idx] * m  # (B, K, act_dim)
            batch[keys.BATCH_RTG] = (self.rtg[idx] * mask)[..., None]  # (B, K, 1)
            batch[keys.BATCH_TIMESTEPS] = self.steps[idx] * mask  # (B, K) int64
        return batch

    def _sample_transitions(self, tid: np.ndarray) -> dict[str, np.ndarray]:
        """The "qlearning" fields: M transitions (s, a, r, s', done) per task."""
        pick = (self.rng.random(len(tid)) * self.q_sizes[tid]).astype(np.int64)
        rows = self.q_rows[self.q_offsets[tid] + pick]  # (B,)
        return {
            keys.BATCH_OBS: self.obs[rows], keys.BATCH_ACTION: self.act_raw[rows],
            keys.BATCH_REWARD: self.rew_raw[rows],
            keys.BATCH_NEXT_OBS: self.obs[self.next_row[rows]],
            keys.BATCH_DONE: self.done[rows], keys.BATCH_TASK_ID: tid,
        }
