"""The multi-task baselines of Table 1 (paper §5.1, App. B): MTBC, MTIQL, MTCQL, MT-DT and
Prompt-DT, one file per method that registers it (`mtdiff.methods.register`).

Each method file provides a learner (`mtdiff.train.learner.Learner`, trained by the same
Ray Train loop as MTDiff) and `policy_from_checkpoint` (`mtdiff.eval.policy.Policy`,
evaluated by the same rollouts). Shared parts: `nets` (task embedding, actors, per-task
critic heads), `common` (learner and policy plumbing), `dt` / `dt_policy` (the Decision
Transformer on the project's GPT-2). Hyperparameters: each method's own config section,
a `mtdiff.config.base.MethodConfig` dataclass in its file (`Config.methods[name]`), built
on the shared ones in `common` (`MLPConfig`, `QLearningConfig`) and `dt` (`DTConfig`).
Nothing is imported here (no work at import time).
"""
