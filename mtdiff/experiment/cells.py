"""One job of the grid each: collect, reference, train, distill and evaluate jobs with their
configs and resources (`mtdiff.experiment.grid` expands the whole grid from these, and
`mtdiff.experiment.offline_cells` the offline-RL jobs).

Resources come from the config and from what the cluster's *nodes* offer
(`ClusterInfo`): a training worker gets CPUs from the largest node, never the cluster's
total, and GPUs only where the cluster has them: a whole one per worker for the diffusion
models and DTs, a share (`experiment.gpu_share_*`) for the jobs that leave a GPU mostly
idle (evaluations, synthesis, TD3-BC, the MLP baselines, small-batch trainings), so that
several of those run on one GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mtdiff.config import Config, apply_overrides
from mtdiff.config.suites import MUJOCO_SUITES, section_name
from mtdiff.experiment.jobs import Job
from mtdiff.layout import Layout
from mtdiff.methods import Method, method_of_kind
from mtdiff.runtime import alive_nodes

TRAIN_SECTIONS = ("data", "model", "diffusion", "train")  # what shapes a model's weights


@dataclass(frozen=True)
class ClusterInfo:
    """What the grid needs to know of the cluster: its nodes' resources."""

    nodes: list[dict[str, float]] = field(default_factory=list)  # per node: CPU, GPU, ...

    @property
    def gpus(self) -> float:
        """GPUs in the whole cluster."""
        return sum(n.get("GPU", 0.0) for n in self.nodes)

    def largest(self, resource: str, *, having: str | None = None) -> float:
        """The most of `resource` one node offers (among nodes that have `having`)."""
        vals = [n.get(resource, 0.0) for n in self.nodes if having is None or n.get(having)]
        return max(vals, default=0.0)

    def fits(self, need: dict[str, float]) -> bool:
        """Whether one node can host a bundle needing `need`."""
        return any(all(n.get(k, 0.0) >= v for k, v in need.items() if v) for n in self.nodes)

    @classmethod
    def from_ray(cls) -> ClusterInfo:
        """The alive nodes of the connected Ray cluster."""
        return cls([{k: float(v) for k, v in n["resources"].items()
                     if k in ("CPU", "GPU", "memory")} for n in alive_nodes()])

    @classmethod
    def local(cls) -> ClusterInfo:
        """This machine as a one-node cluster (for --plan without a cluster)."""
        import os

        return cls([{"CPU": float(os.cpu_count() or 1), "GPU": 0.0}])


def method_config(cfg: Config, method: Method, view: str, seed: int,
                  suite: str | None = None) -> Config:
    """`cfg` for one training cell: the method's kind and overrides, view, seed; on
    Cheetah-vel / Ant-dir the batch and steps `experiment.mujoco_batch_per_task` /
    `mujoco_steps`, on Maze2D `experiment.maze2d_batch_per_task` / `maze2d_steps`."""
    cfg = apply_overrides(cfg, [f"model.kind={method.kind}", *method.overrides])
    exp = cfg.experiment
    batch, steps = cfg.data.batch_per_task, cfg.train.steps
    if suite in MUJOCO_SUITES:
        batch = exp.mujoco_batch_per_task or batch
        steps = exp.mujoco_steps or steps
    if suite == "maze2d":
        batch = exp.maze2d_batch_per_task or batch
        steps = exp.maze2d_steps or steps
    return replace(cfg, data=replace(cfg.data, view=view, batch_per_task=batch),
                   train=replace(cfg.train, seed=seed, steps=steps))


def training_tasks(cfg: Config, suite: str) -> int:
    """The tasks a training on `suite`'s collection under `cfg` samples windows of (its
    batch: data.batch_per_task windows of each): Maze2D's training maps, the Meta-World
    tasks, the MuJoCo suite's training tasks (held-out tasks have prompts only)."""
    if suite == "maze2d":
        return len(cfg.maze2d.train_maps)
    if suite == "metaworld":
        # (pulls in gymnasium: imported on use)
        from mtdiff.envs.metaworld import resolve_tasks

        return len(resolve_tasks(cfg.metaworld.tasks))
    # (pulls in numpy: imported on use)
    from mtdiff.envs.mujoco_specs import resolve_tasks as mujoco_tasks

    return len(mujoco_tasks(cfg.suite_section(suite).tasks, suite=suite))


def train_gpu_share(cfg: Config, tasks: int) -> float:
    """GPUs per worker of a training of `cfg` on `tasks` tasks, on a GPU cluster: the MLP
    baselines' share, the small-batch share under `experiment.small_batch` windows per
    step, else a whole GPU. A DDP training (several workers) keeps a whole GPU per worker:
    NCCL refuses two ranks on one device, and a share could place them so."""
    exp = cfg.experiment
    if cfg.train.num_workers > 1:
        return 1.0
    if method_of_kind(cfg.model.kind, cfg.model.backbone).host_bound:
        return exp.gpu_share_baseline
    if cfg.data.batch_per_task * tasks < exp.small_batch:
        return exp.gpu_share_small_train
    return 1.0


def trainer_resources(cfg: Config, cluster: ClusterInfo, tasks: int
                      ) -> tuple[dict[str, float], int]:
    """(the trainer's resources, CPUs per worker) for a training job on `tasks` tasks:
    GPUs when the cluster has them (`train_gpu_share` per worker); CPUs per worker from
    `train.cpus_per_worker`, else 1 per worker on CPU clusters (many jobs share the
    nodes: the graph runs them side by side) and 2 next to a GPU."""
    n = cfg.train.num_workers
    gpu = cluster.gpus > 0
    cpus = cfg.train.cpus_per_worker or (2 if gpu else 1)
    cpus = int(min(cpus, max(1.0, cluster.largest("CPU", having="GPU" if gpu else None))))
    share = train_gpu_share(cfg, tasks) if gpu else 0.0
    return {"CPU": float(cpus * n), "GPU": share * n, "workers": float(n)}, cpus


