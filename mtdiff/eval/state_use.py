"""Does a policy act on the state and on the prompt? A check on dataset windows, no environment.

For each of `windows_per_task` windows per training task (rows drawn with a fixed seed from
the dataset view the checkpoint trained on) the policy is given the window's context (the
states before and at row t, replayed through its own `begin` / `observe`, exactly as a
rollout feeds it) and its executed action is compared with the data's action a_t:

    rel_err = sum_i ||a_pred,i - a_i||^2 / sum_i ||mean_a(task_i) - a_i||^2

mean_a(task) is the task's mean action over all its rows of that view (per task, not pooled:
a policy that only tells the tasks apart scores ~1.0, so 1.0 means "no state used"). Actions
are clipped to [-1, 1], as every policy's are. Three conditions:

    true               the window's own context and its task's prompt (task id)
    shuffled_history   the context of another window of the same task (states, and for the
                       Decision Transformers the actions and rewards in it), its own prompt
    wrong_prompt       its own context, the prompt (task id) of another, random training task

The context is as many of the latest steps as the policy reads (the planner's L states,
the Decision Transformers' K steps, the MLP baselines' one state), cut at the episode's
start like a rollout's; the Decision Transformers see the data's actions in it
(`teacher_force`) and count timesteps and the return-to-go from the context's first step.
The windows are training data (every episode of the view is trained on): the check asks
whether the policy learnt a state-dependent action, not whether it generalises.

In the evaluation stage (`mtdiff.eval.stage.run`) the check runs beside the rollout jobs
and lands in the evaluation JSON's summary as ``state_use`` (and in its MLflow run as
``state_use/*`` metrics). It is not a job record: a resumed evaluation computes it again
(seconds). An evaluation JSON written before the check has no ``state_use``; the report
shows it as not measured (rerun that evaluation). `eval.state_use_windows` is part of the
evaluation's folder hash (`Layout.evaluation`), so the experiment graph reruns evaluations
made before it existed.

Verdicts (fixed before any measurement, not fitted to a result): 95% intervals come from a
bootstrap over windows, stratified by task, paired across the conditions (the same windows
resampled for every condition).

- "uses the state" when shuffled_history - true has its whole interval above 0 and is at
  least `MARGIN` (shuffling costs a tenth of what the mean action gets wrong); else
  "ignores the state". Likewise "uses the prompt" with wrong_prompt - true ("n/a" with one
  training task).
- "learnt nothing" when the interval of true reaches 1.0 (not clearly better than the
  task's mean action); else "better than the mean action".
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff.artifacts import Checkpoint
from mtdiff.data.reader import OfflineDataset, load_dataset
from mtdiff.data.schema import DatasetError
from mtdiff.eval.policy import load_policy
from mtdiff.runtime import set_torch_threads

SEED = 0  # windows, shuffles, wrong tasks, prompts and the sampler's noise
MARGIN = 0.1  # the smallest gap (in rel_err units) that counts as using the state / prompt
BOOTSTRAP = 2000  # resamples of the windows for the intervals
CONDITIONS = ("true", "shuffled_history", "wrong_prompt")


@dataclass
class Windows:
    """The check's windows: row `rows[i]` of task `tasks[task[i]]` of `data`."""

    data: OfflineDataset
    tasks: list[str]
    task: np.ndarray  # (N,) index into `tasks`
    rows: np.ndarray  # (N,) row within its task
    mean_action: np.ndarray  # (len(tasks), act_dim) each task's mean (clipped) action

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def actions(self) -> np.ndarray:
        """(N, act_dim) the data's actions at the windows' rows, clipped to [-1, 1]."""
        return np.stack([_clip(self.data.tasks[self.tasks[k]].actions[r])
                         for k, r in zip(self.task, self.rows, strict=True)])


def _clip(a: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(a, np.float32), -1.0, 1.0)


def sample_windows(data: OfflineDataset, per_task: int, *, tasks: list[str] | None = None,
                   seed: int = SEED) -> Windows:
    """`per_task` rows of each task (all of them when it has fewer), drawn without
    replacement with `seed`, in task order."""
    if per_task < 2:
        raise ValueError(f"the state-use check needs at least 2 windows per task (to shuffle "
                         f"histories), got {per_task}; set eval.state_use_windows >= 2")
    rng = np.random.default_rng(seed)
    names = list(tasks or data.task_names)
    task, rows, means = [], [], []
    for k, name in enumerate(names):
        td = data.tasks[name]
        r = np.sort(rng.choice(len(td), size=min(per_task, len(td)), replace=False))
        task.append(np.full(len(r), k))
        rows.append(r)
        means.append(_clip(td.actions).mean(0))
    return Windows(data, names, np.concatenate(task), np.concatenate(rows), np.stack(means))


