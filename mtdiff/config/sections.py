"""The config sections (one dataclass per stage) and the whole `Config`.

Each field's comment says where its value comes from (paper appendix, authors' code,
or a measurement here) when it is not obvious.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mtdiff.config.base import _check, _positive, _Validated, config_hash, to_dict
from mtdiff.config.baselines import BaselineConfig
from mtdiff.config.experiment import ExperimentConfig
from mtdiff.config.suites import (
    MUJOCO_SUITES,
    MujocoSuiteConfig,
    ant_dir_default,
    check_suite_tasks,
    cheetah_vel_default,
    section_name,
)

# Every suite a dataset can come from: the paper's two (Table 1, Fig. 4) and Prompt-DT's
# two MuJoCo benchmarks (App. H, Table 5).
SUITES: tuple[str, ...] = ("maze2d", "metaworld", *MUJOCO_SUITES)

# ----------------------------------------------------------------------------------------
# Collection
# ----------------------------------------------------------------------------------------


@dataclass
class Maze2DConfig(_Validated):
    """Maze2D data (paper App. D): D4RL's waypoint expert on our PointMaze maps."""

    # Map names shipped in mtdiff/envs/maps/ or paths of map text files (# wall, O free, G goal).
    train_maps: tuple[str, ...] = (
        "train-0", "train-1", "train-2", "train-3", "train-4", "train-5", "train-6", "train-7",
    )
    unseen_maps: tuple[str, ...] = ("unseen-0", "unseen-1")
    episodes_per_map: int = 4375  # paper: 35k episodes over 8 maps
    episode_steps: int = 600  # paper App. D: 600 for training, 200 for evaluation
    eval_episode_steps: int = 200
    # How the expert's episodes are made:
    # "d4rl" (paper, default): D4RL's generator, one continuing trajectory toward random
    #   goal cells, a new one whenever the current one is reached; with probability
    #   `goal_prob` the new goal is the map's own goal G (0 = D4RL/paper).
    # "goal": every episode starts in a random free cell and the expert heads for G, the
    #   episode ending on arrival (`episode_steps` is then the cap): demonstrations of the
    #   evaluation task. The `local` preset uses
    #   it: with ~1/800 of the paper's gradient samples, a model cannot learn from D4RL's
    #   random-goal data where G is (measured: 0.17 success on the training maps).
    episodes: Literal["d4rl", "goal"] = "d4rl"
    goal_prob: float = 0.0
    action_noise: float = 0.0  # std of Gaussian noise added to the expert's action
    p_gain: float = 10.0  # D4RL WaypointController gains
    d_gain: float = -1.0
    goal_threshold: float = 0.5  # distance that counts as reaching a goal (D4RL: 0.5)

    def _validate(self) -> None:
        _positive(self, "episodes_per_map", "episode_steps", "eval_episode_steps", "goal_threshold")
        _check(len(self.train_maps) > 0, "Maze2DConfig.train_maps", "needs at least one map")
        _check(0.0 <= self.goal_prob <= 1.0, "Maze2DConfig.goal_prob", "must be in [0, 1]")
        _check(self.episodes in ("d4rl", "goal"), "Maze2DConfig.episodes",
               f"{self.episodes!r} is not one of 'd4rl', 'goal'")
        _check(self.action_noise >= 0.0, "Maze2DConfig.action_noise", "must be >= 0")


@dataclass
class MetaWorldConfig(_Validated):
    """Meta-World MT50-rand data (paper App. G)."""

    tasks: str = "MT50"  # a named subset (MT10, MT50, tasks-10/20/30/45, train-45) or a,b,c
    source: Literal["sac", "scripted"] = "sac"
    transitions_per_task: int = 1_000_000  # paper: 1M per task from SAC's replay buffer
    episode_steps: int = 500
    # Scripted experts: the episodes are split evenly over these Gaussian noise stds.
    scripted_noise: tuple[float, ...] = (0.0, 0.1, 0.3, 0.5)

    def _validate(self) -> None:
        _positive(self, "transitions_per_task", "episode_steps")
        _check(any(t.strip() for t in self.tasks.split(",")), "MetaWorldConfig.tasks",
               f"empty task spec {self.tasks!r}; give a set name (MT10, MT50, tasks-10, ..., "
               "all) or comma-separated task names such as 'reach-v3,push-v3'")
        _check(all(n >= 0 for n in self.scripted_noise), "MetaWorldConfig.scripted_noise",
               "noise levels must be >= 0")


