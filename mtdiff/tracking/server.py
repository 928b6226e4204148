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
    _check_connection(uri, parsed.hostname, parsed.port or _DEFAULT_PORTS[scheme], timeout_s)
    if scheme in ("http", "https"):
        _check_access(uri, timeout_s)


# What MLflow's client sends a server that asks for credentials (basic-auth app or a proxy);
# `runtime.init_ray` passes the same variables to the Ray workers.
AUTH_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
            "MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_TRACKING_SERVER_CERT_PATH",
            "MLFLOW_TRACKING_CLIENT_CERT_PATH")


def _check_access(uri: str, timeout_s: float) -> None:
    """Raise `TrackingError` when the server refuses this client (401 / 403) on a read of
    one experiment, with the credentials MLflow's client would send ($MLFLOW_TRACKING_
    USERNAME / _PASSWORD, or _TOKEN). Any other answer (or none) is not a refusal."""
    import base64
    import os
    import urllib.error
    import urllib.request

    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    req = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search"
                                 "?max_results=1")
    if user and password:
        pair = base64.b64encode(f"{user}:{password}".encode()).decode()
        req.add_header("Authorization", f"Basic {pair}")
    elif token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.urlopen(req, timeout=timeout_s).close()  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as e:
        if e.code == 401 and not (user and password) and not token:
            raise TrackingError(
                f"the MLflow tracking server {uri} asks for a user and password (401 "
                "Unauthorized); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(a user of its basic-auth app) where you start the run") from None
        if e.code == 401:
            who = f"user {user!r}" if user and password else "the token in MLFLOW_TRACKING_TOKEN"
            raise TrackingError(
                f"the MLflow tracking server {uri} refused {who} (401 Unauthorized: wrong "
                "password or no such user); check MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD") from None
        if e.code == 403:
            raise TrackingError(
                f"the MLflow tracking server {uri} lets user {user!r} in but not read its "
                "experiments (403 Forbidden); give the user a permission on the server, or "
                "use another user") from None
    except (urllib.error.URLError, OSError):
        return


def _check_connection(uri: str, host: str, port: int, timeout_s: float) -> None:
    """Raise `TrackingError` unless a TCP connection to host:port opens in time."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        reason = (f"no answer within {timeout_s:g} s" if isinstance(e, TimeoutError)
                  else e.strerror or str(e))
        fix = ("start it (e.g. `mlflow server --host 127.0.0.1 --port "
               f"{port}`), " if host in ("127.0.0.1", "localhost", "::1") else
               "check that it runs and that this machine can reach it, ")
        raise TrackingError(
            f"the MLflow tracking server {uri} cannot be reached ({reason}); {fix}set "
            "MLFLOW_TRACKING_URI (or --set tracking.uri=...) to a reachable one, or turn "
            "tracking off (--no-mlflow where the command has it)") from None
