"""A command run against a running cluster is supervised: Ray's native end of a driver (the
head restarted, or stopped answering) becomes one line and exit 1; everything else passes
through unchanged (output as it comes, exit codes, Ctrl-C)."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from mtdiff import supervise
from mtdiff.runtime import free_port

REPO = Path(__file__).resolve().parents[1]
PUSH = ("[2026-12-07 09:29:01,146 E 15428 15474] task_manager.cc:1545: Failed to push error to "
        "driver for task 85748392bcd969ccffffffffffffffffffffffff01000000\n")
NATIVE = ("[2026-12-07 08:56:33,621 C 9130 9148] global_state_accessor.cc:111:  An unexpected "
          "system state has occurred. Check failed: Unauthenticated: RPC error: "
          "WrongClusterID: Perhaps the client is accessing GCS after it has restarted.\n"
          "*** StackTrace Information ***\n/x/_raylet.so(+0x1812b9a) ray::operator<<()\n")


def _script(tmp_path: Path, body: str) -> Path:
    """A command through the real `mtdiff.commands.guarded`, as `pipelines/*.py` run one."""
    path = tmp_path / "command.py"
    path.write_text(textwrap.dedent("""\
        import os, sys, time
        from mtdiff.commands import guarded
        def command(argv):
        """) + textwrap.indent(textwrap.dedent(body), "    ") + textwrap.dedent("""\
        if __name__ == "__main__":
            sys.exit(guarded(command))
        """))
    return path


def _env(address: str | None = "127.0.0.1:6399") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", supervise.CHILD_ENV)}
    env["PYTHONPATH"] = str(REPO)
    if address is not None:
        env["RAY_ADDRESS"] = address
    return env


def _run(script: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                       timeout=120)
    # Decoded by hand: text mode would turn a progress bar's "\r" into a newline.
    r.stdout, r.stderr = r.stdout.decode(), r.stderr.decode()
    return r


def test_a_native_abort_after_a_progress_bar_is_one_line_and_exit_1(tmp_path):
    script = _script(tmp_path, f"""\
        sys.stderr.write("\\rjobs: 1/3"); sys.stderr.flush()
        sys.stderr.write({PUSH!r}); sys.stderr.flush()  # what the core worker logs first
        time.sleep(1)
        sys.stderr.write({PUSH!r}); sys.stderr.flush()
        sys.stderr.write({NATIVE!r}); sys.stderr.flush()
        os.abort()
        """)
    r = _run(script, _env())
    assert r.returncode == 1, r.stderr
    lines = r.stderr.rstrip("\n").split("\n")
    assert lines[0] == "\rjobs: 1/3", lines  # the progress passed through
    assert len(lines) == 2, lines
    assert lines[1].startswith("error: the Ray cluster at 127.0.0.1:6399 restarted under this"
                               " run"), lines
    assert "rerun the same command to resume" in lines[1]
    trace = Path(lines[1].rsplit("Ray's trace: ", 1)[1].rstrip(")"))
    assert "StackTrace" in trace.read_text() and "StackTrace" not in r.stderr
    assert trace.read_text().count("Failed to push error") == 2  # there, not on the screen
    trace.unlink()


def test_output_exit_codes_and_the_supervision_itself(tmp_path):
    script = _script(tmp_path, f"""\
        print("out", os.environ.get({supervise.CHILD_ENV!r}, "unsupervised"))
        print("error: bad input; fix it", file=sys.stderr)
        return 2
        """)
    r = _run(script, _env())
    assert (r.returncode, r.stdout, r.stderr) == (2, "out 1\n", "error: bad input; fix it\n")
    # A local instance (the tests' own `RAY_ADDRESS=local`), or none: nothing to supervise.
    for address in ("local", None):
        r = _run(script, _env(address))
        assert (r.returncode, r.stdout) == (2, "out unsupervised\n")


def test_progress_passes_through_while_the_command_runs(tmp_path):
    script = _script(tmp_path, """\
        sys.stderr.write("\\rjobs: 1/3 [00:01<00:02]"); sys.stderr.flush()
        time.sleep(60)
        """)
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        seen, deadline = b"", time.time() + 30
        while b"jobs: 1/3" not in seen and time.time() < deadline:
            seen += proc.stderr.read() or b""
            time.sleep(0.1)
        assert b"jobs: 1/3 [00:01<00:02]" in seen and proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_ctrl_c_reaches_the_command_once(tmp_path):
    script = _script(tmp_path, """\
        print("started", flush=True)
        time.sleep(60)
        """)
    proc = subprocess.Popen([sys.executable, str(script)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout.readline() == "started\n"
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted; rerun the same command to resume", err


def test_a_native_line_cut_across_reads_is_still_caught():
    out = io.BytesIO()
    stream = supervise.StderrFilter(out)
    native = NATIVE.encode()
    stream.feed(b"[repro] train/a: done\n" + native[:14])
    stream.feed(native[14:30])
    stream.feed(native[30:] + b"more\n")
    stream.close()
    assert out.getvalue() == b"[repro] train/a: done\n"
    assert stream.diverted == native + b"more\n"


def test_native_lines_no_fatal_line_follows_are_shown_after_the_hold():
    out = io.BytesIO()
    stream = supervise.StderrFilter(out, hold_s=30.0)
    stream.feed(b"\rjobs: 1/3" + PUSH.encode() + b"[repro] a: done\n", now=0.0)
    assert out.getvalue() == b"\rjobs: 1/3[repro] a: done\n"  # the native line waits
    stream.tick(now=29.0)
    assert PUSH.encode() not in out.getvalue()
    stream.tick(now=30.0)
    assert out.getvalue().endswith(PUSH.encode())
    stream.feed(PUSH.encode()[:20], now=31.0)  # an unfinished native line waits too
    stream.close()  # and nothing is lost at the end
    assert out.getvalue().endswith(PUSH.encode()[:20]) and stream.diverted == b""


def _start_head(port: int, tmp: str, env: dict[str, str]) -> subprocess.Popen:
    log = Path(tmp) / "start.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start",
                                 "--head", f"--port={port}", f"--temp-dir={tmp}",
                                 "--num-cpus=1", "--include-dashboard=false"],
                                # a loaded machine registers the node slowly (default 10 s)
                                env={**env, "RAY_raylet_start_wait_time_s": "120"},
                                start_new_session=True, stdout=f, stderr=subprocess.STDOUT)
    if proc.wait(timeout=300) != 0:
        os.killpg(proc.pid, signal.SIGKILL)  # what the failed start left running
        raise AssertionError(log.read_text()[-3000:])
    return proc  # its group holds the GCS, the raylet and their helpers


def _wait_gone(tmp: str, port: int, timeout: float = 60.0) -> None:
    """Until no process names the killed head (its workers, in groups of their own, outlive
    it by a moment, and `ray start --head` refuses a port a live process names as its GCS)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        names = [subprocess.run(["pgrep", "-f", pat], capture_output=True, text=True).stdout
                 for pat in (tmp, f"127.0.0.1:{port}")]
        if not any(n.strip() for n in names):
            return
        time.sleep(0.5)
    raise AssertionError(f"the killed head's processes still run after {timeout:.0f} s")


