"""Full disk: `--out` on a small filesystem that fills during collection or training.
Expected: one line naming the disk, exit 1, nothing half-written; once space is freed the
same command resumes and finishes with what an uninterrupted run gives.

    sudo python drills/full_disk.py --runs 3 --work /tmp/full-disk [--seed 0] \
        [--parts collect,train] [--reuse-reference]

Needs root (it mounts a tmpfs per attempt under --work and unmounts it afterwards).

1. A reference on the ordinary disk: a smoke Maze2D collection (`pipelines/collect.py`)
   and a smoke training on it (`pipelines/train.py`, Ray Train, MLflow); what they write
   is measured (in the tmpfs' 4 KiB pages).
2. Per run and part, a tmpfs sized to fill part way (a seeded fraction: 30-70% of the
   collection's pages; 1.3-2.7 of the training's checkpoints) holds `--out`:
   - the command must exit 1 with its last stderr line ``error: disk full: ...`` naming
     a path on that filesystem and "--out", and no traceback of its own;
   - nothing half-written: no temporary file; collection: no manifest, every shard a
     task index lists is there with its checksum; training: every ``checkpoint.pt`` loads
     and Ray's checkpoint list parses;
   - the tmpfs is then enlarged (``mount -o remount,size=...``) and the same command run
     again: exit 0, and the collection's row counts and shard checksums equal the
     reference's (collection is deterministic); the training says it resumes from the
     highest readable step left on disk and ends at the reference's final step.

Prints one line per attempt and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE = 4096
TRAIN = ["--set", "train.steps=30", "--set", "train.checkpoint_every=10"]


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "RAY_ADDRESS": "local"}


def collect_cmd(out: Path) -> list[str]:
    return [sys.executable, str(REPO / "pipelines/collect.py"), "--suite", "maze2d",
            "--preset", "smoke", "--out", str(out), "--no-progress"]


def train_cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "pipelines/train.py"), "--data", str(data), "--out",
            str(out), "--preset", "smoke", *TRAIN]


def pages(root: Path) -> int:
    """Bytes `root`'s files take on a tmpfs (whole pages)."""
    return sum(-(-p.stat().st_size // PAGE) * PAGE for p in root.rglob("*") if p.is_file())


def mount(at: Path, size: int) -> None:
    at.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(at)],
                   check=True)


def remount(at: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(at)], check=True)


def unmount(at: Path) -> None:
    if os.path.ismount(at):
        r = subprocess.run(["umount", str(at)], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(at)], check=False)


RAY_START_TIMEOUT = "The current node timed out during startup"


def run(cmd: list[str], cwd: Path, db: Path) -> subprocess.CompletedProcess:
    """Run a command; once more when its local Ray did not start in time (an overloaded
    machine: not what the drill is about), saying so."""
    for attempt in range(2):
        r = subprocess.run(cmd, cwd=cwd, env=_env(db), capture_output=True, text=True,
                           timeout=3600)
        if RAY_START_TIMEOUT not in r.stderr or attempt:
            return r
        print(f"    (Ray did not start in time, machine overloaded: running {Path(cmd[1]).name}"
              " again)", flush=True)
    return r


def one_line_error(r: subprocess.CompletedProcess, mnt: Path) -> tuple[str, list[str]]:
    """The last stderr line, and what is wrong with the failure (module docstring)."""
    lines = r.stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    problems = []
    if r.returncode != 1:
        problems.append(f"exit {r.returncode}, not 1")
    if not last.startswith("error: disk full") or str(mnt) not in last or "--out" not in last:
        problems.append(f"last stderr line is not the disk-full line: {last[:200]!r}")
    if [x for x in lines if x.startswith("Traceback")]:  # the driver's own (not a worker's)
        problems.append("a traceback on stderr")
    if sum(x.startswith("error: ") for x in lines) != 1:
        problems.append("not exactly one error line")
    return last, problems


# ------------------------------------------------------------------ collection


def dataset_fingerprint(root: Path) -> dict[str, Any]:
    m = json.loads((root / "manifest.json").read_text())
    return {t: [v["transitions"], [s["sha256"] for s in v["shards"]]]  # as JSON keeps it
            for t, v in sorted(m["tasks"].items())}