def cell_name(suite: str, method: str, view: str | None, seed: int) -> str:
    """A cell's part of its job names: suite/method[/view]/s<seed>."""
    return "/".join([suite, method, *([view] if view else []), f"s{seed}"])


def collect_job(cfg: Config, lay: Layout, suite: str, name: str | None = None,
                config: dict[str, Any] | None = None) -> Job:
    """Collect a suite's dataset (its Ray tasks: one per env task, 1 CPU each)."""
    # (pulls in numpy: imported on use)
    from mtdiff.collect.pipeline import planned_tasks

    n = planned_tasks(cfg, suite)
    sac = ("sac",) if suite != "maze2d" and (suite != "metaworld"
                                             or cfg.metaworld.source == "sac") else ()
    return Job(name or f"collect/{suite}", "collect", cfg, config or {"suite": suite},
               resources={"CPU": 0.0}, sections=("collect", section_name(suite), *sac),
               inner={"CPU": cfg.collect.num_cpus_per_task, "GPU": cfg.collect.num_gpus_per_task,
                      "tasks": float(n)},
               params={"suite": suite, "out": str(lay.dataset(cfg, suite)),
                       "hash": cfg.collection_hash(suite)})


def reference_job(cfg: Config, lay: Layout, suite: str) -> Job:
    """The suite's reference rows (`mtdiff.eval.reference`): no planning, the evaluation's
    jobs for two fixed policies (one Ray task each, on CPU) and the dataset's numbers."""
    return Job(f"reference/{suite}", "reference", cfg, {"suite": suite},
               deps=[f"collect/{suite}"], resources={"CPU": 0.0},
               inner={"CPU": cfg.eval.num_cpus_per_actor},
               sections=("data", "eval", section_name(suite)),
               params={"suite": suite, "data_job": f"collect/{suite}",
                       "out": str(lay.reference(cfg, suite))})


def train_job(cfg: Config, lay: Layout, suite: str, data_job: str, data_hash: str,
              cell: str, config: dict[str, Any], cluster: ClusterInfo,
              tasks: int | None = None) -> Job:
    """Train one model on `data_job`'s dataset (hash `data_hash`) of `tasks` training
    tasks (None: `training_tasks(cfg, suite)`)."""
    inner, cpus = trainer_resources(cfg, cluster, tasks or training_tasks(cfg, suite))
    # what each worker reserves, as admitted here (not part of the training hash)
    gpus = inner["GPU"] / max(inner["workers"], 1.0)
    cfg = replace(cfg, train=replace(cfg.train, cpus_per_worker=cpus,
                                     gpus_per_worker=gpus or None))
    run = lay.train_run(cfg, suite, data_hash)
    return Job(f"train/{cell}", "train", cfg, config, deps=[data_job],
               resources={"CPU": 0.0}, inner=inner, sections=TRAIN_SECTIONS,
               params={"data_job": data_job, "root": str(lay.train_root(suite)),
                       "out": str(run), "cpus_per_worker": cpus})


def distill_job(cfg: Config, lay: Layout, jobs: list[Job], cell: str, teacher_job: str,
                config: dict[str, Any], cluster: ClusterInfo) -> Job:
    """Distil the model `teacher_job` trained into a few-step student (in its own Ray
    task: one CPU, or a GPU where the cluster has one)."""
    teacher = next((j for j in jobs if j.name == teacher_job), None)
    if teacher is None:
        raise ValueError(f"{cell}: its teacher {teacher_job!r} is not in the grid; add the "
                         f"teacher's method to experiment.methods")
    suite = config["suite"]
    # the run's name within distill_root is the stage's; this names its evaluations
    student = lay.student(suite, {"teacher": Path(teacher.params["out"]).name,
                                  "distill": cfg.distill,
                                  "diffusion": [cfg.diffusion.guidance, cfg.diffusion.temperature],
                                  "target_return": cfg.eval.target_return})
    gpu = 1.0 if cluster.gpus > 0 else 0.0
    return Job(f"distill/{cell}", "distill", cfg, config,
               deps=[teacher.params["data_job"], teacher_job],
               resources={"CPU": 1.0, "GPU": gpu}, sections=(*TRAIN_SECTIONS, "distill"),
               params={"data_job": teacher.params["data_job"], "model_job": teacher_job,
                       "root": str(lay.distill_root(suite)),
                       "out": str(student)})


def evaluate_job(cfg: Config, lay: Layout, train: Job, cluster: ClusterInfo) -> Job:
    """Evaluate a trained (or distilled) planner: Meta-World tasks, or Maze2D training and
    unseen maps with the wrong-prompt control (one Ray task per task/map and seed)."""
    suite = train.config["suite"]
    if cluster.gpus > 0 and cfg.eval.num_gpus_per_actor == 0:
        # planning is the GPU's work on a GPU cluster: a share of one per batch of envs
        cfg = replace(cfg, eval=replace(cfg.eval,
                                        num_gpus_per_actor=cfg.experiment.gpu_share_evaluate))
    gpu = cfg.eval.num_gpus_per_actor
    return Job("evaluate/" + train.name.split("/", 1)[1], "evaluate", cfg,
               dict(train.config), deps=[train.name], resources={"CPU": 0.0},
               inner={"CPU": cfg.eval.num_cpus_per_actor, "GPU": gpu},
               sections=(*TRAIN_SECTIONS, "eval", section_name(suite)),
               params={"suite": suite, "model_job": train.name,
                       "out": str(lay.evaluation(cfg, suite, Path(train.params["out"])))})
