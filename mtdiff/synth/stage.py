"""Synthesis with MTDiff-S (paper §5.3, Alg. 2) into datasets of the project's format.

`synthesize_task` turns a prompt — J-step windows cut from K fresh expert demonstrations
of the task (K = ``--prompt-episodes``, 1 in the paper's few-shot setting), seen in
training or held out — into N synthetic transitions. Each denoised sequence of H steps
(s_t, a_t, r_t) becomes one short episode; s' of a row is the next row's state, so the
last row of a sequence has none (it is marked truncated, like any cut episode).

`combine` writes original + synthetic data of the same tasks as one augmented dataset
(original episodes first, synthetic ones after, the split recorded in the manifest).

`run(cfg, inputs, out)` is the stage: both, resumably, in `<out>/synthetic` and
`<out>/augmented`; `synthesize` the synthesis alone.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtdiff import keys, tracking
from mtdiff.artifacts import Dataset, Inputs
from mtdiff.config import Config, DiffusionConfig
from mtdiff.data.prompts import PromptWindow, cut_prompt_windows, load_prompts, write_prompts
from mtdiff.data.reader import load_dataset, read_manifest
from mtdiff.data.schema import DatasetError
from mtdiff.data.transitions import load_task
from mtdiff.data.writer import MANIFEST, TaskWriter, finalize_dataset
from mtdiff.layout import augmented_dir, synthetic_dir
from mtdiff.synth.synthesizer import Synthesizer, load_synthesizer


def expert_prompt(suite: str, task: str, *, prompt_episodes: int, prompt_len: int,
                  windows: int, seed: int, max_steps: int = 500,
                  window: PromptWindow = "before-success") -> np.ndarray:
    """Prompt windows (windows, J, obs+act) from `prompt_episodes` fresh expert episodes
    (`window`: where in them, see `CollectConfig.prompt_window`)."""
    rng = np.random.default_rng(seed)
    if suite == "metaworld":
        # (pulls in gymnasium: imported on use)
        from mtdiff.collect.scripted import expert_demos

        demos = expert_demos(task, num_episodes=prompt_episodes, seed=seed,
                             max_episode_steps=max_steps)
    elif suite == "maze2d":
        # (pulls in gymnasium, mujoco: imported on use; tests monkeypatch expert_episode here)
        from mtdiff.envs.maze2d import load_map
        from mtdiff.envs.maze2d_expert import expert_episode

        maze = load_map(task)
        demos = [expert_episode(maze, seed=seed + i, max_steps=max_steps)
                 for i in range(prompt_episodes)]
    else:
        raise ValueError(f"no expert for suite {suite!r}")
    return cut_prompt_windows(list(demos), prompt_len, windows, rng, window=window)


def synthesize_task(synth: Synthesizer, task: str, *, num: int, prompt: np.ndarray,
                    batch: int = 256, seed: int = 0, progress: bool = True,
                    diffusion: DiffusionConfig | None = None) -> list[dict[str, np.ndarray]]:
    """At least `num` synthetic transitions as episode dicts of H steps each (sampler
    settings: `diffusion`, default the checkpoint's)."""
    from tqdm import tqdm

    H = synth.build["horizon"]
    n_seq = math.ceil(num / H)
    gen = torch.Generator(device=synth.device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    episodes: list[dict[str, np.ndarray]] = []
    with tqdm(total=n_seq * H, unit="tr", desc=f"synthesize {task}", disable=not progress) as bar:
        while len(episodes) < n_seq:
            b = min(batch, n_seq - len(episodes))
            z = prompt[rng.integers(len(prompt), size=b)]  # Alg. 2 line 4: tau* ~ Z
            out = synth.synthesize(z, diffusion=diffusion, generator=gen)
            for i in range(b):
                episodes.append({
                    keys.OBSERVATION: out[keys.OBSERVATION][i].astype(np.float32),
                    keys.ACTION: out[keys.ACTION][i].astype(np.float32),
                    keys.REWARD: out[keys.REWARD][i].astype(np.float32),
                    keys.TERMINATED: np.zeros(H, bool),
                    keys.TRUNCATED: np.r_[np.zeros(H - 1, bool), True],
                    keys.SUCCESS: np.zeros(H, bool),  # unknown for synthetic data
                })
            bar.update(b * H)
    return episodes


def run(cfg: Config, inputs: Inputs, out: Path) -> Dataset:
    """MTDiff-S data of `inputs.task` (or of each of `inputs.tasks`) from `inputs.model`
    in `<out>/synthetic`: `offline.synth_transitions` per task (None: `offline.
    augment_copies` x the task's rows in `inputs.data`; the largest task's for several),
    prompts cut from `offline.prompt_episodes` fresh expert demonstrations, seed
    `offline.seed`, the sampler settings of `cfg.diffusion`. With `inputs.data`, also
    `<out>/augmented`, its view `inputs.view` (else `data.view`) and the synthetic data
    together, which it returns (else the synthetic dataset). A finished part is reused,
    one a kill left half-written is started over. Logs the synthetic dataset and its
    size into the active MLflow run when `tracking.enabled`."""
    model = inputs.need("model")
    tasks = [inputs.task] if inputs.task else list(inputs.need("tasks"))
    data, view, o = inputs.data, inputs.view or cfg.data.view, cfg.offline
    syn, aug = synthetic_dir(Path(out).resolve()), augmented_dir(Path(out).resolve())
    if data is None or not (aug / MANIFEST).exists():
        if not (syn / MANIFEST).exists():
            shutil.rmtree(syn, ignore_errors=True)
            if o.synth_transitions is None and data is None:
                raise ValueError("set offline.synth_transitions (how many transitions per "
                                 "task), or give the original data to size it from")
            num = o.synth_transitions or o.augment_copies * max(
                len(load_task(data.path, t, view)) for t in tasks)
            print(f"[synthesize] {','.join(tasks)}: {num} transitions per task with {model}")
            synthesize(model.path, tasks=tasks, num=num, out=syn,
                       prompt_episodes=o.prompt_episodes, seed=o.seed, cfg=cfg)
        if data is not None:
            shutil.rmtree(aug, ignore_errors=True)
            combine(data.path, syn, aug, tasks=tasks, view=view)
    man = read_manifest(syn)
    info = {"task": ",".join(tasks), "synthetic": str(syn), "view": view,
            "checkpoint": str(model.path),
            "transitions": sum(int(man["tasks"][t]["transitions"]) for t in tasks),
            "synth_seconds": float(man.get("synth_seconds", 0.0))}
    if cfg.tracking.enabled:
        tracking.log_dataset(man, syn, context="synthetic")
        tracking.log_metrics({"synthetic_transitions": info["transitions"],
                              "synth_seconds": info["synth_seconds"]})
    if data is None:
        return Dataset.at(syn, **{k: v for k, v in info.items() if k != "synthetic"})
    return Dataset.at(aug, original=str(data.path), **info)


def synthesize(checkpoint: str | Path, *, tasks: list[str], num: int, out: str | Path,
               prompt_episodes: int = 1, seed: int = 0, batch: int = 256,
               device: str | None = None, diffusion: DiffusionConfig | None = None,
               cfg: Config | None = None) -> Path:
    """Synthesize `num` transitions per task into a new dataset at `out`.

    diffusion: the sampler settings (sampler, steps, x̂_0 clipping); None = those of `cfg`.
    cfg: the caller's resolved config, whose ``collect`` section cuts the prompts and
    shards the output; None = the checkpoint's.
    """
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DatasetError(f"{out} already holds a dataset; synthesize into a new folder")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    synth = load_synthesizer(checkpoint, device=dev)
    meta = synth.m.meta
    od, ad = synth.build["obs_dim"], synth.build["act_dim"]
    cfg = cfg or synth.m.cfg
    dcfg = diffusion or cfg.diffusion
    t0 = time.time()
    prompts = {}
    for i, task in enumerate(tasks):
        prompt = expert_prompt(meta["suite"], task, prompt_episodes=prompt_episodes,
                               prompt_len=synth.build["prompt_len"],
                               windows=cfg.collect.prompts_per_task, seed=seed + 1000 * i,
                               max_steps=_episode_steps(cfg, meta["suite"]),
                               window=cfg.collect.prompt_window)
        prompts[task] = prompt
        eps = synthesize_task(synth, task, num=num, prompt=prompt, batch=batch, seed=seed + i,
                              diffusion=dcfg)
        w = TaskWriter(out, task, od, ad, cfg.collect.shard_rows)
        for e, ep in enumerate(eps):
            w.add_episode(e, ep)
        w.close()
    write_prompts(out, prompts, od, ad)
    seconds = time.time() - t0
    finalize_dataset(out, suite=meta["suite"], source="synthetic", tasks=tasks,
                     config={"checkpoint": str(Path(checkpoint).resolve()), "num": num,
                             "prompt_episodes": prompt_episodes, "seed": seed,
                             "sampler": dcfg.sampler, "sample_steps": dcfg.sample_steps,
                             "clip_denoised": dcfg.clip_denoised},
                     config_hash=f"synth-{meta['dataset']['hash']}-{seed}",
                     extra={"synthetic": True, "synth_seconds": round(seconds, 2),
                            "provenance": {"checkpoint": str(Path(checkpoint).resolve()),
                                           "trained_on": meta["dataset"],
                                           "trained_tasks": meta["tasks"],
                                           "prompt": f"{prompt_episodes} fresh expert "
                                                     "episode(s) per task"}})
    return out


def _episode_steps(cfg: Any, suite: str) -> int:
    return cfg.metaworld.episode_steps if suite == "metaworld" else cfg.maze2d.eval_episode_steps


def combine(original: str | Path, synthetic: str | Path, out: str | Path, *,
            tasks: list[str] | None = None, view: str = "near-optimal") -> Path:
    """Original + synthetic transitions of the same tasks as one augmented dataset."""
    out = Path(out)
    if (out / MANIFEST).exists():
        raise DatasetError(f"{out} already holds a dataset; combine into a new folder")
    syn_man = read_manifest(synthetic)
    names = tasks or list(syn_man["tasks"])
    orig = load_dataset(original, view=view, tasks=[t for t in names if t in
                                                    read_manifest(original)["tasks"]])
    syn = load_dataset(synthetic, tasks=names)
    split: dict[str, int] = {}
    for task in names:
        w = TaskWriter(out, task, syn.obs_dim, syn.act_dim, 100_000)
        e = 0
        for src in ([orig.tasks[task]] if task in orig.tasks else []) + [syn.tasks[task]]:
            starts = np.r_[src.episode_starts, len(src)]
            if src is syn.tasks[task]:
                split[task] = e
            for a, b in zip(starts[:-1], starts[1:], strict=True):
                w.add_episode(e, {keys.OBSERVATION: src.observations[a:b],
                                  keys.ACTION: src.actions[a:b], keys.REWARD: src.rewards[a:b],
                                  keys.TERMINATED: src.terminated[a:b],
                                  keys.TRUNCATED: src.truncated[a:b],
                                  keys.SUCCESS: src.success[a:b]})
                e += 1
        w.close()

    write_prompts(out, {t: p for t, p in load_prompts(synthetic).items() if t in names},
                  syn.obs_dim, syn.act_dim)
    finalize_dataset(out, suite=syn.suite, source="augmented", tasks=names,
                     config={"original": str(Path(original).resolve()), "view": view,
                             "synthetic": str(Path(synthetic).resolve())},
                     config_hash=f"aug-{syn_man['config_hash']}",
                     extra={"synthetic_from_episode": split})
    return out
