"""Where runs go (`setup`: the store, the experiment, the HTTP retry budget) and which code
made them (`code_version`)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from mtdiff.config import Config
from mtdiff.tracking.ui import mark_model_training

# MLflow's usage telemetry off (before mlflow is imported; set it to "false" to allow it):
# its client thread sets and pops an environment variable while requests iterates
# os.environ for proxies, which makes a concurrent log call fail with KeyError
# '_MLFLOW_TELEMETRY_SESSION_ID'; cluster nodes need not call out either.
# `runtime.init_ray` passes it to the Ray workers.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# A copy without .git (e.g. `ray job submit --working-dir`) may carry its version here:
# `git rev-parse --short HEAD > CODE_VERSION` before submitting.
CODE_VERSION_FILE = "CODE_VERSION"
_REPO = Path(__file__).resolve().parents[2]
# MLflow's HTTP client retries a failed call with urllib3's back-off: no wait before the
# first retry, then BACKOFF_FACTOR * 2^(k-1) s before retry k (at most 120 s each).
_BACKOFF_FACTOR = 2
_MAX_RETRIES = 10  # MLflow's own upper limit


def retry_budget(seconds: float | None) -> int:
    """Make this process's MLflow HTTP calls keep retrying for about `seconds` (and the
    Ray workers it starts afterwards: `runtime.init_ray` passes the variables on); returns
    the number of retries. A call to a server that is down waits, and what it logs arrives,
    once the server answers within that time."""
    if seconds is None:
        return int(os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7"))
    n, waited = 0, 0.0
    while waited < seconds and n < _MAX_RETRIES:
        n += 1
        waited += 0.0 if n == 1 else min(120.0, _BACKOFF_FACTOR * 2.0 ** (n - 1))
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(n),
                       "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(_BACKOFF_FACTOR),
                       # a server that accepts but never answers: one try's share of it
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(min(120.0, max(10.0,
                                                                             seconds / 4))))})
    return n


def retry_seconds(retries: int) -> float:
    """The back-off `retries` retries wait in all (what `retry_budget` aims at)."""
    return sum(min(120.0, _BACKOFF_FACTOR * 2.0 ** (k - 1)) for k in range(2, retries + 1))


def setup(cfg: Config) -> str:
    """Point MLflow at the configured store and experiment (created, and marked for model
    training, when missing), with the configured retry budget; returns the URI."""
    import mlflow

    retry_budget(cfg.tracking.retry_s)
    uri = cfg.tracking.resolved_uri()
    mlflow.set_tracking_uri(uri)
    mark_model_training(mlflow.set_experiment(cfg.tracking.experiment))
    return uri


def code_version() -> str:
    """The code's version: $MTDIFF_CODE_VERSION (the driver stamps it for its jobs), else
    the git commit (+"dirty"), else the `CODE_VERSION` file written at submit time (`ray
    job submit --working-dir` ships no `.git`), else a hash of the package's sources."""
    if os.environ.get("MTDIFF_CODE_VERSION"):
        return os.environ["MTDIFF_CODE_VERSION"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=_REPO, text=True, capture_output=True, timeout=10
                               ).stdout.strip() if sha else ""
    except (OSError, subprocess.SubprocessError):
        sha = dirty = ""
    if sha:
        return sha + ("+dirty" if dirty else "")
    stamp = _REPO / CODE_VERSION_FILE
    if stamp.is_file() and stamp.read_text().strip():
        return stamp.read_text().strip()
    h = hashlib.sha256()
    for f in sorted((_REPO / "mtdiff").rglob("*.py")):
        h.update(f.read_bytes())
    return f"src-{h.hexdigest()[:12]}"
