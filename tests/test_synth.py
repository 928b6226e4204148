"""MTDiff-S synthesis into datasets, and combining original + synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
from mtdiff.data.schema import DatasetError
from mtdiff.synth.stage import combine, run
from mtdiff.train.core import EMA, build_setup, save_checkpoint


def test_synthesize_seen_and_heldout_then_combine(synth_checkpoint, tmp_path):
    ckpt, data, cfg = synth_checkpoint
    out = run(ckpt, tasks=["reach-v3", "box-close-v3"], num=20, out=tmp_path / "syn",
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
        run(ckpt, tasks=["reach-v3"], num=5, out=out)


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