@pytest.mark.integration
@pytest.mark.slow  # two `ray start --head`: on a loaded 2-core machine a start can time out
def test_a_head_restart_under_a_real_driver_is_one_line(tmp_path):
    """A real cluster (`ray start --head`, token auth) is killed and started again on the
    same port while a driver polls it, as the graph does. (The fast tests above give the
    supervisor Ray's own abort output; `drills/head_restart.py` does this under a graph.)"""
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    port = free_port()
    tmp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Unix socket paths are limited
    env = {**_env(f"127.0.0.1:{port}"), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": generate_new_authentication_token()}
    script = _script(tmp_path, """\
        import ray
        from mtdiff.runtime import init_ray
        init_ray()
        print("connected", flush=True)
        while True:
            ray.nodes()
            time.sleep(1)
        """)
    heads = [_start_head(port, tmp, env)]
    driver = None
    try:
        driver = subprocess.Popen([sys.executable, str(script)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  start_new_session=True)
        assert driver.stdout.readline() == "connected\n", driver.stderr.read()[-3000:]
        os.killpg(heads[0].pid, signal.SIGKILL)
        _wait_gone(tmp, port)
        heads.append(_start_head(port, tmp, env))
        out, err = driver.communicate(timeout=180)
        assert driver.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: the Ray cluster at 127.0.0.1:{port} restarted"), err
        assert "_raylet.so" not in err and "StackTrace" not in err
        Path(last.rsplit("Ray's trace: ", 1)[1].rstrip(")")).unlink()
    finally:
        if driver is not None and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        for head in heads:
            try:
                os.killpg(head.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
