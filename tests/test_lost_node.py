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


def _orphaned_group(cpus: float) -> str:
    """A placement group whose creating actor is dead, as a Ray Train controller that died
    with its node leaves it: Ray keeps it (and its CPUs) while the job lives."""
    import ray
    from ray.util.placement_group import placement_group

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self) -> str:
            pg = placement_group([{"CPU": cpus}])
            ray.get(pg.ready(), timeout=60)
            return pg.id.hex()

    maker = Maker.remote()
    pg = ray.get(maker.make.remote())
    ray.kill(maker)
    return pg


def _live_groups() -> set[str]:
    from ray.util import placement_group_table

    return {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}


def test_placement_groups_of_dead_actors_are_given_back_and_no_others():
    import ray
    from ray.util.placement_group import placement_group

    from mtdiff.runtime import release_orphaned_placement_groups

    fresh_ray(num_cpus=2, include_dashboard=False)
    try:
        orphan = _orphaned_group(1.0)
        mine = placement_group([{"CPU": 0.5}])  # the driver's own: no creating actor
        ray.get(mine.ready(), timeout=60)

        @ray.remote(num_cpus=0)
        class Holder:
            def make(self) -> str:
                self.pg = placement_group([{"CPU": 0.25}])
                ray.get(self.pg.ready(), timeout=60)
                return self.pg.id.hex()

        holder = Holder.remote()
        kept = ray.get(holder.make.remote())  # its actor is alive
        time.sleep(1.0)
        assert orphan in _live_groups() and ray.available_resources().get("CPU", 0) == 0.25
        released = release_orphaned_placement_groups()
        assert [r.split()[0] for r in released] == [orphan]
        deadline = time.time() + 30
        while orphan in _live_groups() and time.time() < deadline:
            time.sleep(0.2)
        assert _live_groups() == {mine.id.hex(), kept}
        assert release_orphaned_placement_groups() == []
    finally:
        ray.shutdown()


def test_a_graph_gets_the_cpu_a_dead_trainer_held(tmp_path):
    """A dead controller's group holds the only CPU; a job that needs that CPU must still
    get it (it would wait forever)."""
    import ray

    cfg = get_preset("smoke")
    job = Job("evaluate/x", "evaluate", cfg, {}, resources={"CPU": 1},  # needs the one CPU
              params={"out": str(tmp_path / "eval")})
    fresh_ray(num_cpus=1, include_dashboard=False)
    t0 = time.time()

    def watch() -> str | None:
        return "still waiting for the CPU after 90 s" if time.time() - t0 > 90 else None

    try:
        _orphaned_group(1.0)
        one = ClusterInfo.from_ray()
        out = run_graph([job], out=tmp_path, cluster=one, mlflow_spec=None,
                        code_version="test", retries=0, max_concurrent_train=None,
                        progress=False, live=LiveCluster(one, every=0.5), watch=watch,
                        release_every=1.0)
    finally:
        ray.shutdown()
    # The job's task got the CPU and ran (and failed: it has no model to evaluate).
    assert [(o.name, o.state) for o in out] == [("evaluate/x", "failed")]
    assert "needs inputs.model" in out[0].error
