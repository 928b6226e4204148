"""MTDiff-S synthesis into datasets, and combining original + synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
from mtdiff.data.schema import DatasetError
from mtdiff.synth.stage import combine, run, synthesize
from mtdiff.train.core import EMA, build_setup, save_checkpoint


def test_synthesize_seen_and_heldout_then_combine(synth_checkpoint, tmp_path):
    ckpt, data, cfg = synth_checkpoint
    out = synthesize(ckpt, tasks=["reach-v3", "box-close-v3"], num=20, out=tmp_path / "syn",
                     prompt_episodes=1, batch=4)
    man = read_manifest(out)
    H = cfg.data.horizon
    assert man["source"] == "synthetic" and man["synthetic"] is True
    assert man["provenance"]["trained_tasks"] == ["reach-v3"]
    assert all(t["transitions"] == 3 * H for t in man["tasks"].values())  # ceil(20 / H) seqs
    assert validate_dataset(out) == []
    syn = load_dataset(out)
    assert np.abs(syn.tasks["box-close-v3"].actions).max() <= 1.0
    aug = combine(data, out, tmp_path / "aug", tasks=["reach-v3"])
    amax = read_manifest(aug)
    orig_eps = read_manifest(data)["tasks"]["reach-v3"]["episodes"]
    assert amax["synthetic_from_episode"] == {"reach-v3": orig_eps}
    assert amax["tasks"]["reach-v3"]["transitions"] == 200 + 3 * H
    assert validate_dataset(aug) == []
    with pytest.raises(DatasetError, match="already holds a dataset"):
        synthesize(ckpt, tasks=["reach-v3"], num=5, out=out)


def test_the_synthesis_stage_sizes_from_the_data_and_resumes(synth_checkpoint, tmp_path):
    """The stage as the graph calls it: augment_copies x the task's rows, synthetic and
    augmented parts in its folder; a rerun reuses them, and an augmented part a kill left
    half-written is made again from the synthetic one."""
    import shutil

    from mtdiff.artifacts import Checkpoint, Dataset, Inputs

    ckpt, data, cfg = synth_checkpoint
    from dataclasses import replace

    cfg = apply_overrides(cfg, ["tracking.enabled=false"])
    cfg = replace(cfg, offline=replace(cfg.offline, synth_transitions=None, augment_copies=1))
    inputs = Inputs(model=Checkpoint.find(ckpt), data=Dataset.at(data), task="reach-v3",
                    view="near-optimal")
    made = run(cfg, inputs, tmp_path / "s")
    H = cfg.data.horizon
    assert made.path == (tmp_path / "s" / "augmented").resolve()
    assert made.info["transitions"] == -(-200 // H) * H  # ceil(200 / H) sequences of H
    assert made.to_record()["outputs"] == [str(made.path / "manifest.json"),
                                           str(made.synthetic / "manifest.json")]
    assert Dataset.from_record(made.to_record()) == made
    stamp = (made.synthetic / "manifest.json").stat().st_mtime_ns
    shutil.rmtree(made.path)  # the augmented part gone: remade, the synthetic one kept
    again = run(cfg, inputs, tmp_path / "s")
    assert again.info["transitions"] == made.info["transitions"]
    assert (again.synthetic / "manifest.json").stat().st_mtime_ns == stamp
    assert read_manifest(again.path)["tasks"]["reach-v3"]["transitions"] == 200 + made.info[
        "transitions"]


def test_planner_checkpoint_is_refused_by_the_synthesizer(tmp_path, write_dataset):
    from mtdiff.synth.synthesizer import load_synthesizer

    root = write_dataset()
    cfg = apply_overrides(get_preset("smoke"), ["data.history=2", "data.prompt_len=5"])
    setup = build_setup(cfg, root)
    save_checkpoint(tmp_path / "p", model=setup.model, ema=EMA(setup.model, 0.9),
                    optimizer=torch.optim.Adam(setup.model.parameters()), step=0,
                    meta=setup.meta)
    with pytest.raises(ValueError, match="not MTDiff-S"):
        load_synthesizer(tmp_path / "p")
