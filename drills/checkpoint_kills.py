"""Checkpoint kills: SIGKILL checkpoint writes at random moments, many times; a resume must
always start from the last complete checkpoint, never from a partial one.

    python drills/checkpoint_kills.py --kills 40 --train-kills 3 --work /tmp/ckpt-kills \
        [--seed 0] [--mb 16] [--reuse-reference]

1. Writes (`--kills`): a child process writes checkpoints in a loop through the project's
   write path (`mtdiff.train.checkpoints.write_checkpoint`, `--mb` MB of tensors whose
   values are a function of the step), in one of two ways, alternating per kill, each in
   its own run folder that every kill adds to:
   - ``ray``: as a Ray Train worker does: written into the worker's temporary folder
     (`mtdiff.train.ray_train.checkpoint_tmpdir`; a starting writer removes those of
     killed ones, as a worker does), then copied into ``checkpoint_<timestamp>`` with Ray
     Train's own copy (`_pyarrow_fs_copy_files`, not atomic) and the older ones deleted
     with Ray's `delete_fs_path` (two kept);
   - ``direct``: as distillation does: written straight into ``checkpoint_<step>``, older
     folders removed with `shutil.rmtree`.
   The child starts from `Checkpoint.latest` (as a rerun does) and appends "done <step>"
   to a log after each write returns. The drill kills it at a random moment (seeded;
   within ~3 write cycles of its start), then checks: every ``checkpoint.pt`` on disk
   either loads with `load_checkpoint` and holds exactly its step's tensors, or is
   refused (`CheckpointError`: `Checkpoint.latest` skips it); `Checkpoint.latest` gives
   the highest step written completely: at least the last "done" step, at most the one
   in flight; it names a ``checkpoint.pt`` (never a temporary file); and the next child
   resumes from that step. Leftovers do not pile up: a starting ``ray`` writer removes the
   cut-short copies and temporary folders of killed ones (`remove_partial_checkpoints`,
   `remove_stale_checkpoint_tmp`, as a training rerun does), a write the temporary file of
   a killed write into its folder; so at most one of each is on disk after a kill.
2. Training (`--train-kills`): a reference smoke training (`pipelines/train.py`, Ray,
   MLflow; a 256-wide model, so a checkpoint is ~65 MB) runs uninterrupted; then, each in
   a fresh output folder, the same command is killed (its process group and every process
   it started: the driver, its local Ray, the training worker) a random
   0-0.4 s after a random checkpoint began (its worker's temporary checkpoint folder
   appeared in the run's $TMPDIR: the kill lands while it is written or copied, or just
   after), and rerun to the end. The rerun must exit 0, say it resumes from the highest
   step readable on disk after the kill (computed here by loading every checkpoint), end
   at the reference's final step with ``resumed_from`` equal to that step, remove the
   killed worker's temporary folder and any cut-short checkpoint copy, and leave no MLflow
   run RUNNING.

Prints one line per kill and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
KEEP = 2  # checkpoints kept, as `CheckpointConfig(num_to_keep=2)` in mtdiff.train.ray_train
sys.path.insert(0, str(REPO / "drills"))

from checkpoint_train_kills import train_kills  # noqa: E402 - part 2, beside this script

# ------------------------------------------------------------------ the writer child


def _state(step: int, n: int) -> dict[str, Any]:
    """The tensors of checkpoint `step`: values that say which step they belong to."""
    import torch

    base = torch.arange(n, dtype=torch.float32)
    return {"model": {"w": base + step}, "ema": {"w": base - step},
            "optimizer": {"state": {"w": base * 0 + step}, "param_groups": [{"lr": 1e-4}]}}


def _steps_of(run: Path) -> list[tuple[int, Path]]:
    """(step, folder) of the checkpoint folders this drill's writers made, by step."""
    out = []
    for d in run.glob("checkpoint_*"):
        m = re.search(r"\.s(\d+)$|^checkpoint_(\d+)$", d.name)
        if m:
            out.append((int(m.group(1) or m.group(2)), d))
    return sorted(out)


