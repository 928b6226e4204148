"""Process-level set-up shared by every stage: Ray start-up, threads, device choice."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtdiff.tracking.server import AUTH_ENV

# The address init_ray exported into $RAY_ADDRESS, and what was there before (restored when
# Ray is initialised again in this process after a shutdown: that instance is gone).
_exported: dict[str, str | None] = {}


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_ray(**kwargs: Any) -> None:
    """Connect to the cluster in $RAY_ADDRESS (what `ray up` + `ray job submit` give), or
    start a local Ray instance. Does nothing when Ray is already initialised.

    A local instance listens on loopback only (127.0.0.1; see `_loopback_node`). Then the
    instance's GCS address is exported as $RAY_ADDRESS, in this process and in every Ray
    worker's environment: Ray's own helpers that look the cluster up (Train V2's
    placement-group cleaner queries the state API) otherwise scan the machine for GCS
    processes and fail with "Found multiple active Ray instances" when other Ray
    instances run on the same machine.
    """
    import ray

    if ray.is_initialized():
        return
    if _exported and os.environ.get("RAY_ADDRESS") == _exported["address"]:
        _restore_address()  # the instance we exported was shut down: decide afresh
    address = os.environ.get("RAY_ADDRESS") or None
    # The dashboard serves Ray's state API, which Train V2's placement-group cleaner polls:
    # without it every training run logged "Failed to query Ray Train Controller actor
    # state" every few seconds. It costs ~0.4 s of start-up (measured) and shows jobs,
    # actors and Train runs at http://127.0.0.1:8265.
    opts: dict[str, Any] = {"include_dashboard": True, "log_to_driver": True,
                            "configure_logging": True, "logging_level": "WARNING"}
    opts.update(kwargs)
    # Workers get one torch/BLAS thread each: many processes share the cores, and 2-thread
    # OpenMP collapses under contention (measured). A stage that owns a machine raises it.
    # Ray Train's controller polls its workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s by
    # default); a fit's start, each report and its end wait for a poll. 0.25 s measured here:
    # a 10-report fit 28.8 s -> 10.6 s (report 1.61 s -> 0.21 s). Set it in the environment
    # to change it. Train V2 also routes a worker's print() through its logger *and* the
    # original print, so every progress line of a training worker reached the console twice;
    # RAY_TRAIN_ENABLE_PRINT_PATCH=0 keeps plain prints.
    poll = os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    runtime_env = opts.setdefault("runtime_env", {})
    env_vars = runtime_env.setdefault("env_vars", {})
    # MLflow's retry budget (`tracking.retry_budget`), where the driver has set one, its
    # telemetry switch (off: `mtdiff.tracking`), and the credentials of a tracking server that
    # asks for them (`tracking.server.AUTH_ENV`; Ray's dashboard shows a job's environment to
    # whoever can open it: a cluster's own users).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
              "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_DISABLE_TELEMETRY", *AUTH_ENV):
        if k in os.environ:
            env_vars.setdefault(k, os.environ[k])
    # A trainer whose workers wait for CPUs (other jobs of the graph hold them) keeps its
    # place in Ray's queue: Train V2 gives up a worker group that is not placed within
    # RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S (60 s) and asks again, over and over; the graph
    # checks up front that every request fits on a node, so waiting is right (and fails a job
    # whose request no live node can meet any more: `experiment.resource_wait_s`).
    for k, v in {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                 "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": poll,
                 "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "86400",
                 "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}.items():
        env_vars.setdefault(k, v)
    if address is not None and address.startswith("ray://"):
        ray.init(address=address, **opts)  # Ray Client: the cluster's processes are remote
        return
    from ray._private.services import canonicalize_bootstrap_address

    # What ray.init itself does with the address: None means "start a new local instance".
    bootstrap = canonicalize_bootstrap_address(address)
    port_var = "RAY_GCS_SERVER_PORT"  # read by Ray when it starts a head (GCS) process
    saved_port = os.environ.get(port_var)
    local = bootstrap is None
    if local:
        # A local instance for this run: its GCS port is chosen here so that the workers'
        # environment can name it before it exists.
        port = free_port()
        bootstrap = f"127.0.0.1:{port}"
        os.environ[port_var] = str(port)
        opts.setdefault("dashboard_host", "127.0.0.1")
    env_vars.setdefault("RAY_ADDRESS", bootstrap)
    try:
        with _loopback_node(local):
            ray.init(address=address, **opts)
    finally:
        if saved_port is None:
            os.environ.pop(port_var, None)
        else:
            os.environ[port_var] = saved_port
    gcs = ray.get_runtime_context().gcs_address
    if not _exported:
        _exported["previous"] = os.environ.get("RAY_ADDRESS")
    _exported["address"] = gcs
    os.environ["RAY_ADDRESS"] = gcs  # for what this process starts (Ray's CLI, state API)


@contextmanager
def _loopback_node(on: bool) -> Iterator[None]:
    """While a local instance starts: make Ray give the node the loopback address.

    A node's servers (GCS, raylet, agents, workers) bind to the node IP when it is a
    loopback address and to all interfaces otherwise, and ``ray.init(_node_ip_address=
    "127.0.0.1")`` is turned into the machine's address (`resolve_ip_for_localhost`).
    Ray's local-only mode, its default on macOS and Windows, keeps 127.0.0.1: the switch
    is $RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, read at import into
    ``ray._private.ray_constants.ENABLE_RAY_CLUSTER`` (so set there too: Ray is already
    imported here) and inherited by the processes ray.init starts. Both are put back
    afterwards; the running instance keeps its address.
    """
    if not on:
        yield
        return
    from ray._private import ray_constants

    var = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_const = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = saved_env


def _restore_address() -> None:
    prev = _exported.pop("previous", None)
    _exported.clear()
    if prev is None:
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = prev


def pause_for_tests(what: str, done: int) -> None:
    """Kill tests' hook: block this process for good once `done` (committed shards,
    saved checkpoints, finished trials, ...) reaches $MTDIFF_TEST_PAUSE_AFTER_<WHAT>.

    A test that kills a run must kill it mid-run on any machine; polling for progress
    and killing races the run's end on a fast one. With the variable set the run stops at
    a known point and waits for the kill. When $MTDIFF_TEST_PAUSED_FLAG names a file, it
    is created first, so the test knows the pause is reached. Unset (always, outside
    tests): nothing happens.
    """
    limit = os.environ.get(f"MTDIFF_TEST_PAUSE_AFTER_{what.upper()}")
    if not limit or done < int(limit):
        return
    flag = os.environ.get("MTDIFF_TEST_PAUSED_FLAG")
    if flag:
        Path(flag).touch()
    while True:
        time.sleep(3600)


def cluster_gpus() -> float:
    """GPUs in the Ray cluster (not the driver's CUDA: the driver may sit on a CPU head)."""
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def alive_nodes() -> list[dict[str, Any]]:
    """The Ray nodes that are alive: ``{"id", "ip", "resources"}`` each."""
    import ray

    return [{"id": n["NodeID"], "ip": n.get("NodeManagerAddress", ""),
             "resources": dict(n.get("Resources", {}))} for n in ray.nodes() if n.get("Alive")]


def largest_node(resource: str, *, having: str | None = None) -> float:
    """The most of `resource` any single alive node has (among nodes that also have
    `having`, e.g. GPU); 0 when none has it. What one worker can ever be given."""
    best = 0.0
    for n in alive_nodes():
        res = n["resources"]
        if having is None or res.get(having, 0.0) > 0:
            best = max(best, float(res.get(resource, 0.0)))
    return best


def release_orphaned_placement_groups() -> list[str]:
    """Remove this job's placement groups whose creating actor is dead; one line per group.

    Why: Ray keeps a placement group that is not detached until both the actor that created
    it and its job are dead. A Ray Train controller that dies with its node after creating
    its workers' placement group, but before the workers started (Train's own cleaner only
    learns of a group once its workers run), leaves the group holding its resources for as
    long as the graph's driver lives: on a cluster that lost a node, such a group can hold
    the only CPU that the retried training and the running evaluations wait for, and the
    graph never ends. A group whose creator is dead is used by no one, so it is given
    back. Groups a driver or a task created (Tune's, for one) have no creating
    actor and are left alone."""
    import ray
    from ray._private.state import state  # no public API tells a group's creating actor
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    table = gcs_pb2.PlacementGroupTableData
    job = ray.get_runtime_context().get_job_id()
    released = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        pg = table.FromString(raw)
        if (pg.state == table.REMOVED or pg.is_detached or not pg.creator_actor_dead
                or ray.ActorID(pg.creator_actor_id).is_nil()
                or pg.creator_job_id.hex() != job):
            continue
        remove_placement_group(PlacementGroup(ray.PlacementGroupID(pg.placement_group_id)))
        held = [dict(b.unit_resources) for b in pg.bundles]
        released.append(f"{pg.placement_group_id.hex()} (bundles {held})")
    return released


def cluster_cpus() -> float:
    """CPUs in the Ray cluster."""
    import ray

    return float(ray.cluster_resources().get("CPU", 1.0))


def set_torch_threads(n: int = 1) -> None:
    """Limit torch's intra-op threads (call in Ray workers that share cores) and flush
    denormal floats to zero.

    Denormals: small networks trained for thousands of steps (SAC, TD3-BC) drift into
    values below 1e-38, which x86 handles in microcode. Measured on the lean SAC update
    (one thread, reach-v3): 7.6 ms per update at the start, 8.9 ms after 2,000 updates
    without the flush, a flat 7.6 ms with it (`benchmarks/sac_collect.py`). Values that
    small carry no information for these models.
    """
    import torch

    torch.set_num_threads(max(1, n))
    torch.set_flush_denormal(True)


@contextmanager
def matmul_tf32(enabled: bool, device: Any) -> Iterator[None]:
    """fp32 matmuls on TF32 tensor cores inside the block when `device` is CUDA and
    `enabled` (`torch.backends.cuda.matmul.allow_tf32`, restored after); nothing elsewhere.

    Measured on an H200 (`benchmarks/gpu_check.py`, paper-sized MTDiff-P;
    docs/fast_planning.md, "On a GPU"): training at batch 400 77.5 steps/s against 40.5 in
    fp32 (bf16 autocast: 57.5);
    a DDIM-20 plan of 50 environments as a CUDA graph 24 ms against 60 ms (1 environment:
    8.3 vs 10.7 ms); a plan from the same noise differs from the fp32 one by at most 4.3e-4
    of its std.
    """
    import torch

    if not enabled or torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def duration(seconds: float) -> str:
    """Seconds as a short clock for progress lines: 45s, 12m05s, 3h07m."""
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
