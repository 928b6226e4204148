"""Reference rows: what "learnt nothing" scores on a suite.

Two policies that learnt nothing, evaluated like the methods, and the dataset's own
episodes:

- `ZeroPolicy`: the zero action at every step (standing still: on Cheetah-vel it scores
  -v* per step, on Ant-dir about the healthy reward);
- `RandomPolicy`: actions drawn uniformly from the environment's action box, seeded;
- the dataset's mean return and success per task and view (`dataset_reference`), and for
  held-out tasks, which have no episodes in the dataset, the return of the SAC policy
  whose episodes their prompts were cut from (Cheetah-vel, Ant-dir).

The two policies run through the evaluation's own code (`mtdiff.eval.stage.plan_jobs`,
`mtdiff.eval.suites.run_policy_job`): the same tasks and maps, episodes, evaluation
seeds, step budget and environment reset seeds as the methods. They are
prompt-conditioned on the dataset's prompt sets (and ignore them), so their prompt draw
uses the random stream as MTDiff-P's and Prompt-DT's does and the reset seeds that follow
it are the same.

    run(cfg, Inputs(data=Dataset.at(dataset), suite="cheetah-vel"), out)  # reference-<suite>.json
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff import tracking
from mtdiff.artifacts import Evaluation, Inputs
from mtdiff.collect.mujoco import SAC_DIR
from mtdiff.collect.sac_run import sac_histories
from mtdiff.config import Config, to_dict
from mtdiff.data.io import atomic_write_json
from mtdiff.data.prompts import load_prompts
from mtdiff.data.reader import read_manifest, view_summary
from mtdiff.data.writer import PROMPTS
from mtdiff.eval.policy import PolicyBase
from mtdiff.eval.stage import plan_jobs
from mtdiff.eval.suites import SUCCESS_UNDEFINED, EvalJob, make_envs, run_policy_job, summarize
from mtdiff.layout import reference_file
from mtdiff.runtime import init_ray

ZERO, RANDOM = "zero-action", "uniform-random"
POLICIES = (ZERO, RANDOM)
GROUPS = ("train", "heldout", "unseen")


class _ReferencePolicy(PolicyBase):
    """A policy that ignores its inputs; prompt-conditioned on the dataset's prompt sets
    only so that the evaluation draws prompts (and then reset seeds) as for MTDiff-P."""

    def __init__(self, action_space: Any, prompts: dict[str, np.ndarray],
                 prompt_len: int) -> None:
        super().__init__(sorted(prompts), prompts, prompt_len)
        self.low = np.asarray(action_space.low, np.float32)  # (act_dim,)
        self.high = np.asarray(action_space.high, np.float32)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError(f"{type(self).__name__} needs a bounded action box, got "
                             f"[{self.low}, {self.high}]")

    def sample_prompts(self, task: str, n: int, rng: np.random.Generator) -> np.ndarray | None:
        """The planners' draw where the dataset has the task's prompt set; else none (a
        prompted planner could not be evaluated there at all)."""
        return super().sample_prompts(task, n, rng) if task in self.prompts else None

    def begin(self, obs: np.ndarray, *, prompts: np.ndarray | None,
              task_ids: np.ndarray | None, env_tasks: list[str] | None = None) -> None:
        """Nothing to remember."""

    def observe(self, idx: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        """Nothing to remember."""


class ZeroPolicy(_ReferencePolicy):
    """The zero action (clipped into the box, for boxes that exclude 0)."""

    def act(self, idx: np.ndarray) -> np.ndarray:
        """(n, act_dim) zeros."""
        return np.clip(np.zeros((len(idx), len(self.low)), np.float32), self.low, self.high)


class RandomPolicy(_ReferencePolicy):
    """Actions uniform on the action box, from a generator seeded by `seed`."""

    def __init__(self, action_space: Any, prompts: dict[str, np.ndarray], prompt_len: int,
                 *, seed: int) -> None:
        super().__init__(action_space, prompts, prompt_len)
        # Its own stream: the evaluation's generator of the same seed draws the prompts
        # and reset seeds.
        self.rng = np.random.default_rng([int(seed), 0x5EED])

    def act(self, idx: np.ndarray) -> np.ndarray:
        """(n, act_dim) uniform draws."""
        return self.rng.uniform(self.low, self.high,
                                size=(len(idx), len(self.low))).astype(np.float32)


def make_policy(kind: str, action_space: Any, prompts: dict[str, np.ndarray],
                prompt_len: int, seed: int) -> _ReferencePolicy:
    """A reference policy by name (`POLICIES`)."""
    if kind == ZERO:
        return ZeroPolicy(action_space, prompts, prompt_len)
    if kind == RANDOM:
        return RandomPolicy(action_space, prompts, prompt_len, seed=seed)
    raise ValueError(f"unknown reference policy {kind!r}; choose one of {', '.join(POLICIES)}")


def _prompts(dataset: str | Path) -> dict[str, np.ndarray]:

    return load_prompts(dataset) if (Path(dataset) / PROMPTS).exists() else {}


def run_reference_job(job: EvalJob, kind: str, dataset: str, cfg: Config) -> dict[str, Any]:
    """One evaluation job of a reference policy (inside a Ray task): per-episode results
    in the evaluation's format (`mtdiff.eval.suites.run_policy_job`)."""
    envs, name = make_envs(job)
    policy = make_policy(kind, envs[0].action_space, _prompts(dataset), cfg.data.prompt_len,
                         job.seed)
    return {**run_policy_job(job, policy, cfg, envs, name), "policy": kind}


