"""Runs this process logs into by id, through the client, without making them active:
the reproduction's parent run (its headline metrics and report page, written by the
report job) and the live child runs of tasks that run in other processes (a SAC task's
learning curve, point by point, while it trains).

Part of the `mtdiff.tracking` package (MLflow is called only from there). A process hands
its active run to the Ray tasks it starts as a spec (`active_spec`); a task makes it
current with `live_parent` and opens its child run under it with `LiveChild`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mtdiff.tracking import active, retry_budget, retry_seconds

_LIVE_PARENT: dict[str, str] | None = None  # set by `live_parent` for the task's duration


def parent_run_id() -> str | None:
    """The parent of the active run (a graph job's run: the reproduction's parent run),
    or None when no run is active or it has no parent."""
    mlflow = active()
    if mlflow is None:
        return None
    return mlflow.active_run().data.tags.get("mlflow.parentRunId")


def log_to_run(run_id: str, metrics: dict[str, float], files: list[str | Path] = (),
               artifact_path: str | None = None) -> None:
    """`metrics` (at step 0) and `files` onto run `run_id`, which may be open in another
    process (the driver holds the parent run). MLflow takes at most 1,000 metrics per
    batch."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(items), 1000):
        client.log_batch(run_id, metrics=items[i:i + 1000])
    for f in files:
        client.log_artifact(run_id, str(f), artifact_path=artifact_path)


def active_spec() -> dict[str, str] | None:
    """The active run as a spec a Ray task can open a live child run under
    (``{"uri", "experiment_id", "run_id", "output"}``), or None when none is active."""
    mlflow = active()
    if mlflow is None:
        return None
    run = mlflow.active_run()
    return {"uri": mlflow.get_tracking_uri(), "experiment_id": run.info.experiment_id,
            "run_id": run.info.run_id, "output": run.data.tags.get("output", ""),
            "retry_s": retry_seconds(retry_budget(None))}


@contextmanager
def live_parent(spec: dict[str, str] | None) -> Iterator[None]:
    """Make `spec` (`active_spec`'s, from the process that started this task) the run
    that `LiveChild` opens child runs under, for the body's duration."""
    global _LIVE_PARENT
    before, _LIVE_PARENT = _LIVE_PARENT, spec
    try:
        yield
    finally:
        _LIVE_PARENT = before


class LiveChild:
    """A child run of the current live parent (`live_parent`), logged as things happen.

    The run is found again by its `key` tags under the same parent (a task resumed in the
    same job logs into the run it started), else created. As a context manager it ends
    FINISHED, or FAILED / KILLED when the body raises. Tracking never stops the work:
    the first failure to log prints one line and turns logging off. Without a live parent
    every call is a no-op.
    """

    def __init__(self, name: str, key: dict[str, str], tags: dict[str, Any] | None = None
                 ) -> None:
        self.run_id: str | None = None
        self.resumed = False
        spec = _LIVE_PARENT
        if spec is None:
            return
        self._guard(self._open, spec, name, key, tags or {})

    def _open(self, spec: dict[str, str], name: str, key: dict[str, str],
              tags: dict[str, Any]) -> None:
        import mlflow

        retry_budget(spec.get("retry_s"))
        self.client = mlflow.MlflowClient(tracking_uri=spec["uri"])
        where = " and ".join([f"tags.mlflow.parentRunId = '{spec['run_id']}'",
                              *(f"tags.{k} = '{v}'" for k, v in key.items())])
        found = self.client.search_runs([spec["experiment_id"]], filter_string=where,
                                        max_results=1)
        if found:
            self.run_id, self.resumed = found[0].info.run_id, True
            self.client.update_run(self.run_id, status="RUNNING")
            return
        all_tags = {**{k: str(v) for k, v in tags.items()}, **key,
                    "mlflow.parentRunId": spec["run_id"], "live": "true"}
        if spec.get("output"):  # a rerun of the graph closes it if a kill leaves it RUNNING
            all_tags["output"] = spec["output"]
        self.run_id = self.client.create_run(spec["experiment_id"], run_name=name,
                                             tags=all_tags).info.run_id

    def _guard(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - any tracking failure; the work goes on
            print(f"[tracking] live logging off: {type(e).__name__}: {e}", file=sys.stderr)
            self.run_id = None

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        """`metrics` at `step`, now."""
        if self.run_id is None or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._guard(lambda: self.client.log_batch(self.run_id, metrics=batch))

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (`status`: FINISHED, FAILED or KILLED)."""
        if self.run_id is not None:
            self._guard(lambda: self.client.set_terminated(self.run_id, status))
            self.run_id = None

    def __enter__(self) -> LiveChild:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """End FINISHED, or KILLED on Ctrl-C, FAILED on any other exception (which goes
        on)."""
        self.end("FINISHED" if kind is None else
                 "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")


def live_children(key: str, value: str) -> list[str]:
    """Ids of the live child runs (`LiveChild`) of the active run whose tag `key` is
    `value`: what a driver that logs curves after the fact skips."""
    mlflow = active()
    if mlflow is None:
        return []
    run = mlflow.active_run()
    client = mlflow.MlflowClient()
    found = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}' and "
                      f"tags.live = 'true' and tags.{key} = '{value}'")
    return [r.info.run_id for r in found]


def tag_runs(run_ids: list[str], tags: dict[str, Any]) -> None:
    """Set `tags` on runs by id (what a driver knows of a live child run that its task
    could not: e.g. a SAC task's role)."""
    mlflow = active()
    if mlflow is None:
        return
    client = mlflow.MlflowClient()
    for run_id in run_ids:
        for k, v in tags.items():
            client.set_tag(run_id, k, str(v))
