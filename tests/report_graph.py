"""The report tests' inputs (the `run` fixture in tests/conftest.py writes them): job
records, evaluation JSONs and graph.json, written in the exact formats the graph writes.

Job records at `Layout.job_record(name)` with the runner's keys, evaluation JSONs as
`mtdiff.eval.stage.run` writes them (per-episode results + the summary the real
`mtdiff.eval.suites.summarize` makes), `graph.json` as the driver writes it, and Fig. 7's
sweep records through `mtdiff.report.contracts`. Episode outcomes are fixed so that
every number asserted is computed by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mtdiff.data.io import atomic_write_json
from mtdiff.layout import Layout
from mtdiff.report import write_task_count

T, F = True, False
KEY = "0123456789ab"  # every job's key in these graphs


# --- writers in the graph's formats ---------------------------------------------------------
def _record(lay: Layout, name: str, kind: str, config: dict[str, Any],
            result: dict[str, Any]) -> None:
    """A finished job's record, with the keys `mtdiff.experiment.execute.execute` writes."""
    atomic_write_json(lay.job_record(name), {
        "record": True, "name": name, "kind": kind, "key": KEY, "state": "done",
        "config": config, "result": result, "seconds": 1.0, "node": "node-a", "host": "vm",
        "finished": "2026-01-01 00:00:00", "code_version": "test"})


def _graph(lay: Layout, names: list[str]) -> None:
    """graph.json as the driver writes it (the report job last)."""
    atomic_write_json(lay.graph, {"seconds": 9.0, "jobs": [
        {"name": n, "kind": n.split("/")[0], "deps": [], "resources": {}, "config": {},
         "key": KEY, "state": "done" if lay.job_record(n).exists() else "failed",
         "seconds": 1.0, "node": "node-a", "record": str(lay.job_record(n)),
         "log": str(lay.job_log(n)), "error": ""} for n in [*names, "report"]]})


def _episodes(task: str, outcomes: list[bool], returns: list[float], group: str,
              prompt: str = "own", seed: int = 0) -> dict[str, Any]:
    """One (task, eval seed) result as `mtdiff.eval.suites.run_job` returns it."""
    n = len(outcomes)
    return {"task": task, "seed": seed, "prompt_task": task, "episodes": n,
            "success": outcomes, "returns": returns, "lengths": [10] * n,
            "first_success": [-1] * n, "env_steps": 10 * n, "plan_seconds": 0.1,
            "seconds": 0.2, "group": group, "prompt": prompt}


def _evaluate(lay: Layout, suite: str, method: str, view: str | None, seed: int,
              results: list[dict[str, Any]]) -> str:
    """An evaluate job: its evaluation JSON (as `eval.stage.run`) and its record (as
    `Evaluation.to_record`); returns the job name."""
    from mtdiff.eval.suites import summarize as eval_summarize

    cell = "/".join([suite, method, *([view] if view else []), f"s{seed}"])
    name = f"evaluate/{cell}"
    out = lay.out / "eval" / f"{suite}-train-{method}-{seed:012x}-abcd1234"
    own = [r for r in results if r["prompt"] == "own"]
    summary: dict[str, Any] = {"suite": suite, "checkpoint": str(out / "ckpt"),
                               "wall_seconds": 1.0, "diffusion": {"sampler": "ddim"},
                               "eval": {"episodes": 4, "seeds": [0], "stop_on_success": True},
                               "all": eval_summarize(own)}
    for group in ("train", "unseen", "heldout"):
        if any(r["group"] == group for r in own):
            summary[group] = eval_summarize([r for r in own if r["group"] == group])
    if any(r["prompt"] == "wrong" for r in results):
        summary["unseen_wrong_prompt"] = eval_summarize(
            [r for r in results if r["prompt"] == "wrong"])
    summary["env_steps_per_s"] = 10.0
    eval_file = atomic_write_json(out / f"eval-{suite}.json",
                                  {"summary": summary, "episodes": results})
    config = {"suite": suite, "method": method, "view": view, "seed": seed}
    groups = {g: summary[g]["success_mean"] for g in
              ("all", "train", "unseen", "unseen_wrong_prompt", "heldout") if g in summary}
    _record(lay, name, "evaluate", config, {
        "eval_file": str(eval_file), "checkpoint": summary["checkpoint"], "success": groups,
        "env_steps_per_s": 10.0, **config, "outputs": [str(eval_file)]})
    return name


def _td3bc(lay: Layout, task: str, method: str, seed: int, successes: int, seen: bool,
           **more: Any) -> str:
    """An offline (TD3-BC) job's record, the keys of `offline.stage.td3bc_cell`; 10
    evaluation episodes, `successes` of them successful."""
    name = f"offline/{task}/{method}/s{seed}"
    res = {"task": task, "seed": seed, "method": method, "seen": seen, **more,
           "success": successes / 10, "mean_return": 100.0 * successes,
           "curve": [{"step": 10.0, "success_rate": successes / 10, "mean_return": 1.0}],
           "seconds": 1.0, "transitions": 400, "episodes": 10, "preset": "local",
           "agent": None, "outputs": []}
    _record(lay, name, "offline", {"task": task, "method": method, "seed": seed, **more}, res)
    return name


