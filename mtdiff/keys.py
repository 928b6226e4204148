"""The project's one vocabulary: Parquet column names and training-batch keys.

The Arrow schema (`mtdiff.data.schema`), the window sampler (`mtdiff.data.windows`)
and the models all use these names, so a rename happens in one place.
"""

from typing import Final

# --- Parquet columns: one row per environment transition -------------------------------
TASK: Final = "task"  # str, the task (Meta-World task name or Maze2D map name)
EPISODE: Final = "episode"  # int64, episode id, unique within a task, increasing in time
STEP: Final = "step"  # int32, step index within the episode, 0-based
OBSERVATION: Final = "observation"  # list<float32>[obs_dim], s_t
ACTION: Final = "action"  # list<float32>[act_dim], a_t
REWARD: Final = "reward"  # float32, r_t
TERMINATED: Final = "terminated"  # bool, s_{t+1} is terminal (MDP end)
TRUNCATED: Final = "truncated"  # bool, the episode was cut here (time limit)
SUCCESS: Final = "success"  # bool, the task's success flag at this step

TRANSITION_COLUMNS: Final = (
    TASK, EPISODE, STEP, OBSERVATION, ACTION, REWARD, TERMINATED, TRUNCATED, SUCCESS,
)

# Prompt sets (few-shot expert demonstrations, paper eq. 8) add one column.
PROMPT_ID: Final = "prompt_id"  # int32, which J-step window of the task's prompt set

# --- Training-batch keys (tensors, B = tasks x windows per task) -----------------------
BATCH_ACTIONS: Final = "actions"  # (B, H, act_dim)  x0 of MTDiff-P, normalised
BATCH_HISTORY: Final = "history"  # (B, L, obs_dim)  s_{t-L+1..t}, normalised
BATCH_PROMPT: Final = "prompt"  # (B, J, obs_dim + act_dim)  Z, normalised
BATCH_RETURN: Final = "returns"  # (B, 1)  normalised return-to-go R(tau)
BATCH_TRANSITIONS: Final = "transitions"  # (B, H, obs_dim + act_dim + 1)  x0 of MTDiff-S
BATCH_MASK: Final = "mask"  # (B, H) float, 1 where the window is inside the episode
BATCH_TASK_ID: Final = "task_id"  # (B,) int64, index into the dataset's task list

# Baselines (`mtdiff.baselines`): one-step transitions ("qlearning" fields) and K-step
# return-conditioned sequences ("sequence" fields). States are normalised like the
# planner's; actions stay in the environments' [-1, 1] units (tanh-bounded actors).
BATCH_OBS: Final = "obs"  # (B, obs_dim)  s_t, normalised
BATCH_ACTION: Final = "action"  # (B, act_dim)  a_t, raw (clipped to [-1, 1])
BATCH_REWARD: Final = "reward"  # (B,)  r_t, raw
BATCH_NEXT_OBS: Final = "next_obs"  # (B, obs_dim)  s_{t+1}, normalised
BATCH_DONE: Final = "done"  # (B,) float, 1 where s_{t+1} is terminal (MDP end)
BATCH_SEQ_OBS: Final = "seq_obs"  # (B, K, obs_dim)  s_t .. s_{t+K-1}, normalised
BATCH_SEQ_ACTIONS: Final = "seq_actions"  # (B, K, act_dim)  a_t .. a_{t+K-1}, raw
BATCH_RTG: Final = "rtg"  # (B, K, 1)  return-to-go / the task's return range
BATCH_TIMESTEPS: Final = "timesteps"  # (B, K) int64, step index within the episode
