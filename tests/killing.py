"""Kill tests' helpers: a run that stops for good at a known point, so the kill lands mid-run.

The run is started with $MTDIFF_TEST_PAUSE_AFTER_<WHAT>=N (shards, checkpoint_step, trials:
`mtdiff.runtime.pause_for_tests`); polling its progress and killing instead races the
run's end on a fast machine (8,000 of 8,000 rows can be written before the poll).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def pause_env(what: str, after: int, flag: Path) -> dict[str, str]:
    """Environment of a run that stops for good once `after` `what`s are done and then
    creates `flag`."""
    return {**os.environ, f"MTDIFF_TEST_PAUSE_AFTER_{what.upper()}": str(after),
            "MTDIFF_TEST_PAUSED_FLAG": str(flag)}


def wait_for_pause(proc: subprocess.Popen, flag: Path, timeout: float = 240) -> None:
    """Wait until the run reached its pause point; it must still be running. On failure
    the run's process group is killed first (nothing is left running)."""
    deadline = time.time() + timeout
    while not flag.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    code = proc.poll()
    if not flag.exists() or code is not None:
        kill_group(proc)
    assert flag.exists(), f"the run did not reach its pause point in {timeout} s (exit {code})"
    assert code is None, f"the run ended (exit {code}) instead of waiting at its pause point"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group `proc` leads (started with start_new_session=True): the
    driver and the Ray instance it started (Ray's workers have groups of their own and
    exit with their raylet)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