# Meta-World episodes (4 per task, eval seed 0). MTDiff-P near-optimal, per training seed:
#   s0: reach 2/4, push 1/4 -> (50 + 25) / 2 = 37.5 %;  s1: reach 3/4, push 2/4 -> 62.5 %
#   mean 50.00, sample std |62.5 - 37.5| / sqrt(2) = 17.68, standard error 12.5; CI over
#   2 seeds (t, 1 df: t_0.975 = 12.706) 50 ± 158.83 = [-108.83, 208.83]
# MTDiff-P-onehot, seed 0 only: reach 1/4, push 3/4 -> 50 %; over its 8 episodes: std
#   of [1,0,0,0,1,1,1,0] x 100 = 53.45; CI [25, 75] (stratified bootstrap, see
#   test_one_seed_ci_over_episodes).
# U-Net: 0 everywhere -> Table 3's MTDiff-P > U-Net difference is 37.5 and 62.5 paired
#   by seed: the same t interval [-108.83, 208.83], not resolved (2 seeds cannot).
MW = {("mtdiff-p", 0): {"reach-v3": [T, T, F, F], "push-v3": [T, F, F, F]},
      ("mtdiff-p", 1): {"reach-v3": [T, T, T, F], "push-v3": [T, T, F, F]},
      ("mtdiff-p-unet", 0): {"reach-v3": [F] * 4, "push-v3": [F] * 4},
      ("mtdiff-p-unet", 1): {"reach-v3": [F] * 4, "push-v3": [F] * 4},
      ("mtdiff-p-onehot", 0): {"reach-v3": [T, F, F, F], "push-v3": [T, T, T, F]}}
# MTDiff-P's reach-v3 returns: s0 mean 25, s1 mean 45 -> 35.0 ± 14.1, se 10: [-92.1, 162.1]
RETURNS = {0: [10.0, 20.0, 30.0, 40.0], 1: [30.0, 40.0, 50.0, 60.0]}


def write_reproduction(tmp_path: Path) -> Path:
    """A reproduction folder: a tiny graph of every kind of record the report reads."""
    lay = Layout.at(tmp_path / "repro-local")
    names: list[str] = []
    _record(lay, "collect/metaworld", "collect", {"suite": "metaworld"},
            {"dataset": str(lay.out / "data" / "metaworld-abc"), "hash": "abc",
             "tasks": ["push-v3", "reach-v3"], "transitions": 4000, "outputs": []})
    names.append("collect/metaworld")
    for (method, seed), per_task in MW.items():
        names.append(_evaluate(lay, "metaworld", method, "near-optimal", seed, [
            _episodes(t, o, RETURNS[seed] if t == "reach-v3" and method == "mtdiff-p"
                      else [0.0] * 4, "train") for t, o in per_task.items()]))
    names.append("evaluate/metaworld/mtdiff-p-onehot/near-optimal/s1")  # failed: no record
    # Maze2D: own prompt 3/4 on unseen-0 for both seeds, wrong prompt 0/4 -> resolved.
    for method in ("mtdiff-p", "promptdt"):
        for seed in (0, 1):
            res = [_episodes(m, [T, T, F, F], [1.0] * 4, "train") for m in ("train-0", "train-1")]
            res += [_episodes("unseen-0", [T, T, T, F] if method == "mtdiff-p" else [F] * 4,
                              [1.0] * 4, "unseen"),
                    _episodes("unseen-0", [F] * 4, [0.0] * 4, "unseen", prompt="wrong")]
            names.append(_evaluate(lay, "maze2d", method, None, seed, res))
            import matplotlib.pyplot as plt

            plt.imsave(lay.out / "eval" / f"maze2d-train-{method}-{seed:012x}-abcd1234" /
                       "maze2d-paths.png", np.full((30, 40, 3), 0.5 if seed else 0.8))
    # Cheetah-vel: training tasks return -30 / -28 (MTDiff-P), -40 / -36 (PromptDT).
    for method, (r0, r1) in (("mtdiff-p", (-30.0, -28.0)), ("promptdt", (-40.0, -36.0))):
        for seed, r in ((0, r0), (1, r1)):
            names.append(_evaluate(lay, "cheetah-vel", method, None, seed, [
                _episodes("cheetah-vel-0", [F] * 4, [r] * 4, "train"),
                _episodes("cheetah-vel-2", [F] * 4, [r - 10] * 4, "heldout")]))
    # TD3-BC: box-close unseen, reach seen; successes out of 10 per seed.
    table2 = {"original": (2, 4), "s4rl": (5, 5), "rad": (3, 3), "mtdiff-s": (6, 8)}
    for task, seen in (("box-close-v3", False), ("reach-v3", True)):
        for m, per_seed in table2.items():
            for seed, k in enumerate(per_seed):
                names.append(_td3bc(lay, task, m, seed, k, seen))
    for seed, k in enumerate((1, 3)):
        names.append(_td3bc(lay, "reach-v3", "mtdiff-s-single", seed, k, True))
    for task in ("box-close-v3", "reach-v3"):
        name = f"quality/{task}"
        _record(lay, name, "quality", {"task": task}, {"records": [
            {"task": task, "method": m, "dynamics_error": e, "l2_distance": 0.4,
             "samples": 8, "unstable": 0, "preset": "local"}
            for m, e in (("mtdiff-s", 0.02), ("rad", 0.06), ("s4rl", 0.0001))],
            "plot": "", "outputs": []})
        names.append(name)
    # Fig. 7: the graph's 10-task MTDiff-S; a sweep wrote 20 tasks into the contract file
    names.append(_td3bc(lay, "coffee-push-v3", "mtdiff-s-tasks-10", 0, 4, True, num_tasks=10))
    write_task_count(lay.out, [{"num_tasks": 20, "seed": s, "success": v, "task":
                                "coffee-push-v3"} for s, v in ((0, 0.5), (1, 0.7))])
    _graph(lay, names)
    return lay.out


def _section(md: str, title: str) -> str:
    """The Markdown section whose heading starts with `title`."""
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _line(md: str, start: str) -> str:
    found = [ln for ln in md.splitlines() if ln.startswith(start)]
    assert found, f"no line starting with {start!r}"
    return found[0]


def _results(out: Path) -> dict[str, Any]:
    return json.loads((out / "report" / "results.json").read_text())
