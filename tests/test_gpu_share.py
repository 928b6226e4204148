"""GPU shares of host-bound jobs: the grid's requests per job kind, the trainer's, and
Ray packing them on a cluster that advertises GPUs it does not have (scheduling only:
no CUDA code runs)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mtdiff.config import apply_overrides, get_preset
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.grid import build_jobs

GPU_NODE = ClusterInfo([{"CPU": 16.0, "GPU": 2.0}])
CPU_NODE = ClusterInfo([{"CPU": 16.0, "GPU": 0.0}])
# Shares unlike the defaults and unlike each other: each must come from its own field.
SHARES = ("experiment.gpu_share_evaluate=0.2", "experiment.gpu_share_synthesize=0.3",
          "experiment.gpu_share_offline=0.1", "experiment.gpu_share_baseline=0.4",
          "experiment.gpu_share_small_train=0.6")


def _paper(cluster: ClusterInfo, *over: str) -> dict[str, object]:
    return {j.name: j for j in build_jobs(apply_overrides(get_preset("paper"), list(over)),
                                          "/tmp/x", cluster)}


def _train_gpu(job) -> float:
    return job.inner["GPU"] / job.inner["workers"]


def test_each_host_bound_kind_gets_its_share_and_full_batch_trainings_a_whole_gpu():
    jobs = _paper(GPU_NODE, *SHARES)
    by_kind: dict[str, set[float]] = {}
    for j in jobs.values():
        by_kind.setdefault(j.kind, set())
        if j.kind in ("synthesize", "offline"):
            by_kind[j.kind].add(j.resources["GPU"])
        elif j.kind == "evaluate":
            by_kind[j.kind].add(j.inner["GPU"])
            assert j.cfg.eval.num_gpus_per_actor == 0.2  # what its fanned-out tasks ask
    assert by_kind["evaluate"] == {0.2}
    assert by_kind["synthesize"] == {0.3}
    assert by_kind["offline"] == {0.1}
    trains = {n: j for n, j in jobs.items() if j.kind == "train"}
    for name, j in trains.items():
        if j.config["method"] in ("mtbc", "mtiql", "mtcql"):
            assert _train_gpu(j) == 0.4, name
        elif "tasks-10" in name:  # 10 tasks x 8 = 80 windows < small_batch (128)
            assert _train_gpu(j) == 0.6, name
        else:  # the diffusion models and DTs at full batch (Maze2D: 512; Fig. 6: 400)
            assert _train_gpu(j) == 1.0, name
    assert _train_gpu(trains["train/maze2d/mtdiff-p/s0"]) == 1.0
    assert _train_gpu(trains["train/metaworld-tasks-20/mtdiff-s/s0"]) == 1.0  # 160 windows
    # The threshold is a field: at 200 windows the 20-task set is small too.
    small = _paper(GPU_NODE, "experiment.small_batch=200")
    assert _train_gpu(small["train/metaworld-tasks-20/mtdiff-s/s0"]) == 0.5
    assert _train_gpu(small["train/metaworld/mtdiff-p/near-optimal/s0"]) == 1.0


def test_a_cpu_cluster_asks_for_no_gpu_and_keeps_every_key():
    cpu = _paper(CPU_NODE, *SHARES)
    for j in cpu.values():
        assert not j.resources.get("GPU") and not j.inner.get("GPU"), j.name
        assert j.cfg.eval.num_gpus_per_actor == 0
    # The shares decide where jobs run, not what they compute: no key depends on them.
    assert {n: j.key for n, j in cpu.items()} == {n: j.key for n, j in _paper(CPU_NODE).items()}


def test_ddp_trainings_keep_a_whole_gpu_per_worker():
    jobs = _paper(GPU_NODE, "train.num_workers=2")
    mtbc = jobs["train/metaworld/mtbc/near-optimal/s0"]
    assert mtbc.inner["GPU"] == 2.0 and mtbc.inner["workers"] == 2.0  # two ranks, two GPUs


def test_the_trainer_asks_ray_train_for_the_share(monkeypatch: pytest.MonkeyPatch):
    import mtdiff.train.ray_train as rt

    monkeypatch.setattr(rt, "use_gpu_from_cluster", lambda: True)
    cfg = get_preset("smoke")
    shared = rt.build_trainer(cfg, "/tmp", "/tmp/o", run_name="r", gpus_per_worker=0.25)
    assert shared.scaling_config.use_gpu
    assert shared.scaling_config.resources_per_worker == {"CPU": 2, "GPU": 0.25}
    whole = rt.build_trainer(cfg, "/tmp", "/tmp/o", run_name="r")
    assert whole.scaling_config._resources_per_worker_not_none == {"CPU": 2, "GPU": 1}


def test_a_training_job_hands_its_share_to_the_trainer(monkeypatch: pytest.MonkeyPatch):
    from mtdiff.experiment import execute

    asked: list[float | None] = []

    def fake_run(cfg, inputs, out):
        asked.append(cfg.train.gpus_per_worker)
        raise StopIteration  # no training: what it was asked for is the point

    monkeypatch.setitem(execute.STAGES, "train", (fake_run, execute.Checkpoint))
    for cluster, name, want in ((GPU_NODE, "train/metaworld/mtbc/near-optimal/s0", 0.25),
                                (GPU_NODE, "train/metaworld/mtdiff-p/near-optimal/s0", 1.0),
                                (CPU_NODE, "train/metaworld/mtbc/near-optimal/s0", None)):
        job = _paper(cluster)[name]
        with pytest.raises(StopIteration):
            execute.STAGES["train"][0](job.cfg, *execute.job_inputs(job, {
                job.params["data_job"]: execute.Dataset(Path("/tmp/d"))}))
        assert asked[-1] == want, name


def _requests(jobs: dict) -> dict[str, dict[str, float]]:
    """One Ray request per shape the graph makes: a job's own task (synthesis, TD3-BC), an
    evaluation's fanned-out task, a trainer's worker."""
    def one(pred, what):
        j = next(j for j in jobs.values() if pred(j))
        res = j.resources if what == "own" else j.inner
        n = j.inner.get("workers", 1.0) if what == "worker" else 1.0
        return {"num_cpus": res["CPU"] / n, "num_gpus": res["GPU"] / n}

    return {
        "evaluate": one(lambda j: j.kind == "evaluate", "inner"),
        "synthesize": one(lambda j: j.kind == "synthesize", "own"),
        "offline": one(lambda j: j.kind == "offline", "own"),
        "baseline": one(lambda j: j.config.get("method") == "mtbc", "worker"),
        "small-train": one(lambda j: "tasks-10" in j.name and j.kind == "train", "worker"),
        "train": one(lambda j: j.name == "train/metaworld/mtdiff-p/near-optimal/s0", "worker"),
    }


@pytest.mark.slow
@pytest.mark.integration
def test_host_bound_jobs_share_a_gpu_and_a_training_holds_a_whole_one():
    """On a local Ray that advertises 2 GPUs (and has none), the paper graph's requests:
    1/share host-bound jobs of each kind run at once on each GPU, and a full-batch
    training's GPU is never shared while it runs."""
    import ray

    from mtdiff.runtime import init_ray

    init_ray(num_cpus=16, num_gpus=2, include_dashboard=False)
    try:
        cluster = ClusterInfo.from_ray()
        assert cluster.gpus == 2.0
        req = _requests({j.name: j for j in build_jobs(get_preset("paper"), "/tmp/x", cluster)})
        assert req["train"]["num_gpus"] == 1.0 and req["offline"]["num_gpus"] == 0.25

        @ray.remote(num_cpus=0)
        class Meeting:
            """Counts arrivals per group, so a task can wait for the peers it runs with."""

            def __init__(self) -> None:
                self.n: dict[str, int] = {}

            def arrive(self, group: str) -> None:
                self.n[group] = self.n.get(group, 0) + 1

            def count(self, group: str) -> int:
                return self.n.get(group, 0)

        def hold(meeting, group: str, wait_group: str, wait_for: int, then_s: float) -> dict:
            # Arrive, stay until `wait_for` tasks of `wait_group` arrived (all of them run
            # at once), then a little longer. No CUDA: the GPU ids are Ray's bookkeeping.
            start = time.time()
            ray.get(meeting.arrive.remote(group))
            deadline = start + 120
            while ray.get(meeting.count.remote(wait_group)) < wait_for and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(then_s)
            return {"group": group, "gpus": list(ray.get_gpu_ids()), "start": start,
                    "end": time.time()}

        task = ray.remote(hold)
        # 1. Each host-bound kind: 2 / share tasks (both GPUs full) all run at once, 1 /
        # share on each GPU.
        for kind in ("evaluate", "synthesize", "offline", "baseline", "small-train"):
            r = req[kind]
            per_gpu = round(1 / r["num_gpus"])
            meeting = Meeting.remote()
            recs = ray.get([task.options(**r).remote(meeting, kind, kind, 2 * per_gpu, 0.2)
                            for _ in range(2 * per_gpu)], timeout=300)
            assert max(x["start"] for x in recs) < min(x["end"] for x in recs), kind
            ids = sorted(x["gpus"][0] for x in recs)
            assert all(len(x["gpus"]) == 1 for x in recs)
            assert ids == sorted([0] * per_gpu + [1] * per_gpu), (kind, ids)
            print(f"{kind:<12} share {r['num_gpus']:.2f}: {2 * per_gpu} at once, "
                  f"{per_gpu} per GPU (GPU ids {ids})")
        # 2. A full-batch training with 8 TD3-BC jobs: the training waits for 4 of them
        # to run beside it; while it runs, none is on its GPU.
        meeting = Meeting.remote()
        train_ref = task.options(**req["train"]).remote(meeting, "train", "offline", 4, 1.0)
        while ray.get(meeting.count.remote("train")) < 1:
            time.sleep(0.05)
        off = ray.get([task.options(**req["offline"]).remote(meeting, "offline", "offline", 0,
                                                             1.5) for _ in range(8)], timeout=300)
        tr = ray.get(train_ref, timeout=300)
        assert len(tr["gpus"]) == 1
        beside = [x for x in off if x["start"] < tr["end"] and x["end"] > tr["start"]]
        assert len(beside) >= 4 and all(x["gpus"] != tr["gpus"] for x in beside)
        print(f"train        GPU {tr['gpus']} alone for {tr['end'] - tr['start']:.1f} s; "
              f"{len(beside)} TD3-BC jobs beside it on GPU "
              f"{sorted({x['gpus'][0] for x in beside})}, "
              f"{len(off) - len(beside)} after it")
    finally:
        ray.shutdown()