@dataclass
class SACConfig(_Validated):
    """The SAC agent behind `metaworld.source=sac` (paper App. G; CleanRL's defaults)."""

    backend: Literal["lean", "rllib"] = "lean"  # ours (mtdiff.collect.sac) or RLlib's SAC
    hidden: int = 256  # width of the 2 hidden layers of policy and critics
    lr: float = 3e-4  # Adam, policy, critics and temperature
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    batch_size: int = 256
    learning_starts: int = 5_000  # uniform random actions before the first update
    updates_per_step: int = 1
    eval_every: int = 10_000  # env steps between evaluations (deterministic policy)
    eval_episodes: int = 10

    def _validate(self) -> None:
        _positive(self, "hidden", "lr", "batch_size", "updates_per_step", "eval_every",
                  "eval_episodes")
        _check(0.0 < self.gamma < 1.0, "SACConfig.gamma", "must be in (0, 1)")
        _check(0.0 < self.tau <= 1.0, "SACConfig.tau", "must be in (0, 1]")
        _check(self.learning_starts >= 0, "SACConfig.learning_starts", "must be >= 0")


@dataclass
class CollectConfig(_Validated):
    """What every collection shares: seeding, sharding, prompts and Ray resources."""

    seed: int = 0
    shard_rows: int = 100_000  # transitions per Parquet shard (also the resume granularity)
    prompt_episodes: int = 5  # expert demonstrations per task kept for prompts
    prompts_per_task: int = 50  # J-step windows cut from them (the prompt set Z)
    prompt_len: int = 20  # J (paper App. A)
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0

    def _validate(self) -> None:
        _positive(self, "shard_rows", "prompt_episodes", "prompts_per_task", "prompt_len",
                  "num_cpus_per_task")
        _check(self.num_gpus_per_task >= 0, "CollectConfig.num_gpus_per_task", "must be >= 0")


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
    # Paper: unspecified -> per-dimension z-score pooled over tasks.
    # Authors' code: "minmax" (pooled over tasks, to [-1, 1]).
    normalizer: Literal["gaussian", "minmax"] = "gaussian"
    # Paper: "normalised cumulative return" -> reward-to-go / the task's largest
    # reward-to-go (in [0, 1]). Authors' code: "steps-left" (discounted reward-to-go
    # divided by the number of steps left in the episode), with return_discount=0.99.
    return_scale: Literal["task-max", "steps-left"] = "task-max"
    return_discount: float = 1.0

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


DIFFUSION_KINDS = ("mtdiff-p", "mtdiff-s", "mtdiff-p-onehot")


@dataclass
class ModelConfig(_Validated):
    """The noise model (paper §3.3, App. A), or which baseline (`baselines` section).

    The Decision Transformers (mtdt, promptdt) use this section's GPT-2 size (paper §5.1:
    "the same GPT2-network as in MTDiff-P").
    """

    kind: Literal["mtdiff-p", "mtdiff-s", "mtdiff-p-onehot",
                  "mtbc", "mtiql", "mtcql", "mtdt", "promptdt"] = "mtdiff-p"
    backbone: Literal["gpt2", "unet"] = "gpt2"  # U-Net: App. C ablation
    d_model: int = 256
    n_layer: int = 6  # paper: 6 layers x 4 heads (authors' MTDiff-P code: 4 x 2)
    n_head: int = 4
    dropout: float = 0.1

    def _validate(self) -> None:
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
    # How the planner runs its denoising loop (`mtdiff.diffusion.compiled`; same outputs as
    # the eager loop within 1e-4, tested). "off": the plain eager loop. "inductor":
    # torch.compile of one denoising step, shapes padded to power-of-two buckets.
    # "cudagraph": the whole loop captured as one CUDA graph per bucket (CUDA only).
    # "reduce-overhead": torch.compile's CUDA-graph mode per step (CUDA only). "auto":
    # cudagraph on CUDA, off on CPU. Default "off": on one CPU core inductor measured 1.07x
    # (paper-sized) and 1.17x (local) per plan at 1 environment and 0.8x at 50 (padded to
    # 64: the model is compute-bound there), for 6-140 s of compile per bucket
    # (benchmarks/planning_speed.py, CPU seconds). CUDA: benchmarks/gpu_check.py measures
    # it. Not part of any hash that names weights.
    compile: Literal["off", "auto", "inductor", "reduce-overhead", "cudagraph"] = "off"

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
    loss: Literal["mse", "huber"] = "mse"  # authors' code: huber, first action weighted 10
    bf16: bool = False
    num_workers: int = 1
    # CPUs each Ray Train worker reserves (threads it uses). None: the cluster's CPUs split
    # over the workers (2 per worker when training on GPUs). Set it to share a machine with
    # other Ray work (e.g. 1 next to a running sweep). Not part of the training hash.
    cpus_per_worker: int | None = None
    checkpoint_every: int = 10_000
    log_every: int = 100
    seed: int = 0

    def _validate(self) -> None:
        _positive(self, "steps", "lr", "num_workers", "checkpoint_every", "log_every")
        if self.cpus_per_worker is not None:
            _positive(self, "cpus_per_worker")
        _check(0.0 <= self.ema_decay < 1.0, "TrainConfig.ema_decay", "must be in [0, 1)")


