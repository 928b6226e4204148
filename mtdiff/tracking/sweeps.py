"""MLflow runs of the Tune sweeps: the sweep's parent run and one child run per trial
(found again by the trial's key on resume), and closing a stopped trial's run. Part of
the `mtdiff.tracking` package (MLflow is called only from there); import it as
`from mtdiff.tracking import sweeps as sweep_runs`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtdiff.config import Config, flatten
from mtdiff.tracking import _ended, _quiet_system_metrics, common_tags, setup


@contextmanager
def sweep_parent(cfg: Config, *, name: str, storage: str, space: dict[str, Any]
                 ) -> Iterator[dict[str, Any]]:
    """The sweep's parent run — the one an earlier, interrupted run of the same sweep
    (name and storage folder) opened, else a new one — as the spec its trials' child
    runs need: ``{"uri", "experiment_id", "parent_id", "sweep"}``."""
    import mlflow

    uri = setup(cfg)
    exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    found = mlflow.search_runs([exp.experiment_id], output_format="list",
                               filter_string=f"tags.sweep = '{name}' and tags.sweep_storage = "
                                             f"'{storage}' and tags.stage = 'sweep'")
    parent = found[0].info.run_id if found else None
    active = mlflow.start_run(run_id=parent, run_name=f"sweep-{name}",
                              tags={**common_tags(cfg, "sweep"), "sweep": name,
                                    "sweep_storage": storage})
    with _ended(active):
        if parent is None:
            mlflow.log_params({f"space.{k}": str(v) for k, v in space.items()})
            mlflow.log_params(flatten(cfg))
        yield {"uri": uri, "experiment_id": exp.experiment_id,
               "parent_id": active.info.run_id, "sweep": name}


def find_child_run(spec: dict[str, str], key: str) -> str | None:
    """The child run of sweep trial `key` under the sweep's parent run, if one exists."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=spec["uri"])
    runs = client.search_runs([spec["experiment_id"]],
                              filter_string=f"tags.mlflow.parentRunId = '{spec['parent_id']}' "
                                            f"and tags.trial_key = '{key}'",
                              max_results=1)
    return runs[0].info.run_id if runs else None


@contextmanager
def trial_run(spec: dict[str, str], *, key: str, name: str, params: dict[str, Any]
              ) -> Iterator[Any]:
    """A sweep trial's child run, from inside the trial: resumed when a trial cut short
    earlier opened it (found by `key`), else new with `params`. Ends FAILED when the
    trial raises."""
    import mlflow

    mlflow.set_tracking_uri(spec["uri"])
    _quiet_system_metrics()
    existing = find_child_run(spec, key)
    if existing is not None:
        # its params were logged when it started
        active = mlflow.start_run(run_id=existing, log_system_metrics=True)
    else:
        active = mlflow.start_run(experiment_id=spec["experiment_id"], run_name=name,
                                  tags={"mlflow.parentRunId": spec["parent_id"],
                                        "stage": "sweep-trial", "sweep": spec["sweep"],
                                        "trial_key": key}, log_system_metrics=True)
        mlflow.log_params(params)
    with _ended(active):
        yield active


def terminate_run(uri: str, run_id: str, status: str, **tags: str) -> None:
    """Set a run's final state (and tags) from outside it, e.g. a trial stopped early."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    for k, v in tags.items():
        client.set_tag(run_id, k, v)
    client.set_terminated(run_id, status)


def log_to_run(cfg: Config, run_id: str, path: str | Path) -> None:
    """Attach a file to a finished run (e.g. a sweep's table and figure to its parent)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=setup(cfg))
    client.log_artifact(run_id, str(path))
