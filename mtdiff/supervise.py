"""A command that connects to a running Ray cluster runs under a small supervisor process.

Why: when the cluster's head restarts under a running driver, the driver's Ray core worker
meets a GCS with another cluster ID and aborts the process from C++ (a failed `RAY_CHECK`:
no Python exception, a native stack trace, SIGABRT). Nothing inside the driver can catch
that. So the command the user started runs itself again as a child, passes the child's
output through unchanged, and turns a native abort into one line that says what happened
and that rerunning the same command resumes: every job writes its outputs atomically and
records them, so a rerun skips what finished.

Only runs against a cluster the command did not start are supervised (`$RAY_ADDRESS` set,
not `local` and not a `ray://` client address): a local instance lives and dies with its
driver. The supervisor imports no more of the project than `mtdiff.commands` already has
(`mtdiff.cli`), and no torch or Ray.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

from mtdiff.cli import RUN_FAILED

CHILD_ENV = "MTDIFF_SUPERVISED"  # set in the child, so it runs the command itself


# A native Ray log line that ends the driver: severity FATAL or CHECK (glog's "F", Ray's
# "C"), printed just before an abort, or the error after which the core worker exits
# because the head stopped answering for `gcs_rpc_server_reconnect_timeout_s` (60 s).
_NATIVE_FATAL = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ "
                           rb"(?:[CF] \d+ \d+\] |E \d+ \d+\] [\w.]+:\d+: Failed to connect to GCS)")
# What Ray's check says when a client meets a GCS that has restarted.
_CLUSTER_RESTARTED = (b"WrongClusterID", b"GCS after it has restarted")
# Any native Ray log line of the driver (info, warning, error), whole or begun.
_NATIVE_START = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [IWE] \d+ \d+\] ")
_NATIVE_LINE = re.compile(_NATIVE_START.pattern + rb"[^\n]*\n")
NATIVE_HOLD_S = 30.0  # how long a native line waits for a fatal one before it is shown
_PR_SET_PDEATHSIG = 1


def wanted() -> bool:
    """Whether this process should supervise its command rather than run it."""
    if os.environ.get(CHILD_ENV) == "1" or os.name != "posix":
        return False
    address = os.environ.get("RAY_ADDRESS", "")
    return address not in ("", "local") and not address.startswith("ray://")


def run() -> int:
    """Run this process's own command line again as a child; return its exit code, or
    print one line and return `RUN_FAILED` if Ray ended it from native code."""
    argv = [sys.executable, *sys.orig_argv[1:]]
    env = dict(os.environ, **{CHILD_ENV: "1"})
    parent = os.getpid()
    child = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE,
                             preexec_fn=lambda: _die_with(parent))
    forwarded: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        forwarded.add(signum)
        if child.poll() is None:
            child.send_signal(signum)

    # The child is in this process group, so a terminal's Ctrl-C reaches it directly and
    # the supervisor only waits for it to finish its own "interrupted" line.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    stream = StderrFilter(sys.stderr.buffer)
    assert child.stderr is not None
    fd = child.stderr.fileno()
    while True:
        if select.select([fd], [], [], 1.0)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            stream.feed(chunk)
        stream.tick()
    stream.close()
    code = child.wait()
    if stream.diverted:
        if not stream.at_line_start:
            sys.stderr.write("\n")
        print(_abort_line(stream.diverted), file=sys.stderr, flush=True)
        return RUN_FAILED
    if code < 0:
        if -code not in forwarded:
            print(f"error: the driver process ended on {signal.Signals(-code).name} "
                  "(killed from outside, or out of memory); rerun the same command to "
                  "resume from the finished jobs", file=sys.stderr, flush=True)
        return 128 - code  # as a shell reports a process killed by a signal
    return code


class StderrFilter:
    """Pass a child's stderr through as it arrives, progress bars' partial lines included,
    until a native fatal line; keep that line and everything after it in `diverted`.

    The driver's own native log lines (`[time E pid tid] ...`) are held `hold_s` seconds
    first: when the head dies, Ray's core worker logs a few ("Failed to push error to
    driver ...") before it ends the driver, and those belong in the trace file, not before
    the one line. Lines no fatal line follows are passed on after the hold, or at the end."""

    def __init__(self, out, hold_s: float = NATIVE_HOLD_S) -> None:
        self.out = out
        self.hold_s = hold_s
        self.diverted = b""
        self.at_line_start = True  # the last byte passed through ended a line
        self._held = b""  # a tail that may be the start of a native line cut by a read
        self._native: list[tuple[float, bytes]] = []  # (arrival, line) held back

    def feed(self, chunk: bytes, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.diverted:
            self.diverted += chunk
            return
        data, self._held = self._held + chunk, b""
        # Not only at a line start: the native line can follow a progress bar's "\r" line.
        found = _NATIVE_FATAL.search(data)
        if found:
            self._split(data[:found.start()], now)
            self.diverted = b"".join(line for _, line in self._native) + data[found.start():]
            self._native = []
            return
        self._split(data, now)

    def tick(self, now: float | None = None) -> None:
        """Pass on the held native lines no fatal line followed within `hold_s`."""
        now = time.monotonic() if now is None else now
        while self._native and not self.diverted and now - self._native[0][0] >= self.hold_s:
            self._pass(self._native.pop(0)[1])

    def close(self) -> None:
        if not self.diverted:
            for _, line in self._native:
                self._pass(line)
            self._pass(self._held)
        self._native, self._held = [], b""

    def _split(self, data: bytes, now: float) -> None:
        """Pass `data` on, holding back its whole native lines and an unfinished tail that
        may be (the start of) one."""
        at = 0
        for m in _NATIVE_LINE.finditer(data):
            self._pass(data[at:m.start()])
            self._native.append((now, m.group()))
            at = m.end()
        rest = data[at:]
        start = _NATIVE_START.search(rest)
        cut = start.start() if start else rest.rfind(b"[")
        tail = rest[cut:] if cut != -1 else b""
        if start or (tail and len(tail) < 64 and
                     not any(c in tail for c in (b"]", b"\n", b"\r"))):
            rest, self._held = rest[:cut], tail
        self._pass(rest)

    def _pass(self, data: bytes) -> None:
        if data:
            self.out.write(data)
            self.out.flush()
            self.at_line_start = data.endswith(b"\n")


def _abort_line(native: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="mtdiff-ray-abort-", suffix=".log")
    with os.fdopen(fd, "wb") as f:
        f.write(native)
    address = os.environ.get("RAY_ADDRESS", "")
    resume = f"rerun the same command to resume from the finished jobs (Ray's trace: {path})"
    if any(marker in native for marker in _CLUSTER_RESTARTED):
        return (f"error: the Ray cluster at {address} restarted under this run (its head "
                f"came back with a new cluster ID) and Ray ended the driver; {resume}")
    if b"Failed to connect to GCS" in native:
        return (f"error: the Ray cluster at {address} stopped answering (Ray gave up "
                f"reaching its head after 60 s) and Ray ended the driver; once the head "
                f"runs again, {resume}")
    first = native.split(b"\n", 1)[0].split(b"] ", 1)[-1].decode(errors="replace").strip()
    return f"error: Ray aborted the driver ({first[:200]}); {resume}"


def _die_with(parent: int) -> None:
    """In the child before exec: die if the supervisor dies (a kill -9 of the supervisor
    alone would otherwise leave the graph running unsupervised)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child outlives the supervisor
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(RUN_FAILED)
