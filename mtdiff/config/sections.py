"""The config sections (one dataclass per stage) and the whole `Config`.

Each field's comment says where its value comes from (paper appendix, authors' code,
or a measurement here) when it is not obvious.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mtdiff.config.base import MethodConfig, _check, _positive, _Validated, config_hash, to_dict
from mtdiff.config.collection import CollectConfig, Maze2DConfig, MetaWorldConfig, SACConfig
from mtdiff.config.experiment import ExperimentConfig
from mtdiff.config.stages import DistillConfig, OfflineConfig
from mtdiff.config.suites import (
    MUJOCO_SUITES,
    MujocoSuiteConfig,
    ant_dir_default,
    check_suite_tasks,
    cheetah_vel_default,
    section_name,
)
from mtdiff.methods import all_methods, get_method, known_kind, method_configs

# Every suite a dataset can come from: the paper's two (Table 1, Fig. 4) and Prompt-DT's
# two MuJoCo benchmarks (App. H, Table 5).
SUITES: tuple[str, ...] = ("maze2d", "metaworld", *MUJOCO_SUITES)

# ----------------------------------------------------------------------------------------
# Training data, model, diffusion, training
# ----------------------------------------------------------------------------------------


@dataclass
class DataConfig(_Validated):
    """How training reads a dataset: view, window shapes, normalisation, returns."""

    view: Literal["near-optimal", "sub-optimal"] = "near-optimal"
    horizon: int = 32  # H (authors' code trains with 32)
    history: int | None = None  # L; None = the suite's paper value (2 Meta-World, 5 Maze2D)
    prompt_len: int = 20  # J
    batch_per_task: int = 8  # M (paper App. A: 8 per task, 400 for 50 tasks)
    # The paper does not say, so the authors' code is the default: "minmax", pooled over
    # tasks, to [-1, 1] (their SafeLimitsNormalizer). "gaussian": a pooled per-dimension
    # z-score. State probe (benchmarks/state_probe.py, 1,500 steps, 3 seeds), rel_err of the
    # executed action with the rest of the authors' objective: 0.875 +- 0.009 minmax, 0.899
    # +- 0.011 gaussian (+0.024 [+0.007, +0.041]; docs/results.md, "The objective").
    normalizer: Literal["gaussian", "minmax"] = "minmax"
    # R(tau), the return MTDiff-P conditions on (`mtdiff.data.windows.normalized_returns`).
    # The paper says "normalised cumulative return"; planning asks for the target
    # (`eval.target_return`) at *every* step, so the default is one it can reach there.
    # None (default): "episode" where episodes end at a goal (maze2d.episodes="goal"),
    #   else "time-max" (`mtdiff.data.windows.default_return_scale`).
    # "episode" (paper: "the normalized return of tau"; authors' Maze2D code): the whole
    #   episode's undiscounted return, min-max scaled per task: R = 1 at every state of an
    #   episode that reaches G. There a reward-to-go is ~0.99^(steps to G): "time-max" is
    #   >= 0.99 on 1.4% of local's Maze2D rows (padding with the goal reward up to the
    #   time limit, as Diffuser and D4RL do, keeps that factor).
    # "time-max": discounted reward-to-go (gamma = return_discount = 0.99, as the
    #   authors and Decision Diffuser), min-max scaled per task and per number of steps left
    #   before the time limit, in [0, 1]: R = 1 (the natural target) is "as good as the best
    #   episode in the data from this point in time", reached in the data at every step.
    # "task-max": reward-to-go min-max scaled per task to [0, 1] (natural target 1). With
    #   return_discount=1 (before these options existed) the best value at step t of a
    #   500-step Meta-World episode is ~(500 - t)/500, so R = 1 asks the unreachable from
    #   t ~ 100 on; with 0.99 it is reachable until ~100 steps before the limit.
    # "steps-left" (authors' Meta-World code): discounted reward-to-go / steps left in the
    #   episode, in reward units (their target 9.0 on Meta-World's 0-10 rewards; natural
    #   target here: the largest value in the training data).
    return_scale: Literal["episode", "time-max", "task-max", "steps-left"] | None = None
    return_discount: float = 0.99
    # Maze2D prompt (Meta-World always uses "demo"): "demo" (paper eq. 8, default): J-step
    # (s, a) windows of an expert demonstration of the map. "layout" (authors' Maze2D
    # code): the map itself, one token per cell inside the outer wall (wall / free / goal and
    # the cell's position), so an unseen map needs no demonstration: a map file is enough.
    prompt_kind: Literal["demo", "layout"] = "demo"

    def _validate(self) -> None:
        _positive(self, "horizon", "prompt_len", "batch_per_task")
        if self.history is not None:
            _positive(self, "history")
        _check(0.0 < self.return_discount <= 1.0, "DataConfig.return_discount", "must be in (0, 1]")

    def history_for(self, suite: str) -> int:
        """L for a suite: the explicit value, else the paper's (2 Meta-World, 5 Maze2D).

        Cheetah-vel and Ant-dir: 2, Meta-World's (App. H gives none; both are continuous
        control whose state carries the velocity the task is about)."""
        if self.history is not None:
            return self.history
        return {"metaworld": 2, "maze2d": 5, "cheetah-vel": 2, "ant-dir": 2}[suite]


@dataclass
class ModelConfig(_Validated):
    """The noise model (paper §3.3, App. A), or which baseline (its `methods` section).

    The Decision Transformers (mtdt, promptdt) use this section's GPT-2 size (paper §5.1:
    "the same GPT2-network as in MTDiff-P").
    """

    # The model a method trains (`mtdiff.methods`): mtdiff-p, mtdiff-s, mtdiff-p-onehot,
    # mtbc, mtiql, mtcql, mtdt, promptdt, or a method that registers itself (e.g. mttd3bc).
    kind: str = "mtdiff-p"
    backbone: Literal["gpt2", "unet"] = "gpt2"  # U-Net: App. C ablation
    d_model: int = 256
    n_layer: int = 6  # paper: 6 layers x 4 heads (authors' MTDiff-P code: 4 x 2)
    n_head: int = 4
    dropout: float = 0.1

    def _validate(self) -> None:
        _check(known_kind(self.kind), "ModelConfig.kind",
               f"no method trains {self.kind!r}; known: "
               f"{sorted({get_method(m).kind for m in all_methods()})}")
        _positive(self, "d_model", "n_layer", "n_head")
        _check(self.d_model % self.n_head == 0, "ModelConfig.d_model",
               f"{self.d_model} is not divisible by n_head={self.n_head}")
        _check(0.0 <= self.dropout < 1.0, "ModelConfig.dropout", "must be in [0, 1)")


@dataclass
class DiffusionConfig(_Validated):
    """Diffusion process and sampling (paper §3.2, App. A)."""

    num_steps: int = 200  # K
    beta_min: float = 0.1
    beta_max: float = 10.0
    cond_drop: float = 0.25  # p of dropping R in training (authors' code: 0.2)
    guidance: float = 1.2  # alpha
    temperature: float = 0.5  # beta of low-temperature sampling
    sampler: Literal["ddpm", "ddim", "dpmsolver"] = "ddpm"
    sample_steps: int = 200  # denoising steps at sampling time (== num_steps for DDPM)
    # The planner's loop (`mtdiff.diffusion.compiled`, eager outputs within 1e-4): "off"
    # eager; "inductor" compiled step, batches padded to power-of-two buckets; "cudagraph" /
    # "reduce-overhead" one CUDA graph per bucket / per step; "auto" cudagraph on CUDA, off on
    # CPU (docs/fast_planning.md: CPU inductor 0.8-1.17x per plan; H200 cudagraph + TF32
    # 8.3 vs 43-51 ms eager at 1 env, 24 vs 50 ms at 50).
    compile: Literal["off", "auto", "inductor", "reduce-overhead", "cudagraph"] = "auto"
    # Clamp x0-hat to the training data's range in normalised units ([-1, 1] for "minmax",
    # per dimension [(min - mean)/std, (max - mean)/std] for "gaussian") at every denoising
    # step of planning and synthesis. The paper does not say; the authors' code clips, so
    # on by default. State probe (benchmarks/state_probe.py, 3 seeds): rel_err 0.875 +-
    # 0.009 clipped, 0.869 +- 0.015 not (-0.006 [-0.020, +0.009], not resolved).
    clip_denoised: bool = True
    # CUDA only: TF32 matmuls in plans and synthesis (H200: 2.5x per 50-env CUDA-graph plan).
    tf32: bool = True
    # How the loop runs, not what it plans (same plans up to rounding): not in eval names.
    HOW_IT_RUNS: ClassVar[tuple[str, ...]] = ("compile", "tf32")

    def identity(self) -> dict[str, Any]:
        """What decides the plans (names evaluations): all fields but `HOW_IT_RUNS`."""
        return {k: v for k, v in to_dict(self).items() if k not in self.HOW_IT_RUNS}

    def _validate(self) -> None:
        _positive(self, "num_steps", "beta_min", "beta_max", "sample_steps")
        _check(self.beta_min < self.beta_max, "DiffusionConfig.beta_min", "must be < beta_max")
        _check(0.0 <= self.cond_drop < 1.0, "DiffusionConfig.cond_drop", "must be in [0, 1)")
        _check(0.0 <= self.temperature <= 1.0, "DiffusionConfig.temperature", "must be in [0, 1]")
        _check(self.sample_steps <= self.num_steps, "DiffusionConfig.sample_steps",
               f"{self.sample_steps} exceeds num_steps={self.num_steps}")


@dataclass
class TrainConfig(_Validated):
    """Optimisation and Ray Train (paper App. A: Adam 2e-4, 2e6 steps)."""

    steps: int = 2_000_000
    lr: float = 2e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    # The paper is silent beyond the DDPM objective; the authors' code is the default:
    # Huber on epsilon, the planners' first (executed) action weighted `action_weight`
    # (theirs and Decision Diffuser's 10; MTDiff-S unweighted). Paper form: mse, 1. State
    # probe, rel_err (1 = the mean action): 0.875 +- 0.009; weight 1: 1.529 +- 0.006; mse:
    # 0.877 +- 0.010; the paper's form 1.505 +- 0.021 (docs/results.md, "The objective").
    loss: Literal["mse", "huber"] = "huber"
    action_weight: float = 10.0
    # bf16 autocast of the training step. Off: the paper does not say, the authors' code
    # trains in fp32. The diffusion learner (MTDiff-P, -S) and the DTs (the same GPT-2
    # blocks) follow it; the MLP baselines, TD3-BC and distillation run in fp32. Measured
    # (docs/training_speed.md): on a CPU with AMX tiles 1.5-1.6x the fp32 samples/s of the
    # local-sized MTDiff-P and Prompt-DT and 2.52x of the paper-sized MTDiff-P, with the
    # same state probe result (rel_err 0.879 +- 0.003 vs 0.876 +- 0.008, 3 seeds); slower
    # than fp32 on a CPU without AMX; 0.74x TF32's steps/s on an H200. --plan prices
    # trainings at the fp32 / TF32 rates and says so.
    bf16: bool = False
    # CUDA only: TF32 matmuls in training, for the diffusion learners, the DTs and
    # distillation (H200: 1.91x fp32 steps/s, bf16 1.42x). Not hashed.
    tf32: bool = True
    # How the step runs (`mtdiff.train.compiled`; the same maths, not hashed): "off" eager;
    # "inductor" torch.compile of the loss with a fused Adam; "reduce-overhead" that as CUDA
    # graphs; "auto" inductor on CUDA, eager on CPU (compiled is 1.01-1.07x there for the local
    # MTDiff-P, less than its 13-50 s of compiling returns: docs/training_speed.md).
    compile: Literal["off", "auto", "inductor", "reduce-overhead"] = "auto"
    num_workers: int = 1
    # CPUs each Ray Train worker reserves (threads it uses). None: the cluster's CPUs split
    # over the workers (2 per worker when training on GPUs). Set it to share a machine with
    # other Ray work (e.g. 1 next to a running sweep). Not part of the training hash.
    cpus_per_worker: int | None = None
    # A share of a GPU each worker reserves on a GPU cluster (the graph sets it from
    # `experiment.gpu_share_*`); None: a whole one. Not part of the training hash.
    gpus_per_worker: float | None = None
    checkpoint_every: int = 10_000
    log_every: int = 100
    seed: int = 0

    def _validate(self) -> None:
        _positive(self, "steps", "lr", "num_workers", "checkpoint_every", "log_every",
                  "action_weight")
        if self.cpus_per_worker is not None:
            _positive(self, "cpus_per_worker")
        if self.gpus_per_worker is not None:
            _positive(self, "gpus_per_worker")
        _check(0.0 <= self.ema_decay < 1.0, "TrainConfig.ema_decay", "must be in [0, 1)")


@dataclass
class EvalConfig(_Validated):
    """Planning evaluation (paper §5.2, App. A Alg. 1): episodes, seeds, batching."""

    episodes: int = 50  # per task (Meta-World) or map (Maze2D), per seed
    seeds: tuple[int, ...] = (0, 1, 2)
    # R_max the planner is asked for, on the checkpoint's return scale (data.return_scale).
    # None (default): that definition's natural target (1.0 on the [0, 1] scales, the
    # training data's largest return for "steps-left"); a value outside the range of
    # the returns the checkpoint was trained on is an error.
    target_return: float | None = None
    max_steps: int | None = None  # None: the suite's (500 Meta-World, maze2d.eval_episode_steps)
    num_cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0
    # Meta-World: end an episode at its first success. The success rate (Tables 1, 6) is
    # the same; the compute of the rest of a successful episode is saved, and returns then
    # count up to the first success. False: all 500 steps (full returns). Maze2D always
    # stops at G (reaching it is the score).
    stop_on_success: bool = True
    # Windows per training task of the state-use check (`mtdiff.eval.state_use`; 0: off):
    # 3 plans each, no environment. 64 keeps it to seconds at `local`; its intervals over
    # windows are reported beside every verdict, so a small sample shows as a wide one.
    state_use_windows: int = 64

    def _validate(self) -> None:
        _positive(self, "episodes", "num_cpus_per_actor")
        _check(self.state_use_windows == 0 or self.state_use_windows >= 2,
               "EvalConfig.state_use_windows", "must be 0 (off) or at least 2 (to shuffle "
               f"histories), got {self.state_use_windows}")
        _check(len(self.seeds) > 0, "EvalConfig.seeds", "needs at least one seed")
        if self.target_return is not None:
            _check(math.isfinite(self.target_return), "EvalConfig.target_return",
                   f"must be a finite number or null, got {self.target_return}")
        if self.max_steps is not None:
            _positive(self, "max_steps")


@dataclass
class TrackingConfig(_Validated):
    """MLflow: where runs go. Empty uri = the embedded default (sqlite:///mlflow.db)."""

    uri: str = ""
    experiment: str = "mtdiff"
    # How long one call to an http(s) tracking server keeps retrying (a server restarting or
    # not answering) before it fails; meanwhile the job waits and what it logs arrives once
    # the server answers. The default rides out a restart (drills/tracking_down.py stops the
    # server for 60 s); a server gone for longer stops the graph with one line.
    retry_s: float = 300.0
    # Whether a stage logs to MLflow at all (commands: --no-mlflow; a graph run without
    # MLflow turns it off for its jobs).
    enabled: bool = True

    def _validate(self) -> None:
        _check(self.retry_s > 0, "TrackingConfig.retry_s", "must be > 0 (seconds)")

    def resolved_uri(self) -> str:
        """The tracking URI to use: this field, else $MLFLOW_TRACKING_URI, else sqlite.

        A relative sqlite path is made absolute (against the current directory) so Ray
        workers, which run elsewhere, write to the same file.
        """
        import os

        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI", "") or "sqlite:///mlflow.db"
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
            uri = prefix + os.path.abspath(uri[len(prefix):])
        return uri


@dataclass
class Config(_Validated):
    """The whole reproduction's configuration."""

    preset: Literal["smoke", "local", "paper"] = "paper"
    collect: CollectConfig = field(default_factory=CollectConfig)
    maze2d: Maze2DConfig = field(default_factory=Maze2DConfig)
    metaworld: MetaWorldConfig = field(default_factory=MetaWorldConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    # Prompt-DT's MuJoCo benchmarks (App. H, Table 5); SAC data with the `sac` section.
    cheetah_vel: MujocoSuiteConfig = field(default_factory=cheetah_vel_default)
    ant_dir: MujocoSuiteConfig = field(default_factory=ant_dir_default)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    # {method name: its own section} (`mtdiff.methods`: a `MethodConfig` in the method's
    # file), one for every method that has one; a method missing here gets its defaults
    # with this preset's values (`MethodConfig.PRESETS`).
    methods: dict[str, MethodConfig] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = method_configs()
        unknown = sorted(set(self.methods) - set(classes))
        _check(not unknown, "Config.methods", f"no method called {unknown} has a config "
               f"section; those with one: {sorted(classes)}")
        self.methods = {name: self.methods[name] if name in self.methods
                        else cls.preset(self.preset) for name, cls in classes.items()}
        for name, cls in classes.items():
            _check(type(self.methods[name]) is cls, f"Config.methods[{name!r}]",
                   f"expected a {cls.__name__}, got {type(self.methods[name]).__name__}")
        super().__post_init__()

    def _validate(self) -> None:
        for suite in MUJOCO_SUITES:
            check_suite_tasks(suite, self.suite_section(suite))

    def suite_section(self, suite: str) -> Any:
        """The section describing a suite's data (`maze2d`, `metaworld`, `cheetah_vel`,
        `ant_dir`)."""
        _check(suite in SUITES, "suite", f"unknown suite {suite!r}; use one of "
               f"{', '.join(SUITES)}")
        return getattr(self, section_name(suite))

    def collection_hash(self, suite: str) -> str:
        """Hash naming a suite's dataset: the shared collect section + the suite's own."""
        parts: dict[str, Any] = {"suite": suite, "collect": self.collect,
                                 suite: self.suite_section(suite)}
        if (suite == "metaworld" and self.metaworld.source == "sac") or suite in MUJOCO_SUITES:
            parts["sac"] = self.sac  # only then: scripted datasets keep their hashes
        return config_hash(parts)

    def training_hash(self, data_hash: str) -> str:
        """Hash naming a training run: the dataset and everything that shapes the weights
        (not evaluation or sampling settings, so changing those never retrains)."""
        d = self.diffusion
        parts: dict[str, Any] = {
            "data_hash": data_hash, "data": self.data, "model": self.model,
            "diffusion": [d.num_steps, d.beta_min, d.beta_max, d.cond_drop],
            "train": {k: v for k, v in to_dict(self.train).items()
                  if k not in ("cpus_per_worker", "gpus_per_worker", "tf32", "compile")}}
        own = self.methods.get(self.model.kind)
        if own is not None:  # MTDiff's kinds have no section of their own: hashes as they were
            parts["method"] = own
        return config_hash(parts)
