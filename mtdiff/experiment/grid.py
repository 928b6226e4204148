"""The grid as data: the config's suites x methods x views x seeds (and Tables 2 / 4,
Figs. 6 / 7 from `offline`) expanded into jobs with their dependencies and resources.

    collect/<suite>                                  one per suite (and held-out / task sets)
    reference/<suite>                                zero action, uniform random, the data's own
    train/<suite>/<method>[/<view>]/s<seed>          per planner or synthesizer cell
    distill/<suite>/<method>[/<view>]/s<seed>        per student (after its teacher's training)
    evaluate/<suite>/<method>[/<view>]/s<seed>       per trained planner
    synthesize/..., offline/..., quality/...         `mtdiff.experiment.offline_cells`
    report                                           last, from every job's record

Each job, with its config and resources, comes from `mtdiff.experiment.cells`.
"""

from __future__ import annotations

from mtdiff.config import Config
from mtdiff.experiment.cells import (
    ClusterInfo,
    cell_name,
    collect_job,
    distill_job,
    evaluate_job,
    method_config,
    reference_job,
    train_job,
)
from mtdiff.experiment.jobs import Job, finalize_keys
from mtdiff.experiment.offline_cells import offline_jobs
from mtdiff.layout import Layout
from mtdiff.methods import Method, get_method


def _views(cfg: Config, suite: str, method: Method) -> list[str | None]:
    if suite != "metaworld":
        return [None]  # one dataset, no views
    if method.role == "synthesizer":
        return [cfg.data.view]  # Table 2 augments this view's data
    return cfg.experiment.view_names()


def _seeds(cfg: Config, method: Method) -> list[int]:
    """Training seeds of a method: all of `experiment.seeds`; a synthesizer only those its
    offline-RL jobs use (TD3-BC seed s pairs with training seed s, else the first)."""
    exp = cfg.experiment
    if method.role != "synthesizer":
        return list(exp.seeds)
    return sorted({s if s in exp.seeds else exp.seeds[0] for s in cfg.offline.seeds})


def build_jobs(cfg: Config, out: str, cluster: ClusterInfo) -> list[Job]:
    """Every job of the reproduction `cfg` writes under `out`, in dependency order."""
    lay = Layout.at(out)
    exp = cfg.experiment
    # students after the teachers whose training jobs they follow
    methods = sorted((get_method(m) for m in exp.method_names()), key=lambda m: bool(m.teacher))
    jobs: list[Job] = []
    for suite in exp.suites:
        jobs.append(collect_job(cfg, lay, suite))
    jobs += [reference_job(cfg, lay, suite) for suite in exp.suites]
    for suite in exp.suites:
        for m in methods:
            if suite not in m.suites:
                continue
            for view in _views(cfg, suite, m):
                for seed in _seeds(cfg, m):
                    mcfg = method_config(cfg, m, view or "near-optimal", seed, suite)
                    cell = {"suite": suite, "method": m.name, "view": view, "seed": seed}
                    if m.teacher is not None:
                        d = distill_job(mcfg, lay, jobs, cell_name(suite, m.name, view, seed),
                                        f"train/{cell_name(suite, m.teacher, view, seed)}", cell,
                                        cluster)
                        jobs += [d, evaluate_job(mcfg, lay, d, cluster)]
                        continue
                    t = train_job(mcfg, lay, suite, f"collect/{suite}",
                                  cfg.collection_hash(suite), cell_name(suite, m.name, view, seed),
                                  cell, cluster)
                    jobs.append(t)
                    if m.role == "planner":
                        jobs.append(evaluate_job(mcfg, lay, t, cluster))
    if "metaworld" in exp.suites and "mtdiff-s" in exp.method_names():
        jobs += offline_jobs(cfg, lay, cluster)
    jobs.append(Job("report", "report", cfg, {}, deps=[j.name for j in jobs],
                    resources={"CPU": 1.0}, always=True, sections=("experiment",),
                    params={"root": str(lay.out), "graph": [j.name for j in jobs]}))
    finalize_keys(jobs)
    # The report reads each job's record only if it was made under this graph's key
    # (a record left by another config is stale).
    jobs[-1].params["graph"] = {j.name: j.key for j in jobs[:-1]}
    return jobs
