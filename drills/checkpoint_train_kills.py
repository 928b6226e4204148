"""Checkpoint kills, part 2 (`--train-kills`; `drills/checkpoint_kills.py` runs it and its
docstring says what is checked): a reference smoke training, then the same command killed
a moment after a random checkpoint began and rerun to the end."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRAIN_STEPS, TRAIN_EVERY = 30, 5
RAY_START_TIMEOUT = "The current node timed out during startup"
sys.path.insert(0, str(REPO / "drills"))

from kill_drills import running_runs  # noqa: E402


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "RAY_ADDRESS": "local"}


def _train_cmd(data: Path, out: Path) -> list[str]:
    # A bigger model than smoke's (a 1 MB checkpoint) so a checkpoint takes a while to write.
    return [sys.executable, str(REPO / "pipelines/train.py"), "--data", str(data), "--out",
            str(out), "--preset", "smoke", "--set", f"train.steps={TRAIN_STEPS}",
            "--set", f"train.checkpoint_every={TRAIN_EVERY}", "--set", "train.log_every=5",
            "--set", "model.d_model=256", "--set", "model.n_layer=3"]


def kill_all(proc: subprocess.Popen) -> None:
    """SIGKILL the run at once: its process group (the driver, the local Ray it started)
    and every process it started (Ray's workers, in groups of their own, would otherwise
    go on for a moment, finishing the checkpoint being written), as when a node dies."""
    import psutil

    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for k in kids:
        try:
            k.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait()
    time.sleep(2)


def _on_disk(out: Path) -> tuple[list[int], int, str]:
    """(readable steps, unreadable checkpoint files, Ray's checkpoint list state)."""
    from mtdiff.artifacts import CheckpointError, load_checkpoint
    from mtdiff.layout import RAY_SNAPSHOT

    steps, bad = [], 0
    for f in sorted(out.glob("*/checkpoint_*/checkpoint.pt")):
        try:
            steps.append(int(load_checkpoint(f.parent)["step"]))
        except CheckpointError:
            bad += 1
    snaps = list(out.glob(f"*/{RAY_SNAPSHOT}"))
    state = "none"
    if snaps:
        try:
            json.loads(snaps[0].read_text())
            state = "ok"
        except ValueError:
            state = "damaged"
    return sorted(steps), bad, state


def _final_step(stdout: str) -> tuple[int, dict[str, Any]]:
    from mtdiff.artifacts import load_checkpoint

    line = [x for x in stdout.splitlines() if x.startswith("checkpoint: ")][-1]
    state = load_checkpoint(line.split("checkpoint: ", 1)[1])
    return int(state["step"]), state["meta"]


def train_kills(work: Path, kills: int, seed: int, reuse: bool) -> int:
    """Part 2 (module docstring); returns how many kills failed a check."""
    import numpy as np

    from mtdiff.train.ray_train import CHECKPOINT_TMP

    data = work / "data"
    if not (data / "manifest.json").exists():
        r = subprocess.run([sys.executable, str(REPO / "pipelines/collect.py"), "--suite",
                            "maze2d", "--preset", "smoke", "--out", str(data), "--no-progress"],
                           cwd=work, env=_env(work / "collect.db"), capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(f"collection failed (exit {r.returncode}): {r.stderr[-1000:]}")
            return kills or 1
    ref = work / "train-ref"
    done = ref / "final.json"
    if not (reuse and done.exists()):
        shutil.rmtree(ref, ignore_errors=True)
        ref.mkdir(parents=True)
        t0 = time.time()
        for _ in range(2):  # once more when Ray did not start in time (overloaded machine)
            r = subprocess.run(_train_cmd(data, ref / "out"), cwd=ref,
                               env=_env(ref / "mlflow.db"), capture_output=True, text=True)
            if RAY_START_TIMEOUT not in r.stderr:
                break
        if r.returncode != 0:
            print(f"reference training failed (exit {r.returncode}): {r.stderr[-1500:]}")
            return kills or 1
        done.write_text(json.dumps({"step": _final_step(r.stdout)[0],
                                    "seconds": time.time() - t0}))
    want = json.loads(done.read_text())
    print(f"training reference: final step {want['step']} in {want['seconds']:.0f}s")
    rng = np.random.default_rng(seed + 1)
    failed = 0
    for i in range(kills):
        d = work / f"train-{i}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        out, db, log = d / "out", d / "mlflow.db", d / "log.txt"
        # The run's own $TMPDIR (short: Ray's sockets live under it too), where its worker
        # writes each checkpoint (`checkpoint_tmpdir`) before Ray copies it to `out`: the
        # j-th such folder appearing is the j-th checkpoint starting.
        tmp = Path(tempfile.mkdtemp(prefix="ckt", dir="/tmp"))
        env = {**_env(db), "TMPDIR": str(tmp)}
        nth = int(rng.integers(1, TRAIN_STEPS // TRAIN_EVERY))  # not the last
        delay = float(rng.uniform(0.0, 0.4))
        with open(log, "wb") as f:
            proc = subprocess.Popen(_train_cmd(data, out), cwd=d, env=env, stdout=f,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        # A checkpoint has begun when its temporary folder appears or, if the polling missed
        # that (a loaded machine), when its folder in storage does.
        seen: set[str] = set()
        stored: set[str] = set()
        t0 = time.time()
        while max(len(seen), len(stored)) < nth and proc.poll() is None \
                and time.time() - t0 < 900:
            seen |= {p.name for p in tmp.glob(f"{CHECKPOINT_TMP}*")}
            stored |= {p.name for p in out.glob("*/checkpoint_*") if p.is_dir()}
            time.sleep(0.005)
        if proc.poll() is not None or max(len(seen), len(stored)) < nth:
            why = ("Ray did not start in time (overloaded machine)"
                   if RAY_START_TIMEOUT in log.read_text(errors="replace") else
                   f"exit {proc.returncode}")
            kill_all(proc)
            print(f"train kill {i}: the run ended ({why}) before checkpoint {nth}: not a drill")
            failed += 1
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        time.sleep(delay)
        writing = [p for p in tmp.glob(f"{CHECKPOINT_TMP}*")]  # still written or copied
        kill_all(proc)
        steps, bad, snap = _on_disk(out)
        expect = max(steps, default=0)
        t1 = time.time()
        r = subprocess.run(_train_cmd(data, out), cwd=d, env=env, capture_output=True,
                           text=True)
        if RAY_START_TIMEOUT in r.stderr:  # an overloaded machine, not what is drilled
            print(f"train kill {i}: (Ray did not start in time for the rerun: again)")
            r = subprocess.run(_train_cmd(data, out), cwd=d, env=env, capture_output=True,
                               text=True)
        (d / "rerun.txt").write_text(r.stdout + r.stderr)
        problems = []
        finished = expect >= TRAIN_STEPS  # killed after its last checkpoint: nothing to redo
        if finished and "already finished" not in r.stdout:
            problems.append("the run had finished, the rerun did not say so")
        left = [p.name for p in tmp.glob(f"{CHECKPOINT_TMP}*")]
        if left:  # the rerun's worker removes the killed one's
            problems.append(f"the killed worker's checkpoint folder is still in $TMPDIR: {left}")
        shutil.rmtree(tmp, ignore_errors=True)
        m = re.search(r"\[train\] resuming \S+ from step (\d+)", r.stdout)
        resumed = int(m.group(1)) if m else 0
        if r.returncode != 0:
            problems.append(f"rerun exit {r.returncode}: {r.stderr.strip().splitlines()[-1:]}")
        else:
            final, meta = _final_step(r.stdout)
            if final != want["step"]:
                problems.append(f"final step {final} != reference {want['step']}")
            if expect and not finished and meta.get("resumed_from") != expect:
                problems.append(f"resumed_from {meta.get('resumed_from')} != {expect}")
        if resumed != (0 if finished else expect):
            problems.append(f"resumed from step {resumed}, the last complete one is {expect}")
        stale = running_runs(db)
        if stale:
            problems.append(f"MLflow runs left RUNNING: {stale}")
        if _on_disk(out)[1]:
            problems.append("a cut-short checkpoint is still there after the rerun")
        failed += bool(problems)
        print(f"train kill {i}: {delay:.2f}s after checkpoint {nth} ({nth * TRAIN_EVERY}) "
              f"began: {'still being written or copied' if writing else 'written'}; on disk: "
              f"readable steps {steps}, unreadable {bad}, Ray's list {snap}; rerun "
              f"{time.time() - t1:.0f}s resumed from {resumed} (expected {expect}): "
              f"{'OK' if not problems else '; '.join(problems)}", flush=True)
    print(f"training: {kills - failed}/{kills} kills OK")
    return failed
