"""Fig. 7's task sets: subsets of the Meta-World collection, equal to a collection of
their own (a task's rows and prompts depend on its own seed only)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.grid import build_jobs

ONE_NODE = ClusterInfo([{"CPU": 2.0, "GPU": 0.0}])


def _smoke_with_set(spec: str, out: str):
    cfg = apply_overrides(get_preset("smoke"), [f"experiment.task_counts={spec}",
                                                f"offline.task_count_task={spec}"])
    return cfg, {j.name: j for j in build_jobs(cfg, out, ONE_NODE)}


def test_paper_task_sets_are_subsets_of_the_mt50_collection():
    jobs = {j.name: j for j in build_jobs(get_preset("paper"), "/tmp/x", ONE_NODE)}
    for spec in ("tasks-10", "tasks-20", "tasks-30", "tasks-45"):
        assert f"collect/metaworld-{spec}" not in jobs
        sub = jobs[f"subset/metaworld-{spec}"]
        assert sub.deps == ["collect/metaworld"] and sub.kind == "subset"
        assert jobs[f"train/metaworld-{spec}/mtdiff-s/s0"].deps == [sub.name]
        assert sub.name in jobs[f"offline/coffee-push-v3/mtdiff-s-{spec}/s0"].deps
    assert [j for j in jobs.values() if j.kind == "collect"] == [
        jobs[f"collect/{s}"] for s in ("maze2d", "metaworld", "cheetah-vel", "ant-dir")]


def test_a_set_with_tasks_the_collection_lacks_is_collected():
    _, jobs = _smoke_with_set("door-open-v3", "/tmp/x")  # smoke collects reach, push
    assert "collect/metaworld-door-open-v3" in jobs
    assert "subset/metaworld-door-open-v3" not in jobs


@pytest.mark.integration
def test_a_task_set_subset_equals_its_own_collection(tmp_path):
    from mtdiff.artifacts import Inputs
    from mtdiff.collect import run as collect
    from mtdiff.data.prompts import load_prompts
    from mtdiff.data.reader import load_dataset, read_manifest, validate_dataset
    from mtdiff.experiment.execute import job_inputs
    from mtdiff.experiment.execute import subset as subset_stage

    cfg, jobs = _smoke_with_set("push-v3", str(tmp_path / "out"))
    sub = jobs["subset/metaworld-push-v3"]
    source = collect(cfg, Inputs(suite="metaworld"), tmp_path / "mw")
    made = subset_stage.run(sub.cfg, *job_inputs(sub, {"collect/metaworld": source})
                            ).to_record()
    own = collect(replace(cfg, metaworld=replace(cfg.metaworld, tasks="push-v3")),
                  Inputs(suite="metaworld"), tmp_path / "own").path
    assert validate_dataset(made["dataset"]) == []
    a, b = read_manifest(made["dataset"]), read_manifest(own)
    assert a["config_hash"] == made["hash"] != b["config_hash"]  # named by its source
    # Rows (shards byte for byte: same checksums), episodes, views, statistics, prompts
    for k in ("tasks", "stats", "prompt_tasks", "details", "suite", "source"):
        assert a[k] == b[k], k
    assert list(a["tasks"]) == ["push-v3"] and "box-close-v3" in a["prompt_tasks"]
    pa, pb = load_prompts(made["dataset"]), load_prompts(own)
    assert sorted(pa) == sorted(pb)
    for t in pa:
        np.testing.assert_array_equal(pa[t], pb[t])
    da, db = load_dataset(made["dataset"]).tasks["push-v3"], load_dataset(own).tasks["push-v3"]
    for field in ("observations", "actions", "rewards", "terminated", "truncated", "success",
                  "episode", "step"):
        np.testing.assert_array_equal(getattr(da, field), getattr(db, field))
