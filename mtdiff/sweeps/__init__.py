"""Tune sweeps over the project's run functions; every trial an MLflow child run.

The scripts in `sweeps/` hold only search spaces; they call `run_sweep` with one of the
trial functions here. Train V2 pattern: a trial that trains runs a driver function that
builds a `TorchTrainer` itself (`mtdiff.train.run`), never a Trainer inside the Tuner.

MLflow: the sweep's driver opens a parent run; each trial opens a child run (tag
``mlflow.parentRunId``) with the swept values as params and the objective as a metric,
so the UI's compare view lines the trials up. Concurrency comes from the cluster's
resources; ``scheduler="asha"`` stops poor trials early.

Resuming: every finished trial leaves a JSON record (its swept values and metrics) in
the sweep's folder, keyed by a hash of everything that decides its result. Running the
same command again runs only the trials without a record, and a trial that was cut
short continues in its own MLflow child run (found by that key), so a sweep keeps one
child run per trial. Tune's own state (``tuner.pkl``: pickles) is never restored: a
folder holding it where `Tuner.restore` would read it is refused.
"""

from mtdiff.sweeps.driver import (
    SweepError,
    SweepFailed,
    exit_code,
    run_sweep,
    run_sweep_or_exit,
)
from mtdiff.sweeps.trials import (
    budget_trial,
    evaluate_trial,
    task_count_trial,
    train_eval_trial,
)

__all__ = ["SweepError", "SweepFailed", "budget_trial", "evaluate_trial", "exit_code", "run_sweep",
           "run_sweep_or_exit", "task_count_trial", "train_eval_trial"]
