"""Presets as plain functions: `smoke` (CI), `local` (a laptop), `paper` (App. A/D/G).

A method's own section (`Config.methods`) takes the preset's values from its config class
(`MethodConfig.PRESETS`, in the method's file), so that adding a method touches no preset.
"""

from __future__ import annotations

from typing import Literal

from mtdiff.config.base import ConfigError
from mtdiff.config.sections import (
    CollectConfig,
    Config,
    DataConfig,
    DiffusionConfig,
    DistillConfig,
    EvalConfig,
    ExperimentConfig,
    Maze2DConfig,
    MetaWorldConfig,
    ModelConfig,
    MujocoSuiteConfig,
    OfflineConfig,
    SACConfig,
    TrainConfig,
)

Preset = Literal["smoke", "local", "paper"]
PRESETS: tuple[str, ...] = ("smoke", "local", "paper")

# `local`'s Cheetah-vel / Ant-dir training tasks: two per suite, among the held-out tasks'
# goals. Cheetah-vel: 0.83 and 1.65 m/s (held out: 0.23, 0.6, 1.2, 1.8, 2.03 m/s).
# Ant-dir: 316 and 67 degrees (held out: 8, 70, 77, 277, 293 degrees; mujoco_tasks.json).
LOCAL_TASKS = {"cheetah-vel": "cheetah-vel-10,cheetah-vel-21", "ant-dir": "ant-dir-0,ant-dir-1"}


def paper() -> Config:
    """The paper's App. A / D / G values and dataset sizes."""
    return Config(preset="paper")


def local() -> Config:
    """A laptop: real but small; the whole pipeline in under an hour on a few CPU cores."""
    return Config(
        preset="local",
        collect=CollectConfig(shard_rows=20_000, prompt_episodes=3, prompts_per_task=20),
        # Goal-directed expert episodes (see Maze2DConfig.episodes; the paper's D4RL data is
        # `--set maze2d.episodes=d4rl`), with action noise so that the data covers states
        # off the expert's path. 400 episodes per map (~70 steps each, ending at G).
        maze2d=Maze2DConfig(episodes="goal", episodes_per_map=400, episode_steps=200,
                            action_noise=0.2),
        # Scripted experts: SAC for 10 tasks x 50k steps would take ~40 min of 2 cores alone.
        metaworld=MetaWorldConfig(tasks="MT10", source="scripted", transitions_per_task=50_000),
        sac=SACConfig(learning_starts=5_000, eval_every=5_000, eval_episodes=5),
        # Cheetah-vel / Ant-dir (Table 5): SAC is the only source, at ~80-116 env steps/s
        # per core with learning. Two training tasks, then the 5 held-out tasks x 10k steps
        # (prompts), each fine-tuning the final agent of the nearest training task (from
        # scratch, 10k steps learn nothing: see heldout_init). The data: 50 sampled
        # episodes of each final policy (10k rows per task). Far from expert at this size
        # (docs/local_tables.md: measured curves).
        # Cheetah-vel: 30k steps per training task (110k per suite, ~15 min of one core);
        # the evaluation return rises from -165 / -330 at 5k steps to -69 / -176 at 30k.
        cheetah_vel=MujocoSuiteConfig(tasks=LOCAL_TASKS["cheetah-vel"],
                                      heldout_tasks="cheetah-vel:heldout",
                                      transitions_per_task=30_000, heldout_transitions=10_000,
                                      heldout_init="nearest", expert_episodes=50),
        # Ant-dir: 100k steps per training task (250k per suite, ~45 min of one core). At
        # 30k the policy scored 84 / 73, below the ~196 of standing still (the +1 per step
        # for staying healthy, which SAC's untrained policy gets at 5k): SAC first learns
        # to move and falls; it passes standing still after ~60k steps and reaches 269 /
        # 284 at 100k (measured on ant-dir-0 / ant-dir-1, 5 episodes each).
        ant_dir=MujocoSuiteConfig(tasks=LOCAL_TASKS["ant-dir"], heldout_tasks="ant-dir:heldout",
                                  transitions_per_task=100_000, heldout_transitions=10_000,
                                  heldout_init="nearest", expert_episodes=50),
        # Sized for CPU: a step of this model at batch 80 costs ~0.3 s on one core (240-290
        # samples/s measured in the local run's MLflow runs), so 1,500 steps is ~8 min of
        # one core per model. H=16 (the planner replans every step anyway). fp32, as the
        # authors train: bf16 autocast (train.bf16) is 1.5x faster on a CPU with AMX and
        # slower on one without (docs/training_speed.md).
        data=DataConfig(batch_per_task=8, horizon=16),
        model=ModelConfig(d_model=128, n_layer=3, n_head=4),
        # DDIM-10 (paper: DDPM-200): sampling is most of the evaluations' and syntheses'
        # cost, linear in the steps. Measured at success parity with DDIM-20 on this
        # preset's Maze2D (200 episodes) and MT10 (80) planners, at 2x the env steps/s
        # (benchmarks/planning_parity.py --settings teacher fewer, docs/fast_planning.md).
        # With DDIM-20, 2,000 training steps and 15k TD3-BC steps the 27 jobs took 86 min
        # on 2 cores;
        # `--set diffusion.sample_steps=20 --set train.steps=2000 --set
        # offline.steps=15000` restores that budget.
        diffusion=DiffusionConfig(sampler="ddim", sample_steps=10),
        train=TrainConfig(steps=1_500, checkpoint_every=500, log_every=50),
        # A student step at batch 32 x 4 grid points costs about a teacher training step;
        # 4,096 teacher trajectories of 20 guided steps cost about as much again.
        distill=DistillConfig(samples=4_096, teacher_batch=256, batch_size=32, steps=1_500,
                              lr=2e-4, val_samples=128, checkpoint_every=250, log_every=50),
        eval=EvalConfig(episodes=6, seeds=(0,)),
        # Table 2 / 4 on one of MTDiff-S's MT10 tasks and one held-out task (its own 20k-row
        # noisy scripted dataset); one TD3-BC seed of 10k steps (~2 min on a core, with its
        # 2 x 20 evaluation episodes); 2 synthetic rows per original (paper). Fig. 6
        # (MTDiff-S-single) on push-v3. 9 TD3-BC runs: 3 tasks x 30k steps took 35 min.
        offline=OfflineConfig(steps=10_000, eval_every=5_000, eval_episodes=20, eval_envs=5,
                              tasks="push-v3,box-close-v3", seeds=(0,),
                              single_tasks="push-v3", heldout_transitions=20_000,
                              quality_samples=200),
        # One seed, the near-optimal view, no Fig. 7 within the hour on 2 cores;
        # `--set experiment.views=near-optimal,sub-optimal --set experiment.seeds=0,1,2`
        # expands it (`--plan` shows the jobs first).
        # Table 5's suites: `--set experiment.suites=cheetah-vel,ant-dir`. Their trainings
        # take 6,000 steps at batch 16 (4x the samples of 1,500 steps). Measured on
        # Cheetah-vel, 3 seeds (docs/results.md, "`local`, re-budgeted"): MTDiff-P stands
        # still after 1,500 steps at batch 16 (train -238.6 against standing still -248.1);
        # 4x the samples through the batch (1,500 steps at 64) leave it (-202.8); through
        # the steps they reach -150.9, better than the batch by 52 [34, 70].
        experiment=ExperimentConfig(suites=("maze2d", "metaworld"),
                                    methods=("mtdiff-p", "mtdiff-p-onehot", "mtdiff-s"),
                                    views=("near-optimal",), seeds=(0,), task_counts=(),
                                    mujoco_steps=6000, maze2d_batch_per_task=None,
                                    maze2d_steps=None),
    )