def reference_jobs(dataset: str | Path, suite: str, cfg: Config) -> list[EvalJob]:
    """The evaluation jobs a planner trained on `dataset` gets under `cfg` (own prompts
    only: the reference policies ignore prompts, so the wrong-prompt control is moot)."""
    man = read_manifest(dataset)
    # what a checkpoint's meta holds (`mtdiff.train.core.build_setup`): its training tasks
    # (all of the dataset's) and where the prompts are
    meta = {"tasks": list(man["tasks"]), "prompts": str(Path(dataset).resolve() / PROMPTS)}
    return plan_jobs(suite, meta, cfg, cfg.eval, tasks=None, maps=None, wrong_prompt=False)


def dataset_reference(dataset: str | Path, suite: str) -> dict[str, Any]:
    """The dataset's own episodes per task and view (`mtdiff.data.reader.view_summary`,
    what `pipelines/dataset.py info` prints): episodes, mean return, success rate (None
    where the suite defines no success); and per held-out task of Cheetah-vel / Ant-dir,
    the last evaluation return of the SAC run its prompts came from."""
    scored = suite not in SUCCESS_UNDEFINED
    tasks = {t: {v: {"episodes": int(s["episodes"]), "mean_return": float(s["mean_return"]),
                     "success_rate": float(s["success_rate"]) if scored else None}
                 for v, s in views.items()}
             for t, views in view_summary(dataset).items()}
    out: dict[str, Any] = {"tasks": tasks, "prompt_policy": {}}
    held = read_manifest(dataset).get("details", {}).get("heldout_prompt_tasks", [])
    if held:
        for t, hist in sac_histories(Path(dataset) / SAC_DIR, list(held)).items():
            if hist:
                out["prompt_policy"][t] = {"return": float(hist[-1]["return"]),
                                           "step": int(hist[-1]["step"])}
    return out


def run(cfg: Config, inputs: Inputs, out: Path) -> Evaluation:
    """Evaluate the reference policies on `inputs.suite` as the planners trained on
    `inputs.data` are evaluated (one Ray task per policy and job) and write
    `<out>/reference-<suite>.json`: per policy a summary per group and the per-episode
    results; the dataset's own numbers. Its headline goes to the active MLflow run (the
    job's) when `tracking.enabled`."""
    import ray

    dataset, suite = inputs.need("data").path, inputs.need("suite")
    jobs = reference_jobs(dataset, suite, cfg)
    init_ray()
    remote = ray.remote(run_reference_job).options(num_cpus=cfg.eval.num_cpus_per_actor)
    t0 = time.time()
    refs = {k: [remote.remote(j, k, str(dataset), cfg) for j in jobs] for k in POLICIES}
    # each job's result at its index: the same JSON on every run
    results = {k: [{kk: v for kk, v in r.items() if kk != "paths"} for r in ray.get(rs)]
               for k, rs in refs.items()}
    policies = {}
    for k, rs in results.items():
        policies[k] = {"all": summarize(rs)}
        for g in GROUPS:
            sel = [r for r in rs if r.get("group") == g]
            if sel:
                policies[k][g] = summarize(sel)
    doc = {"summary": {"suite": suite, "dataset": str(Path(dataset).resolve()),
                       "eval": to_dict(cfg.eval), "wall_seconds": time.time() - t0,
                       "policies": policies},
           "dataset": dataset_reference(dataset, suite), "episodes": results}
    path = reference_file(Path(out).resolve(), suite)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    if cfg.tracking.enabled:
        _log(policies)
    return Evaluation(path, {"suite": suite})


def _log(policies: dict[str, Any]) -> None:
    """The headline numbers into the active MLflow run (the job's)."""
    metrics = {f"{k}/{g}_{m}_mean": s[g][f"{m}_mean"] for k, s in policies.items()
               for g in ("all", *GROUPS) if g in s for m in ("return", "success")}
    tracking.log_metrics({k: v for k, v in metrics.items() if v is not None})
