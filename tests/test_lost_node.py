"""A cluster that shrinks while the graph runs: trainings are admitted against the nodes
alive now, and a job needing what no live node offers fails in one line after a set wait
(real Ray: a two-node `ray.cluster_utils.Cluster` in this process, and a local instance)."""

from __future__ import annotations

import time

import pytest

from mtdiff.config import get_preset
from mtdiff.experiment.cells import ClusterInfo
from mtdiff.experiment.jobs import Job
from mtdiff.experiment.runner import LiveCluster, run_graph, train_capacity, unplaceable
from tests.conftest import fresh_ray


@pytest.fixture
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker = cluster.add_node(num_cpus=1)
        fresh_ray(address=cluster.address)
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_live_cluster_sees_a_lost_node_and_capacity_shrinks(two_nodes):
    cluster, worker = two_nodes
    live = LiveCluster(ClusterInfo.from_ray(), every=0.0)
    first, changed = live.current()
    assert not changed and len(first.nodes) == 2
    assert train_capacity([], first, None) == ("CPU", 2.0)
    cluster.remove_node(worker)
    deadline = time.time() + 60
    while time.time() < deadline:  # Ray marks the node dead after its heartbeat stops
        now, changed = live.current()
        if changed:
            break
        time.sleep(0.5)
    assert changed and len(now.nodes) == 1
    assert train_capacity([], now, None) == ("CPU", 1.0)
    # A trainer planned for the two-node cluster: 2 workers of 1 CPU still fit one by one;
    # one worker of 2 CPUs fits nowhere now.
    job = Job("train/x", "train", get_preset("smoke"), {}, inner={"CPU": 2.0, "workers": 2})
    assert unplaceable(job, now) is None
    job.inner = {"CPU": 2.0, "workers": 1}
    assert unplaceable(job, now) == "what it starts needs {'CPU': 2.0}"


def test_a_job_no_live_node_can_host_fails_in_one_line_and_blocks_its_dependents(tmp_path):
    import ray

    cfg = get_preset("smoke")
    big = Job("train/big", "train", cfg, {}, inner={"CPU": 4.0, "workers": 1})
    after = Job("evaluate/big", "evaluate", cfg, {}, deps=["train/big"], resources={"CPU": 1})
    fresh_ray(num_cpus=1, include_dashboard=False)
    try:
        one = ClusterInfo.from_ray()
        t0 = time.time()
        out = run_graph([big, after], out=tmp_path, cluster=one, mlflow_spec=None,
                        code_version="test", retries=0, max_concurrent_train=None,
                        progress=False, resource_wait_s=3.0,
                        live=LiveCluster(one, every=0.5))
    finally:
        ray.shutdown()
    states = {o.name: (o.state, o.error) for o in out}
    assert states["train/big"][0] == "failed"
    err = states["train/big"][1]
    assert "\n" not in err and "waited 3s: what it starts needs {'CPU': 4.0}" in err
    assert "rerun the same command" in err
    assert states["evaluate/big"] == ("blocked", "train/big failed")
    assert 3.0 <= time.time() - t0 < 60  # waited its time, then went on


def test_a_watch_reason_stops_the_graph(tmp_path):
    import ray

    from mtdiff.experiment.runner import GraphAborted

    cfg = get_preset("smoke")
    waiting = Job("train/big", "train", cfg, {}, inner={"CPU": 4.0, "workers": 1})
    calls = []

    def watch() -> str | None:
        calls.append(time.time())
        return "the tracking server is gone" if len(calls) > 2 else None

    fresh_ray(num_cpus=1, include_dashboard=False)
    try:
        one = ClusterInfo.from_ray()
        with pytest.raises(GraphAborted, match="the tracking server is gone"):
            run_graph([waiting], out=tmp_path, cluster=one, mlflow_spec=None,
                      code_version="test", retries=0, max_concurrent_train=None,
                      progress=False, resource_wait_s=600.0,
                      live=LiveCluster(one, every=0.5), watch=watch)
    finally:
        ray.shutdown()
    assert len(calls) == 3
