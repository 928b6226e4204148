"""What the offline-RL jobs of the graph cost (`mtdiff.experiment.workload` has the rest):

- synthesize: ceil(transitions / H) sequences in batches of 256, ``sample_steps`` calls each;
- offline: ``offline.steps`` TD3-BC updates and its evaluation episodes (500 steps each);
- quality, subset: their own loops (see the functions).
"""

from __future__ import annotations

import math
from dataclasses import replace

from mtdiff.config import Config
from mtdiff.envs.metaworld import ACT_DIM, OBS_DIM
from mtdiff.experiment.flops import mlp_flops, network, td3bc_update_flops
from mtdiff.experiment.jobs import Job
from mtdiff.experiment.rates import Calibration
from mtdiff.experiment.workload import (
    Task,
    Work,
    job_start_s,
    on_gpu,
    own_need,
    plan_s,
    suite_shape,
)

# `mtdiff.synth.quality.l2_distance_from_dataset`'s `max_queries` (that module imports torch
# and MuJoCo, which pricing a plan does not need; tests/test_cost.py holds them equal).
NEAREST_QUERIES = 100_000


def _offline_rows(cfg: Config, job: Job, cal: Calibration) -> float:
    """Original rows of the offline job's task (its dataset: trained-on or held-out)."""
    data_job = str(job.params.get("data_job", "collect/metaworld"))
    if data_job == "collect/metaworld-heldout":
        ep = cfg.metaworld.episode_steps
        return math.ceil(cfg.offline.heldout_transitions / ep) * ep
    return float(suite_shape(cfg, "metaworld").rows_per_task)


def synthesize_work(job: Job, cal: Calibration) -> Work:
    """ceil(N / H) MTDiff-S sequences in batches of 256, `sample_steps` calls each, then the
    synthetic and augmented datasets written."""
    cfg = job.cfg
    o = cfg.offline
    scfg = replace(cfg, model=replace(cfg.model, kind="mtdiff-s"))
    shape = suite_shape(cfg, "metaworld")
    net = network(scfg, "metaworld", shape.obs_dim, shape.act_dim, len(shape.tasks))
    need = own_need(job)
    dev = cal.on(on_gpu(need))
    orig = _offline_rows(cfg, job, cal)
    num = o.synth_transitions or o.augment_copies * orig
    seqs = math.ceil(num / cfg.data.horizon)
    calls = 0.0
    for b in [256] * (seqs // 256) + ([seqs % 256] if seqs % 256 else []):
        calls += plan_s(scfg, net, b, dev)
    prompt = o.prompt_episodes * cfg.metaworld.episode_steps / cal.value(
        "metaworld_scripted_steps_per_s")
    io = orig / cal.value("load_rows_per_s") + (2 * num + orig) / cal.value("write_rows_per_s")
    secs = job_start_s(cal, "metaworld") + dev.value("policy_load_s") + prompt + calls + io
    return Work((Task(need, secs),), 0.0, 0.0, {"transitions": num, "sequences": seqs})


def offline_work(job: Job, cal: Calibration) -> Work:
    """`offline.steps` TD3-BC updates and its evaluations (intermediate ones at their own
    episode count where the config has one), on the job's data variant."""
    cfg = job.cfg
    o = cfg.offline
    need = own_need(job)
    dev, host = cal.on(on_gpu(need)), cal.on(False)
    rows = _offline_rows(cfg, job, cal)
    data = str(job.params.get("data", "original"))
    extra = 0.0 if data == "original" else o.augment_copies * rows
    points = sorted({*range(o.eval_every, o.steps + 1, o.eval_every), o.steps})
    mid = min(getattr(o, "eval_episodes_intermediate", o.eval_episodes), o.eval_episodes)
    episodes = o.eval_episodes + mid * (len(points) - 1)
    ep_steps = episodes * cfg.metaworld.episode_steps
    update = dev.call_s("td3bc_update", td3bc_update_flops(cfg, OBS_DIM, ACT_DIM))
    q = mlp_flops([OBS_DIM + ACT_DIM, o.hidden, o.hidden, 1])
    s4rl = extra * 3 * q / float(dev._rate("td3bc_update")["flops_per_s"]) \
        if data == "s4rl" else 0.0
    # each evaluation makes its environments anew (`evaluate_policy`)
    makes = len(points) * min(o.eval_envs, o.eval_episodes) * host.value("env_make_s.metaworld")
    secs = (job_start_s(cal, "metaworld") + (rows + extra) / cal.value("load_rows_per_s")
            + s4rl + o.steps * update + ep_steps / host.value("td3bc_eval_steps_per_s") + makes)
    return Work((Task(need, secs),), 0.0, 0.0,
                {"updates": o.steps, "eval_episodes": episodes, "update_s": update})


def quality_work(job: Job, cal: Calibration) -> Work:
    """Table 4: dynamics error of `quality_samples` rows of 3 methods, each method's rows'
    nearest-neighbour distance to the original rows (brute force: queries x references
    pairs; MTDiff-S's synthetic rows, RAD's and S4RL's one copy each, at most
    `NEAREST_QUERIES` queries), the embedding."""
    cfg = job.cfg
    o = cfg.offline
    rows = _offline_rows(cfg, job, cal)
    n = min(o.quality_samples, rows)
    synth = o.synth_transitions or o.augment_copies * rows
    pairs = sum(min(q, NEAREST_QUERIES) for q in (synth, rows, rows)) * rows
    secs = (job_start_s(cal, "metaworld") + 3 * rows / cal.value("load_rows_per_s")
            + 3 * n * cal.value("quality_sample_s") + pairs * cal.value("nearest_pair_s")
            + cal.value("embedding_s"))
    return Work((Task(own_need(job), secs),), 0.0, 0.0,
                {"checked_rows": 3 * n, "nearest_pairs": pairs})


def subset_work(job: Job, cal: Calibration) -> Work:
    """The tasks' rows read and written again (one task for Fig. 6, a task set for
    Fig. 7)."""
    n = len(job.params["tasks"]) if "tasks" in job.params else 1
    rows = n * float(suite_shape(job.cfg, "metaworld").rows_per_task)
    secs = job_start_s(cal) + rows / cal.value("load_rows_per_s") \
        + rows / cal.value("write_rows_per_s")
    return Work((Task(own_need(job), secs),), 0.0, 0.0, {"rows": rows})
