"""The offline-RL jobs of the experiment graph (paper §5.3, App. B, E: Tables 2, 4, Figs. 6, 7).

Each function runs inside one Ray task as ``fn(job, inputs) -> result`` (see
`mtdiff.experiment.jobs`); `job.params` holds the absolute paths it reads and writes,
`inputs` the results of the jobs it depends on. `mtdiff.experiment.offline_cells` builds them.

- `synthesize`: MTDiff-S data of one task — `synth_transitions` transitions (default
  `augment_copies` x the original's rows) from a prompt cut from `prompt_episodes` fresh
  expert demonstration(s), written as a dataset (provenance in its manifest) and combined
  with the original into an augmented dataset (`synthetic/`, `augmented/`);
- `td3bc`: one TD3-BC run (task x data variant x seed) on original / +RAD / +S4RL /
  +MTDiff-S (or MTDiff-S-single, or an MTDiff-S trained on N tasks); RAD's and S4RL's
  data are made in memory (deterministic from the seed; S4RL's from the TD3-BC agent
  trained on the original data with the same seed, a dependency);
- `quality`: Table 4 — dynamics error and L2 distance of the MTDiff-S / RAD / S4RL
  transitions of a task, and a 2-D embedding plot with the original data.

Synthesis and TD3-BC take a GPU when the cluster has one (the grid sets their resources).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mtdiff.config import Config, OfflineConfig
from mtdiff.data.transitions import Transitions, concat, from_task
from mtdiff.layout import td3bc_result


def heldout_config(cfg: Config, tasks: list[str]) -> Config:
    """The collection config of the tasks MTDiff-S never saw: scripted, noisy, small
    (`offline.heldout_transitions` rows, action noise `offline.heldout_noise`)."""
    from dataclasses import replace

    o = cfg.offline
    # No random-action episodes: the held-out original data is the noisy experts alone.
    mw = replace(cfg.metaworld, tasks=",".join(tasks), source="scripted",
                 transitions_per_task=o.heldout_transitions, scripted_noise=o.heldout_noise,
                 scripted_random=0.0)
    return replace(cfg, metaworld=mw)


def load_task(root: str | Path, task: str, view: str) -> Transitions:
    """A task's transitions from a dataset view."""
    from mtdiff.data.reader import load_dataset

    return from_task(load_dataset(root, view=view, tasks=[task]).tasks[task])


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def synthesize_data(cfg: Config, checkpoint: str, task: str, dataset: str, view: str,
                    root: Path) -> dict[str, Any]:
    """MTDiff-S data of `task` under `root` (`synthetic/`, `augmented/`); reused when on
    disk, started over when a killed run left it half-written."""
    from mtdiff.data.reader import read_manifest
    from mtdiff.data.writer import MANIFEST
    from mtdiff.synth.stage import combine
    from mtdiff.synth.stage import run as synthesize_stage

    o = cfg.offline
    syn, aug = root / "synthetic", root / "augmented"
    if not (aug / MANIFEST).exists():
        if not (syn / MANIFEST).exists():
            shutil.rmtree(syn, ignore_errors=True)
            num = o.synth_transitions or o.augment_copies * len(load_task(dataset, task, view))
            print(f"[offline] {task}: synthesizing {num} transitions with {checkpoint}")
            synthesize_stage(checkpoint, tasks=[task], num=num, out=syn,
                             prompt_episodes=o.prompt_episodes, seed=o.seed, device=_device(),
                             diffusion=cfg.diffusion,  # the run's sampler settings (its hash)
                             cfg=cfg)
        shutil.rmtree(aug, ignore_errors=True)
        combine(dataset, syn, aug, tasks=[task], view=view)
    man = read_manifest(syn)
    return {"task": task, "synthetic": str(syn), "augmented": str(aug), "original": dataset,
            "view": view, "checkpoint": checkpoint,
            "transitions": int(man["tasks"][task]["transitions"]),
            "synth_seconds": float(man.get("synth_seconds", 0.0)),
            "outputs": [str(syn / MANIFEST), str(aug / MANIFEST)]}