def context_length(policy: Any) -> int:
    """How many of the latest steps the policy's action reads: the Decision Transformers'
    K, the planners' L, else 1 (the MLP baselines act on the current state)."""
    for attr in ("K", "history"):
        v = getattr(policy, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1


def _context(w: Windows, which: np.ndarray, C: int) -> tuple[np.ndarray, ...]:
    """Windows `which`'s last <= C steps up to their row, within the episode, first step at
    index 0: states (n, C, obs), actions (n, C, act), rewards (n, C), lengths (n,)."""
    states, actions, rewards, lengths = [], [], [], []
    for i in which:
        td = w.data.tasks[w.tasks[w.task[i]]]
        t = int(w.rows[i])
        start = max(t - C + 1, t - int(td.step[t]))  # td.step[t]: steps since the episode began
        idx = np.minimum(np.arange(start, start + C), t)  # (C,) the unused tail repeats t
        states.append(td.observations[idx])
        actions.append(_clip(td.actions[idx]))
        rewards.append(td.rewards[idx])
        lengths.append(t - start + 1)
    return np.stack(states), np.stack(actions), np.stack(rewards), np.array(lengths)


def _conditions(policy: Any, names: list[str], rng: np.random.Generator
                ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(prompts, task_ids) standing for the tasks `names` (one per window)."""
    if policy.conditioning == "task_id":
        return None, np.array([policy.task_index(t) for t in names])
    if getattr(policy, "prompt_kind", "demo") == "layout":
        # (pulls in gymnasium, mujoco: imported on use)
        from mtdiff.envs.maze2d import load_map

        for t in set(names) - set(policy.prompts):
            policy.prompts[t] = policy.layout_prompt(load_map(t))
    prompts = [policy.sample_prompts(t, 1, rng)[0] for t in names]
    return np.stack(prompts), None


def predict(policy: Any, w: Windows, *, context_of: np.ndarray, prompt_task: np.ndarray,
            rng: np.random.Generator, batch: int = 256) -> np.ndarray:
    """The policy's executed action for every window, (N, act_dim): window i acts with the
    context of window `context_of[i]` and the prompt (task id) of task `prompt_task[i]`."""
    C = context_length(policy)
    force = getattr(policy, "teacher_force", None)
    out = []
    for lo in range(0, len(w), batch):
        sel = np.arange(lo, min(lo + batch, len(w)))
        states, actions, rewards, n = _context(w, context_of[sel], C)
        names = [w.tasks[k] for k in prompt_task[sel]]
        prompts, task_ids = _conditions(policy, names, rng)
        policy.begin(states[:, 0], prompts=prompts, task_ids=task_ids, env_tasks=names)
        for j in range(1, C):  # replay the context: windows with a step j observe it
            idx = np.flatnonzero(n > j)
            if not len(idx):
                break
            if force is not None:
                force(idx, actions[idx, j - 1])
            policy.observe(idx, states[idx, j], rewards[idx, j - 1])
        out.append(np.asarray(policy.act(np.arange(len(sel))), np.float32))
    return np.concatenate(out)


def _shuffled(w: Windows, rng: np.random.Generator) -> np.ndarray:
    """(N,) for each window another window of its task (a random cycle: none keeps its own)."""
    out = np.arange(len(w))
    for k in range(len(w.tasks)):
        idx = np.flatnonzero(w.task == k)
        if len(idx) > 1:
            perm = idx[rng.permutation(len(idx))]
            out[perm] = np.roll(perm, 1)
    return out


def _other_task(w: Windows, rng: np.random.Generator) -> np.ndarray:
    """(N,) a random task index other than each window's own."""
    n = len(w.tasks)
    return (w.task + rng.integers(1, n, size=len(w))) % n


def _interval(x: np.ndarray) -> list[float]:
    lo, hi = np.percentile(x, [2.5, 97.5])
    return [float(lo), float(hi)]


def measure(policy: Any, w: Windows, *, seed: int = SEED) -> dict[str, Any]:
    """rel_err of the three conditions with intervals, the gaps, the verdicts and per-task
    figures (module docstring); JSON-ready."""
    t0 = time.time()
    rng = np.random.default_rng(seed)
    own = np.arange(len(w))
    a = w.actions
    base = ((w.mean_action[w.task] - a) ** 2).sum(-1)  # (N,) the mean action's errors
    conds = {"true": (own, w.task), "shuffled_history": (_shuffled(w, rng), w.task)}
    if len(w.tasks) > 1:
        conds["wrong_prompt"] = (own, _other_task(w, rng))
    err = {c: ((predict(policy, w, context_of=ctx, prompt_task=pt, rng=rng) - a) ** 2).sum(-1)
           for c, (ctx, pt) in conds.items()}  # (N,) each
    # Paired, task-stratified bootstrap: one set of resampled windows for all conditions.
    boot = np.random.default_rng(seed + 1)
    picks = np.concatenate([
        idx[boot.integers(0, len(idx), size=(BOOTSTRAP, len(idx)))]
        for idx in (np.flatnonzero(w.task == k) for k in range(len(w.tasks)))], axis=1)
    den = base[picks].sum(1)  # (BOOTSTRAP,)
    rel = {c: e.sum() / base.sum() for c, e in err.items()}
    rel_b = {c: e[picks].sum(1) / den for c, e in err.items()}
    out: dict[str, Any] = {"windows": len(w), "windows_per_task": int(np.bincount(w.task).max()),
                           "tasks": list(w.tasks), "seed": seed, "margin": MARGIN,
                           "baseline": "each task's mean action (its rows of the view)",
                           "context": context_length(policy)}
    for c in CONDITIONS:
        out[c] = float(rel[c]) if c in rel else None
        out[f"{c}_ci"] = _interval(rel_b[c]) if c in rel else None
    for gap, c in (("state_gap", "shuffled_history"), ("prompt_gap", "wrong_prompt")):
        out[gap] = float(rel[c] - rel["true"]) if c in rel else None
        out[f"{gap}_ci"] = _interval(rel_b[c] - rel_b["true"]) if c in rel else None
    out.update(verdicts(out))
    out["per_task"] = {t: {c: float(e[w.task == k].sum() / base[w.task == k].sum())
                           for c, e in err.items()} for k, t in enumerate(w.tasks)}
    out["seconds"] = time.time() - t0
    return out


def _uses(gap: float | None, ci: list[float] | None) -> bool | None:
    if gap is None or ci is None:
        return None
    return bool(ci[0] > 0.0 and gap >= MARGIN)


def verdicts(r: dict[str, Any]) -> dict[str, Any]:
    """The verdicts in words (and as booleans) from a `measure` result's numbers."""
    state = _uses(r["state_gap"], r["state_gap_ci"])
    prompt = _uses(r["prompt_gap"], r["prompt_gap_ci"])
    nothing = bool(r["true_ci"][1] >= 1.0)
    return {"uses_state": state, "uses_prompt": prompt, "learnt_nothing": nothing,
            "verdict_state": "uses the state" if state else "ignores the state",
            "verdict_prompt": ("n/a (one training task)" if prompt is None else
                               "uses the prompt" if prompt else "ignores the prompt"),
            "verdict_learnt": "learnt nothing" if nothing else "better than the mean action"}


def check_checkpoint(checkpoint: str | Path, *, windows_per_task: int, diffusion: Any = None,
                     target_return: float | None = None, device: str | None = None,
                     seed: int = SEED) -> dict[str, Any]:
    """`measure` for a planner checkpoint of any method (`mtdiff.eval.policy.load_policy`)
    on its training tasks' windows of the dataset view it trained on, sampling like the
    evaluation (`diffusion`, `target_return`). A dataset that is not where the checkpoint
    says gives ``{"missing": reason}`` (the evaluation itself needs no dataset)."""
    set_torch_threads(1)
    meta = Checkpoint.find(checkpoint).meta
    ds = meta.get("dataset")
    if not ds:
        return {"missing": "the checkpoint's meta names no dataset (trained before it did)"}
    try:
        data = load_dataset(ds["path"], view=ds.get("view", "near-optimal"), tasks=meta["tasks"])
    except DatasetError as e:
        return {"missing": f"dataset unreadable: {e}"}
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    gen = torch.Generator(device=dev).manual_seed(seed)
    policy = load_policy(checkpoint, device=dev, diffusion=diffusion,
                         target_return=target_return, generator=gen)
    w = sample_windows(data, windows_per_task, tasks=meta["tasks"], seed=seed)
    return {"dataset": ds["path"], "view": ds.get("view"), **measure(policy, w, seed=seed)}


def metrics(result: dict[str, Any]) -> dict[str, float]:
    """A `measure` result as MLflow metrics (``state_use/...``; verdicts as 0/1)."""
    out = {f"state_use/{c}": result[c] for c in (*CONDITIONS, "state_gap", "prompt_gap")
           if result.get(c) is not None}
    for k in ("uses_state", "uses_prompt", "learnt_nothing"):
        if result.get(k) is not None:
            out[f"state_use/{k}"] = float(result[k])
    return out


def describe(result: dict[str, Any]) -> str:
    """One line: the three errors and the verdicts (or why there are none)."""
    if "missing" in result:
        return f"not measured ({result['missing']})"
    errs = ", ".join(f"{c} {result[c]:.3f}" for c in CONDITIONS if result.get(c) is not None)
    return (f"rel_err {errs} -> {result['verdict_state']}, {result['verdict_prompt']}, "
            f"{result['verdict_learnt']}")
