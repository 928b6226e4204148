"""Process-level set-up shared by every stage: Ray start-up, threads, device choice."""

from __future__ import annotations

import os
from typing import Any


def init_ray(**kwargs: Any) -> None:
    """Connect to the cluster in $RAY_ADDRESS (what `ray up` + `ray job submit` give), or
    start a local Ray instance. Does nothing when Ray is already initialised."""
    import ray

    if ray.is_initialized():
        return
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
    opts.setdefault("runtime_env", {"env_vars": {
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": poll, "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})
    ray.init(address=address, **opts)


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