def synthesize(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `synthesize` job (module docstring)."""
    from mtdiff import tracking
    from mtdiff.data.reader import read_manifest
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)
    p = job.params
    res = synthesize_data(job.cfg, inputs[p["model_job"]]["checkpoint"], p["task"],
                          inputs[p["data_job"]]["dataset"], p["view"], Path(p["out"]))
    tracking.log_dataset(read_manifest(res["synthetic"]), res["synthetic"], context="synthetic")
    tracking.log_metrics({"synthetic_transitions": res["transitions"],
                          "synth_seconds": res["synth_seconds"]})
    return res


def column_data(kind: str, p: dict[str, Any], inputs: dict[str, dict[str, Any]],
                o: OfflineConfig, seed: int) -> Transitions:
    """TD3-BC's training data for a Table 2 column (`kind`: original, rad, s4rl, or an
    augmented dataset made by a `synthesize` job)."""
    from mtdiff.synth.augment import rad_augment

    original = load_task(inputs[p["data_job"]]["dataset"], p["task"], p["view"])
    if kind == "original":
        return original
    if kind == "rad":
        return concat([original, rad_augment(original, low=o.rad_low, high=o.rad_high,
                                             copies=o.augment_copies, seed=seed)])
    if kind == "s4rl":
        return concat([original, s4rl_data(original, inputs[p["agent_job"]]["agent"], o,
                                           o.augment_copies)])
    return load_task(inputs[p["synth_job"]]["augmented"], p["task"], "near-optimal")


def s4rl_data(original: Transitions, agent_path: str, o: OfflineConfig,
              copies: int) -> Transitions:
    """S4RL's augmented states, along the gradient of the original agent's Q."""
    from mtdiff.offline.td3bc import TD3BC
    from mtdiff.synth.augment import s4rl_augment

    return s4rl_augment(original, TD3BC.load(agent_path), eps=o.s4rl_eps, copies=copies)


def td3bc_cell(cfg: Config, data: Transitions, *, task: str, seed: int, out: Path,
               save_agent: bool = False, **record: Any) -> dict[str, Any]:
    """Train and evaluate TD3-BC on `data`; writes its result (`layout.td3bc_result`) and
    the agent under `out`."""
    from mtdiff import tracking
    from mtdiff.data.io import atomic_write_json
    from mtdiff.offline.run import run_td3bc

    o = cfg.offline
    agent = out / "agent.pt" if save_agent else None
    res = run_td3bc(data, task, o, max_episode_steps=cfg.metaworld.episode_steps,
                    checkpoint=agent, seed=seed, device=_device(),
                    log_every=max(1, min(1000, o.steps)))
    rec = {"task": task, "seed": seed, **record, "success": res.success_rate,
           "mean_return": res.mean_return, "curve": res.curve, "seconds": res.seconds,
           "transitions": len(data), "episodes": o.eval_episodes, "preset": cfg.preset}
    atomic_write_json(td3bc_result(out), rec)
    tracking.log_metrics({"success": res.success_rate, "mean_return": res.mean_return,
                          "transitions": len(data)})
    return {**rec, "agent": str(agent) if agent else None,
            "outputs": [str(td3bc_result(out))] + ([str(agent)] if agent else [])}


def td3bc(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One TD3-BC job (module docstring); curves and the result go to the job's run."""
    from mtdiff.runtime import set_torch_threads

    set_torch_threads(1)
    p, seed = job.params, int(job.params["seed"])
    data = column_data(p["data"], p, inputs, job.cfg.offline, seed)
    extra = {"num_tasks": p["num_tasks"]} if "num_tasks" in p else {}
    return td3bc_cell(job.cfg, data, task=p["task"], seed=seed, out=Path(p["out"]),
                      save_agent=bool(p.get("save_agent")), method=p["method"],
                      seen=p["seen"], **extra)


def quality(job: Any, inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Table 4 records of a task (MTDiff-S, RAD, S4RL with the first seed's agent) and its
    embedding plot."""
    from dataclasses import replace

    from mtdiff import tracking
    from mtdiff.data.io import atomic_write_json
    from mtdiff.data.reader import load_dataset
    from mtdiff.runtime import set_torch_threads
    from mtdiff.synth.augment import rad_augment
    from mtdiff.synth.embedding import embedding_plot
    from mtdiff.synth.quality import (
        dynamics_error,
        episode_mocap_offsets,
        l2_distance_from_dataset,
    )

    set_torch_threads(1)
    p, o = job.params, job.cfg.offline
    seed, task, out = int(p["seed"]), p["task"], Path(p["out"])
    dataset = inputs[p["data_job"]]["dataset"]
    original = load_task(dataset, task, p["view"])
    augmented = load_task(inputs[p["synth_job"]]["augmented"], task, "near-optimal")
    sets = {"mtdiff-s": augmented.subset(slice(len(original), None)),  # the synthetic rows
            "rad": rad_augment(original, low=o.rad_low, high=o.rad_high, seed=seed),
            "s4rl": s4rl_data(original, inputs[p["agent_job"]]["agent"],
                              replace(o, augment_copies=1), 1)}
    offsets = episode_mocap_offsets(task, load_dataset(dataset, view=p["view"],
                                                       tasks=[task]).tasks[task])
    recs = []
    for m, data in sets.items():
        off = None if m == "mtdiff-s" else offsets[data.rows]  # synthetic rows: unknown
        dyn = dynamics_error(task, data, mocap_offsets=off, max_samples=o.quality_samples,
                             seed=seed)
        l2 = l2_distance_from_dataset(data, original, seed=seed)
        recs.append({"task": task, "method": m, "dynamics_error": dyn.mse,
                     "l2_distance": float(l2.mean()), "samples": int(len(dyn.index)),
                     "unstable": dyn.unstable, "preset": job.cfg.preset})
        tracking.log_metrics({f"{m}/dynamics_error": dyn.mse,
                              f"{m}/l2_distance": float(l2.mean())})
    names = {"mtdiff-s": "MTDiff-S", "rad": "RAD", "s4rl": "S4RL"}
    plot = embedding_plot({"original": original.transition_matrix(),
                           **{names[m]: d.transition_matrix() for m, d in sets.items()}},
                          out / f"embedding-{task}.png", method=o.embedding,
                          max_points=max(o.quality_samples, 50), seed=seed,
                          title=f"{task}: original vs augmented transitions")
    atomic_write_json(out / "quality.json", recs)
    return {"records": recs, "plot": str(plot),
            "outputs": [str(out / "quality.json"), str(plot)]}