def smoke() -> Config:
    """CI: every stage runs end to end in a few minutes on 2 CPU cores."""
    return Config(
        preset="smoke",
        collect=CollectConfig(shard_rows=1_000, prompt_episodes=2, prompts_per_task=4),
        maze2d=Maze2DConfig(train_maps=("train-0", "train-1"), unseen_maps=("unseen-0",),
                            episodes_per_map=4, episode_steps=200, eval_episode_steps=100),
        metaworld=MetaWorldConfig(tasks="reach-v3,push-v3", source="scripted",
                                  transitions_per_task=2_000, episode_steps=100),
        # SAC plumbing only (CI): small nets so 2 x 2,000 steps take seconds.
        sac=SACConfig(hidden=64, batch_size=64, learning_starts=200, eval_every=1_000,
                      eval_episodes=2),
        # Two training tasks (1,000 SAC steps: one evaluation point each), one held-out task
        # started from its nearest training task's agent (as `local`); 50-step episodes.
        cheetah_vel=MujocoSuiteConfig(tasks="cheetah-vel-0,cheetah-vel-1",
                                      heldout_tasks="cheetah-vel-2", episode_steps=50,
                                      transitions_per_task=1_000, heldout_transitions=300,
                                      heldout_init="nearest", expert_episodes=4),
        ant_dir=MujocoSuiteConfig(tasks="ant-dir-0,ant-dir-1", heldout_tasks="ant-dir-6",
                                  episode_steps=50, transitions_per_task=1_000,
                                  heldout_transitions=300, heldout_init="nearest",
                                  expert_episodes=4),
        data=DataConfig(horizon=8, prompt_len=5, batch_per_task=4),
        model=ModelConfig(d_model=32, n_layer=2, n_head=2),
        diffusion=DiffusionConfig(num_steps=20, sample_steps=5, sampler="ddim"),
        train=TrainConfig(steps=20, checkpoint_every=10, log_every=5),
        distill=DistillConfig(student_steps=2, teacher_steps=4, samples=64, teacher_batch=32,
                              batch_size=16, steps=6, val_samples=8, checkpoint_every=3,
                              log_every=2),
        eval=EvalConfig(episodes=2, seeds=(0,), max_steps=10),
        offline=OfflineConfig(steps=20, batch_size=32, hidden=32, eval_every=10,
                              eval_episodes=2, eval_envs=2, augment_copies=1,
                              tasks="reach-v3,box-close-v3", seeds=(0,), synth_transitions=64,
                              single_tasks="reach-v3",
                              heldout_transitions=200, quality_samples=8, embedding="pca"),
        # Two seeds so the grid (and the report's spread over seeds) is exercised.
        experiment=ExperimentConfig(suites=("maze2d", "metaworld"),
                                    methods=("mtdiff-p", "mtdiff-p-onehot", "mtdiff-s"),
                                    views=("near-optimal",), seeds=(0, 1), task_counts=(),
                                    maze2d_batch_per_task=None, maze2d_steps=None),
    )


_PRESET_FNS = {"smoke": smoke, "local": local, "paper": paper}


def get_preset(name: str) -> Config:
    """The named preset; unknown names raise with the list of known ones."""
    if name not in _PRESET_FNS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {list(_PRESET_FNS)}")
    return _PRESET_FNS[name]()
