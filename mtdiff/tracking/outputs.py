"""Output folders: one writer at a time (`claim_output`), and the runs a dead writer left
RUNNING closed (`close_stale_runs`)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mtdiff.config import Config

LOCK_FILE = ".mtdiff.lock"


class OutputBusyError(RuntimeError):
    """Another live process is writing the same output folder."""


@contextmanager
def claim_output(out: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the body's duration.

    While held, nobody else writes the folder; runs a dead writer left RUNNING are
    therefore stale (`close_stale_runs`). The lock dies with its process (kill -9
    included): no stale lock files to clean up.
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK_FILE, "a+")  # noqa: SIM115 - held for the body's duration
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise OutputBusyError(f"{out} is in use by {holder}; wait for it to finish or "
                                  "choose another --out") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        f.flush()
        yield out
    finally:
        f.close()


def close_stale_runs(cfg: Config, output: str | Path, *, status: str = "KILLED",
                     exclude: tuple[str, ...] = ()) -> list[str]:
    """Mark every RUNNING run tagged with `output` as `status` (call while holding
    `claim_output(output)`: then no live process owns them). Returns their run ids."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.resolved_uri())
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    if exp is None:
        return []
    out = str(Path(output).resolve()).replace("'", "\\'")
    stale = client.search_runs([exp.experiment_id],
                               filter_string=f"tags.output = '{out}' and "
                                             "attributes.status = 'RUNNING'",
                               max_results=10_000)
    closed = []
    for r in stale:
        if r.info.run_id in exclude:
            continue
        client.set_tag(r.info.run_id, "closed_as_stale", time.strftime("%Y-%m-%d %H:%M:%S"))
        client.set_terminated(r.info.run_id, status=status)
        closed.append(r.info.run_id)
    if closed:
        print(f"[tracking] marked {len(closed)} run(s) of {output} left RUNNING by a process "
              f"that was killed (or lost with its node) as {status}")
    return closed