def child(mode: str, run: Path, log: Path, mb: int) -> None:
    """Write checkpoints forever from the newest readable one on (killed by the drill)."""
    import pyarrow.fs
    import torch  # noqa: F401 - imported before "resume": the kill window is the writing
    from ray.train.v2._internal.execution.storage import _pyarrow_fs_copy_files, delete_fs_path

    from mtdiff.artifacts import Checkpoint
    from mtdiff.train.checkpoints import remove_partial_checkpoints, write_checkpoint
    from mtdiff.train.ray_train import checkpoint_tmpdir, remove_stale_checkpoint_tmp

    run.mkdir(parents=True, exist_ok=True)
    if mode == "ray":  # as a training rerun does: its driver, then its worker
        remove_partial_checkpoints(run)
        remove_stale_checkpoint_tmp()
    found = Checkpoint.latest(run, quiet=True)
    step = found.step if found else 0
    n = mb * 2**20 // 12  # three fields of float32
    fs = pyarrow.fs.LocalFileSystem()
    with open(log, "a") as f:
        def mark(what: str) -> None:
            f.write(f"{what} {step} {time.time():.3f}\n")
            f.flush()  # to the page cache: a killed process's writes survive it

        mark("resume")
        while True:
            step += 1
            state = _state(step, n)
            mark("write")
            if mode == "ray":
                with checkpoint_tmpdir() as d:  # the training worker's own temporary folder
                    write_checkpoint(d, **state, step=step, meta={"drill": mode})
                    # Ray names the folder by time; the step is added so the drill knows it.
                    now = time.time()
                    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
                    micro = f"{now % 1:.6f}"[1:]  # ".123456", as Ray's names end
                    dest = str(run / f"checkpoint_{stamp}{micro}.s{step}")
                    mark("copy")
                    fs.create_dir(dest)
                    _pyarrow_fs_copy_files(d, dest, source_filesystem=fs,
                                           destination_filesystem=fs)
            else:
                dest = run / f"checkpoint_{step:09d}"
                dest.mkdir(parents=True, exist_ok=True)
                write_checkpoint(dest, **state, step=step, meta={"drill": mode})
            mark("done")  # the write returned: this step is complete on disk
            mine = [(s, d) for s, d in _steps_of(run) if s <= step]
            for _, d in mine[:-KEEP]:
                if mode == "ray":
                    delete_fs_path(fs, str(d))
                else:
                    shutil.rmtree(d, ignore_errors=True)
            mark("pruned")


# ------------------------------------------------------------------ the checks


def _events(log: Path) -> list[tuple[str, int, float]]:
    out = []
    if log.exists():
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                out.append((parts[0], int(parts[1]), float(parts[2])))
    return out