@dataclass
class DistillConfig(_Validated):
    """Few-step student of a trained MTDiff-P (`mtdiff.diffusion.distill`, `pipelines/distill.py`).

    The teacher is sampled as planning samples it: guided DDIM (eta 0) at the run's
    `diffusion.guidance` and `diffusion.temperature`, over `teacher_steps` steps.
    """

    student_steps: int = 4  # network evaluations per plan (1-4; must divide teacher_steps)
    teacher_steps: int = 20  # the teacher's DDIM steps (the DDIM-20 planner it replaces)
    samples: int = 65_536  # teacher trajectories (conditions from training windows)
    teacher_batch: int = 512  # trajectories per teacher sampling call
    batch_size: int = 256  # trajectories per student step (x student_steps network rows)
    steps: int = 20_000  # student optimisation steps
    lr: float = 1e-4  # Adam (Salimans & Ho 2022 use 1e-4 for each distillation round)
    ema_decay: float = 0.995
    # Share of trajectories conditioned on `eval.target_return` (R_max, what planning asks);
    # the rest keep their window's own return, so the student stays return-conditioned.
    target_return_prob: float = 0.5
    # What the student network predicts: "eps" (the teacher's ε: it starts as the teacher's
    # own n-step DDIM plan) or "x0" (Salimans & Ho's choice; slower from the teacher's
    # weights, see mtdiff.diffusion.distill).
    param: Literal["eps", "x0"] = "eps"
    val_samples: int = 256  # held-out trajectories for the student-vs-teacher error
    checkpoint_every: int = 1_000
    log_every: int = 100
    seed: int = 0

    def _validate(self) -> None:
        _positive(self, "student_steps", "teacher_steps", "samples", "teacher_batch",
                  "batch_size", "steps", "lr", "val_samples", "checkpoint_every", "log_every")
        _check(self.teacher_steps % self.student_steps == 0, "DistillConfig.student_steps",
               f"{self.student_steps} must divide teacher_steps={self.teacher_steps}")
        _check(0.0 <= self.target_return_prob <= 1.0, "DistillConfig.target_return_prob",
               "must be in [0, 1]")
        _check(0.0 <= self.ema_decay < 1.0, "DistillConfig.ema_decay", "must be in [0, 1)")


@dataclass
class EvalConfig(_Validated):
    """Planning evaluation (paper §5.2, App. A Alg. 1): episodes, seeds, batching."""

    episodes: int = 50  # per task (Meta-World) or map (Maze2D), per seed
    seeds: tuple[int, ...] = (0, 1, 2)
    target_return: float = 1.0  # R_max in the normalised return scale
    max_steps: int | None = None  # None: the suite's (500 Meta-World, maze2d.eval_episode_steps)
    num_cpus_per_actor: float = 1.0
    num_gpus_per_actor: float = 0.0
    # Meta-World: end an episode at its first success. The success rate (Tables 1, 6) is
    # the same; the compute of the rest of a successful episode is saved, and returns then
    # count up to the first success. False: all 500 steps (full returns). Maze2D always
    # stops at G (reaching it is the score).
    stop_on_success: bool = True

    def _validate(self) -> None:
        _positive(self, "episodes", "num_cpus_per_actor")
        _check(len(self.seeds) > 0, "EvalConfig.seeds", "needs at least one seed")
        if self.max_steps is not None:
            _positive(self, "max_steps")


