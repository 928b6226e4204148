"""Is the tracking store reachable? Checked before any Ray work, in seconds.

MLflow's client retries an unreachable server for minutes (a 268 s hang measured against
a closed port) and then fails inside a stage with a long traceback. Entry points call
`check_reachable` first and turn a `TrackingError` into one line that names the URI and
the fix.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


class TrackingError(ValueError):
    """The tracking store cannot be reached or written; the message says how to fix it."""


def _writable_folder(folder: Path, uri: str) -> None:
    """Create `folder` if needed and write a file in it, or raise a TrackingError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".mtdiff-write-check-"):
            pass
    except OSError as e:
        raise TrackingError(
            f"the MLflow store {uri} cannot be written: folder {folder} is not writable "
            f"({e.strerror or e}); point MLFLOW_TRACKING_URI (or --set tracking.uri=...) at a "
            "writable place, e.g. sqlite:///$PWD/mlflow.db") from None


def check_reachable(uri: str, timeout_s: float = 5.0) -> None:
    """Raise `TrackingError` unless the tracking store at `uri` can be used.

    http(s) and database URIs: a TCP connection to the host's port within `timeout_s`
    (DNS lookup included). ``sqlite:///PATH``: PATH's folder exists (created if missing)
    and can be written. ``file:`` URIs and plain paths: that folder, likewise. Other
    schemes (``databricks``, ...) are not checked.
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme.split("+")[0].lower()  # "postgresql+psycopg2" -> "postgresql"
    if scheme == "sqlite":
        # SQLAlchemy's rule: what follows "sqlite:///" is the path (absolute when it starts
        # with "/", so four slashes), relative to the working directory otherwise.
        path = unquote(uri.split(":///", 1)[1].split("?", 1)[0]) if ":///" in uri else ""
        if path in ("", ":memory:"):
            return
        _writable_folder(Path(path).resolve().parent, uri)
        return
    if scheme in ("", "file"):
        _writable_folder(Path(unquote(parsed.path) if scheme else uri), uri)
        return
    if scheme not in _DEFAULT_PORTS or not parsed.hostname:
        return
    port = parsed.port or _DEFAULT_PORTS[scheme]
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = (f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
                  else e.strerror or str(e))
        fix = ("start it (e.g. `mlflow server --host 127.0.0.1 --port "
               f"{port}`), " if parsed.hostname in ("127.0.0.1", "localhost", "::1") else
               "check that it runs and that this machine can reach it, ")
        raise TrackingError(
            f"the MLflow tracking server {uri} cannot be reached ({reason}); {fix}set "
            "MLFLOW_TRACKING_URI (or --set tracking.uri=...) to a reachable one, or turn "
            "tracking off (--no-mlflow where the command has it)") from None