def check_run(run: Path, log: Path, mb: int) -> tuple[list[str], dict[str, Any]]:
    """Problems (empty: all fine) and what is on disk after a kill (module docstring)."""
    import torch

    from mtdiff.artifacts import Checkpoint, CheckpointError, load_checkpoint

    n = mb * 2**20 // 12
    ev = _events(log)
    # Complete for sure: what a writer said it finished, or resumed from (the drill checked
    # that checkpoint at the previous kill; its writer may have died before saying "done").
    done = max((s for w, s, _ in ev if w in ("done", "resume")), default=0)
    problems, readable, partial = [], [], 0
    for f in sorted(run.rglob("checkpoint.pt")):
        try:
            state = load_checkpoint(f.parent)
        except CheckpointError:
            partial += 1
            continue
        except Exception as e:  # noqa: BLE001 - any other error is a finding
            problems.append(f"{f}: the loader raised {type(e).__name__} instead of refusing it")
            continue
        step = int(state["step"])
        want = _state(step, n)
        if not (torch.equal(state["model"]["w"], want["model"]["w"])
                and torch.equal(state["ema"]["w"], want["ema"]["w"])
                and torch.equal(state["optimizer"]["state"]["w"],
                                want["optimizer"]["state"]["w"])):
            problems.append(f"{f}: loads, but its tensors are not step {step}'s (partial)")
        readable.append(step)
    found = Checkpoint.latest(run, quiet=True)
    got = found.step if found else 0
    if found is not None:
        if found.file not in set(run.rglob("checkpoint.pt")) or \
                not found.path.name.startswith("checkpoint_"):
            problems.append(f"Checkpoint.latest named {found.path}, not a checkpoint folder")
    if got < done:
        problems.append(f"latest step {got} < {done}, the last one written completely")
    if got > done + 1:
        problems.append(f"latest step {got} > {done + 1}, more than was being written")
    if readable and got != max(readable):
        problems.append(f"latest step {got} != {max(readable)}, the highest readable")
    temps = [p for p in run.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    if len(temps) > 1:  # a write removes the killed ones' in its folder before it starts
        problems.append(f"temporary files pile up: {[str(t) for t in temps[:3]]}")
    if partial > 1:  # a starting writer removes cut-short copies, as a training rerun does
        problems.append(f"{partial} cut-short copies pile up")
    phase = ev[-1][0] if ev else "start"
    return problems, {"done": done, "latest": got, "partial": partial, "temps": len(temps),
                      "phase": f"{phase} {ev[-1][1] if ev else 0}",
                      "readable": sorted(readable)}


def _wait_for(log: Path, what: str, count: int, proc: subprocess.Popen,
              timeout: float = 300) -> bool:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if sum(1 for w, _, _ in _events(log) if w == what) >= count:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def write_kills(work: Path, kills: int, seed: int, mb: int) -> int:
    """Part 1 (module docstring); returns how many kills failed a check."""
    import numpy as np

    rng = np.random.default_rng(seed)
    tmp = work / "tmp"  # the ray mode's temporary folders: left ones are counted
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    cycle = {"ray": 1.0, "direct": 1.0}  # seconds per write, measured as the drill goes
    failed = 0
    for i in range(kills):
        mode = ("ray", "direct")[i % 2]
        run, log = work / mode / "run", work / mode / "log.txt"
        run.parent.mkdir(parents=True, exist_ok=True)
        n_resume = sum(1 for w, _, _ in _events(log) if w == "resume")
        expect = check_run(run, log, mb)[1]["latest"] if run.exists() else 0
        proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(run), str(log),
                                 str(mb)], cwd=REPO, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_for(log, "resume", n_resume + 1, proc):
            proc.kill()
            print(f"kill {i:2d} [{mode:6s}]: the writer did not start: "
                  f"{proc.communicate()[1].decode()[-500:]}")
            failed += 1
            continue
        resumed = [s for w, s, _ in _events(log) if w == "resume"][-1]
        delay = float(rng.uniform(0.0, 3.0 * cycle[mode]))
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        problems, seen = check_run(run, log, mb)
        if resumed != expect:
            problems.append(f"the writer resumed from step {resumed}, not {expect}")
        writes = [(s, t) for w, s, t in _events(log) if w == "write"]
        dones = {s: t for w, s, t in _events(log) if w == "done"}
        spans = [dones[s] - t for s, t in writes if s in dones]
        if spans:
            cycle[mode] = float(np.median(spans[-10:]))
        failed += bool(problems)
        print(f"kill {i:2d} [{mode:6s}]: {delay:5.2f}s after start (resumed at {resumed}), "
              f"during '{seen['phase']}'; last done {seen['done']}, latest readable "
              f"{seen['latest']}, partial on disk {seen['partial']}, temp files "
              f"{seen['temps']}: {'OK' if not problems else '; '.join(problems)}",
              flush=True)
    left = list(tmp.iterdir())
    piled = len(left) > 1  # each writer removes the killed ones' before it starts
    print(f"writes: {kills - failed}/{kills} kills OK; temporary folders left in $TMPDIR: "
          f"{len(left)}{' (they pile up: FAILED)' if piled else ''}")
    return failed + piled


def main() -> int:
    """Both parts; a line per kill."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        return 0
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=40, help="kills of the checkpoint writer")
    p.add_argument("--train-kills", type=int, default=3, help="kills of a real training")
    p.add_argument("--mb", type=int, default=16, help="size of the writer's checkpoints")
    p.add_argument("--work", default="/tmp/mtdiff-checkpoint-kills")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-reference", action="store_true",
                   help="use the reference training a previous call left in --work")
    args = p.parse_args()
    work = Path(args.work).resolve()
    for part in ("ray", "direct", "tmp"):  # the writes start afresh
        shutil.rmtree(work / part, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    failed = write_kills(work, args.kills, args.seed, args.mb) if args.kills else 0
    if args.train_kills:
        failed += train_kills(work, args.train_kills, args.seed, args.reuse_reference)
    print("all OK" if not failed else f"{failed} kill(s) failed a check")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