@dataclass
class OfflineConfig(_Validated):
    """Offline RL on original vs augmented data (paper §5.3, Table 2): TD3-BC, RAD, S4RL.

    TD3-BC values are Fujimoto & Gu's (2021) defaults (the paper lists none of its own);
    the augmentation values are App. B's.
    """

    steps: int = 1_000_000  # TD3-BC's default training length
    batch_size: int = 256
    hidden: int = 256  # width of the 2 hidden layers of the actor and the twin critics
    lr: float = 3e-4  # Adam, actor and critics
    alpha: float = 2.5  # BC weight: lambda = alpha / mean|Q|
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target networks
    policy_noise: float = 0.2  # target policy smoothing (x max action 1)
    noise_clip: float = 0.5
    policy_delay: int = 2  # critic updates per actor update
    normalize_states: bool = True  # z-score with the training states' mean/std
    eval_every: int = 50_000
    eval_episodes: int = 500  # Table 2: 500 episodes per task
    eval_envs: int = 10  # environments stepped together in evaluation
    seed: int = 0
    rad_low: float = 0.8  # RAD: s * z, z ~ U[rad_low, rad_high] (App. B)
    rad_high: float = 1.2
    s4rl_eps: float = 0.01  # S4RL: step along the gradient of Q (App. B)
    augment_copies: int = 2  # augmented transitions per original (MTDiff-S: 2M for 1M)
    # The full reproduction's `synthesize-offline` stage (Tables 2 and 4). Tasks: a task
    # spec (`mtdiff.envs.metaworld.resolve_tasks`); Table 2's 3 seen + 3 unseen tasks by
    # default. A task MTDiff-S was not trained on gets its own original dataset from the
    # scripted experts (`heldout_transitions` rows, action noise `heldout_noise`: no clean
    # expert episode, a low-quality dataset to augment).
    tasks: str = ("sweep-into-v3,coffee-push-v3,disassemble-v3,"
                  "box-close-v3,hand-insert-v3,bin-picking-v3")
    seeds: tuple[int, ...] = (0, 1, 2)  # TD3-BC seeds per Table 2 cell (paper: 3)
    # Fig. 6: tasks (a task spec, "" for none) on which MTDiff-S-single -- the same model
    # trained on that one task's data alone, with the multi-task model's batch size and
    # steps -- is compared with the multi-task MTDiff-S. They must be among MTDiff-S's
    # training tasks; the paper's three by default.
    single_tasks: str = "coffee-push-v3,disassemble-v3,dial-turn-v3"
    task_count_task: str = "coffee-push-v3"  # Fig. 7's task (in every tasks-N set)
    synth_transitions: int | None = None  # per task; None: augment_copies x original rows
    prompt_episodes: int = 1  # expert demonstrations the synthesis prompt is cut from
    heldout_transitions: int = 1_000_000  # paper: a 1M original dataset per task
    heldout_noise: tuple[float, ...] = (0.3, 0.5, 1.0)
    quality_samples: int = 1000  # rows per method checked for the dynamics error (~10 ms each)
    embedding: Literal["tsne", "pca"] = "tsne"  # Fig. 11's 2-D embedding of the data

    def _validate(self) -> None:
        _positive(self, "steps", "batch_size", "hidden", "lr", "policy_delay", "eval_every",
                  "eval_episodes", "eval_envs", "s4rl_eps", "augment_copies", "prompt_episodes",
                  "heldout_transitions", "quality_samples")
        _check(len(self.seeds) > 0, "OfflineConfig.seeds", "needs at least one seed")
        if self.synth_transitions is not None:
            _positive(self, "synth_transitions")
        _check(all(n >= 0 for n in self.heldout_noise), "OfflineConfig.heldout_noise",
               "noise levels must be >= 0")
        _check(0.0 < self.gamma < 1.0, "OfflineConfig.gamma", "must be in (0, 1)")
        _check(0.0 < self.tau <= 1.0, "OfflineConfig.tau", "must be in (0, 1]")
        _check(self.alpha >= 0 and self.policy_noise >= 0 and self.noise_clip >= 0,
               "OfflineConfig.alpha", "alpha, policy_noise and noise_clip must be >= 0")
        _check(0.0 < self.rad_low <= self.rad_high, "OfflineConfig.rad_low",
               f"need 0 < rad_low <= rad_high, got [{self.rad_low}, {self.rad_high}]")


@dataclass
class TrackingConfig(_Validated):
    """MLflow: where runs go. Empty uri = the embedded default (sqlite:///mlflow.db)."""

    uri: str = ""
    experiment: str = "mtdiff"

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
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

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
            "train": {k: v for k, v in to_dict(self.train).items() if k != "cpus_per_worker"}}
        if self.model.kind not in DIFFUSION_KINDS:  # only then: MTDiff's hashes stay as they were
            parts["baselines"] = self.baselines
        return config_hash(parts)
