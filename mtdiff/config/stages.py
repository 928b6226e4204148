"""The config sections of the stages after training: distillation of a few-step planner
(`pipelines/distill.py`) and offline RL on original vs synthetic data (Tables 2, 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtdiff.config.base import _check, _positive, _Validated


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
    val_samples: int = 256  # held-out trajectories for the student vs teacher error
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
    eval_episodes: int = 500  # Table 2: 500 episodes per task (the last evaluation)
    # Episodes of the evaluations before the last (every `eval_every` updates; at most
    # `eval_episodes`). They only draw the learning curve: at 50 a success rate's standard
    # error is at most 0.07, and 19 of them at the paper's 1M steps cost 0.5M env steps
    # instead of 4.75M (the 500-episode last one: 0.25M).
    eval_episodes_intermediate: int = 50
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
                  "eval_episodes", "eval_episodes_intermediate", "eval_envs", "s4rl_eps",
                  "augment_copies", "prompt_episodes", "heldout_transitions", "quality_samples")
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