def half_written_dataset(root: Path) -> tuple[list[str], int]:
    """Problems with what a failed collection left, and the count of shards no index
    lists (a crash between a shard's rename and its index's: deleted on the rerun)."""
    from mtdiff.data.writer import file_sha256

    problems, orphans = [], 0
    temps = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    if temps:
        problems.append(f"temporary files left: {[str(p) for p in temps[:3]]}")
    if (root / "manifest.json").exists():
        problems.append("a manifest was written")
    for idx in sorted(root.glob("data/*/_index.json")):
        try:
            index = json.loads(idx.read_text())
        except ValueError:
            problems.append(f"{idx} is not JSON (half-written)")
            continue
        listed = set()
        for s in index["shards"]:
            f = idx.parent / s["file"]
            listed.add(s["file"])
            if not f.exists() or f.stat().st_size != s["bytes"] or file_sha256(f) != s["sha256"]:
                problems.append(f"{f}: listed but missing or not what was listed")
        orphans += sum(1 for p in idx.parent.glob("part-*.parquet") if p.name not in listed)
    return problems, orphans


def collect_attempt(work: Path, ref: dict[str, Any], frac: float, i: int) -> list[str]:
    d = work / f"collect-{i}"
    shutil.rmtree(d, ignore_errors=True)
    mnt = d / "mnt"
    size = max(2, int(ref["collect_pages"] * frac) // PAGE) * PAGE
    mount(mnt, size)
    try:
        out = mnt / "data"
        t0 = time.time()
        r = run(collect_cmd(out), d, d / "mlflow.db")
        secs = time.time() - t0
        last, problems = one_line_error(r, mnt)
        left, orphans = half_written_dataset(out)
        problems += left
        rows = sum(json.loads(p.read_text())["rows"] for p in out.glob("data/*/_index.json"))
        remount(mnt, 4 * ref["collect_pages"] + 64 * PAGE)
        r2 = run(collect_cmd(out), d, d / "mlflow.db")
        got = ""
        if r2.returncode != 0:
            problems.append(f"rerun exit {r2.returncode}: {r2.stderr.strip()[-300:]}")
        else:
            from mtdiff.data.reader import validate_dataset

            fp = dataset_fingerprint(out)
            got = " (" + ", ".join(f"{t}: {n} rows, shards {[h[:8] for h in hs]}"
                                   for t, (n, hs) in fp.items()) + ")"
            if fp != ref["collect"]:
                problems.append("rows or shard checksums differ from the reference")
            problems += validate_dataset(out)
        print(f"collect {i}: tmpfs {size // 1024} KiB ({frac:.0%} of the "
              f"{ref['collect_pages'] // 1024} KiB a collection writes): exit "
              f"{r.returncode} after {secs:.0f}s with {rows} rows committed, {orphans} "
              f"uncommitted shard(s); rerun exit {r2.returncode}{got}: "
              f"{'OK' if not problems else '; '.join(problems)}\n    {last}", flush=True)
        return problems
    finally:
        unmount(mnt)


# ------------------------------------------------------------------ training


def half_written_training(out: Path) -> tuple[list[str], list[int]]:
    from mtdiff.artifacts import CheckpointError, load_checkpoint
    from mtdiff.layout import RAY_SNAPSHOT

    problems, steps = [], []
    for f in sorted(out.rglob("checkpoint.pt")):
        try:
            steps.append(int(load_checkpoint(f.parent)["step"]))
        except CheckpointError as e:
            problems.append(f"partial checkpoint left: {e}"[:300])
    for snap in out.rglob(RAY_SNAPSHOT):
        try:
            json.loads(snap.read_text())
        except ValueError:
            problems.append(f"{snap} is damaged")
    temps = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    if temps:
        problems.append(f"temporary files left: {[str(p) for p in temps[:3]]}")
    return problems, sorted(steps)


def train_attempt(work: Path, ref: dict[str, Any], frac: float, i: int) -> list[str]:
    from mtdiff.artifacts import load_checkpoint

    d = work / f"train-{i}"
    shutil.rmtree(d, ignore_errors=True)
    mnt = d / "mnt"
    size = int(ref["ckpt_pages"] * frac) // PAGE * PAGE + 8 * PAGE  # + lock, marker, list
    mount(mnt, size)
    try:
        out = mnt / "train"
        data = work / "ref" / "data"
        t0 = time.time()
        r = run(train_cmd(data, out), d, d / "mlflow.db")
        secs = time.time() - t0
        last, problems = one_line_error(r, mnt)
        left, steps = half_written_training(out)
        problems += left
        expect = max(steps, default=0)
        remount(mnt, 8 * ref["ckpt_pages"] + 64 * PAGE)
        r2 = run(train_cmd(data, out), d, d / "mlflow.db")
        (d / "rerun.txt").write_text(r2.stdout + r2.stderr)
        m = re.search(r"\[train\] resuming \S+ from step (\d+)", r2.stdout)
        resumed = int(m.group(1)) if m else 0
        final = None
        if r2.returncode != 0:
            problems.append(f"rerun exit {r2.returncode}: {r2.stderr.strip()[-300:]}")
        else:
            line = [x for x in r2.stdout.splitlines() if x.startswith("checkpoint: ")][-1]
            final = int(load_checkpoint(line.split("checkpoint: ", 1)[1])["step"])
            if final != ref["train_step"]:
                problems.append(f"final step {final} != reference {ref['train_step']}")
        if resumed != expect:
            problems.append(f"resumed from {resumed}, the highest readable step is {expect}")
        print(f"train {i}: tmpfs {size // 1024} KiB ({frac:.1f} checkpoints of "
              f"{ref['ckpt_pages'] // 1024} KiB): exit {r.returncode} after {secs:.0f}s, "
              f"checkpoints left {steps}; rerun exit {r2.returncode}, resumed from {resumed}, "
              f"final step {final}: {'OK' if not problems else '; '.join(problems)}"
              f"\n    {last}", flush=True)
        return problems
    finally:
        unmount(mnt)


# ------------------------------------------------------------------ main


def reference(work: Path, reuse: bool, parts: set[str]) -> dict[str, Any] | None:
    from mtdiff.artifacts import load_checkpoint

    d = work / "ref"
    f = d / "reference.json"
    if reuse and f.exists():
        return json.loads(f.read_text())
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    r = run(collect_cmd(d / "data"), d, d / "mlflow.db")
    if r.returncode != 0:
        print(f"reference collection failed (exit {r.returncode}): {r.stderr[-1500:]}")
        return None
    ref: dict[str, Any] = {"collect": dataset_fingerprint(d / "data"),
                           "collect_pages": pages(d / "data")}
    if "train" in parts:
        r = run(train_cmd(d / "data", d / "train"), d, d / "mlflow.db")
        if r.returncode != 0:
            print(f"reference training failed (exit {r.returncode}): {r.stderr[-1500:]}")
            return None
        line = [x for x in r.stdout.splitlines() if x.startswith("checkpoint: ")][-1]
        ckpt = Path(line.split("checkpoint: ", 1)[1])
        ref["train_step"] = int(load_checkpoint(ckpt)["step"])
        ref["ckpt_pages"] = pages(ckpt)
    f.write_text(json.dumps(ref))
    return ref


def main() -> int:
    """Reference, then per run a collection and a training on a filling disk."""
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--work", default="/tmp/mtdiff-full-disk")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", default="collect,train")
    p.add_argument("--reuse-reference", action="store_true",
                   help="use the reference a previous call left in --work")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("full_disk.py mounts a tmpfs: run it as root")
        return 2
    parts = set(args.parts.split(","))
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ref = reference(work, args.reuse_reference, parts)
    if ref is None:
        return 1
    print(f"reference: a collection writes {ref['collect_pages'] // 1024} KiB"
          + (f", a checkpoint is {ref['ckpt_pages'] // 1024} KiB, final step "
             f"{ref['train_step']}" if "train_step" in ref else ""), flush=True)
    rng = np.random.default_rng(args.seed)
    failed = attempts = 0
    for i in range(args.runs):
        c_frac, t_frac = float(rng.uniform(0.3, 0.7)), float(rng.uniform(1.3, 2.7))
        if "collect" in parts:
            attempts += 1
            failed += bool(collect_attempt(work, ref, c_frac, i))
        if "train" in parts:
            attempts += 1
            failed += bool(train_attempt(work, ref, t_frac, i))
    print(f"{attempts - failed}/{attempts} full-disk attempts OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
