"""Kill drills: kill -9 a smoke `full_repro` at random moments, rerun it, compare.

    python drills/kill_drills.py --kills 5 --work /tmp/drills [--seed 0] [--reuse-reference]

1. A reference: one uninterrupted smoke reproduction (its own output folder and MLflow
   store).
2. N drills, each in a fresh folder: start the same command, kill its whole process
   group (driver, local Ray, workers) with SIGKILL at a random moment within the first
   85% of the reference's duration (one moment per equal slice, so they differ and
   spread over the run), then run the same command again to the end. A run that
   finishes before its kill (runs vary in speed) is no drill: it is tried again in a
   fresh folder at 60% of that moment (twice at most).
3. Each drill's final outputs must equal the reference's: dataset row counts and shard
   checksums (collection is deterministic), the step of every finished checkpoint, the
   keys of the report's tables and of every job record; the rerun exits 0; no MLflow run
   is left RUNNING; no job has more than one FINISHED MLflow run (a job finished before
   the kill is not run again); no dataset holds a duplicated (episode, step).

Prints one line per drill (moment, what was running when killed, rerun seconds, result)
and exits non-zero if any drill failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _cmd(out: Path) -> list[str]:
    return [sys.executable, str(REPO / "pipelines/full_repro.py"), "--preset", "smoke",
            "--out", str(out)]


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "RAY_ADDRESS": "local"}


def _run(out: Path, db: Path, log: Path, kill_after: float | None = None
         ) -> tuple[int | None, float, str]:
    """Run the command; with `kill_after`, SIGKILL its process group then. Returns (exit
    code or None when killed, seconds, the last job lines of its output)."""
    t0 = time.time()
    with open(log, "ab") as f:
        proc = subprocess.Popen(_cmd(out), cwd=out.parent, env=_env(db), stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=kill_after if kill_after is not None else 3600)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(2)  # let the killed Ray processes go
            return None, time.time() - t0, _running_jobs(out)
    return proc.returncode, time.time() - t0, ""


def _running_jobs(out: Path) -> str:
    """Jobs started (a log exists) but not finished (no record) at the kill."""
    logs = {p.stem for p in (out / "logs").glob("*.log")} if (out / "logs").exists() else set()
    recs = {p.stem for p in (out / "jobs").glob("*.json")} if (out / "jobs").exists() else set()
    running = sorted(logs - recs)
    return ", ".join(n.replace("__", "/") for n in running[:4]) + (
        f" (+{len(running) - 4})" if len(running) > 4 else "") or "between jobs"


def fingerprint(out: Path) -> dict[str, Any]:
    """What must not differ from an uninterrupted run (module docstring)."""
    import pyarrow.parquet as pq

    fp: dict[str, Any] = {"datasets": {}, "checkpoints": {}, "records": {}, "tables": {}}
    for man in sorted(out.glob("data/*/manifest.json")):
        m = json.loads(man.read_text())
        shards = {}
        for task, t in m["tasks"].items():
            shards[task] = (t["transitions"], sorted(
                (s["file"], s.get("sha256", s.get("checksum"))) for s in t.get("shards", [])))
            seen = set()
            for f in sorted((man.parent / "data" / task).glob("part-*.parquet")):
                tab = pq.read_table(f, columns=["episode", "step"])
                pairs = list(zip(tab["episode"].to_pylist(), tab["step"].to_pylist(),
                                 strict=True))
                if len(set(pairs) | seen) != len(seen) + len(pairs):
                    raise AssertionError(f"duplicated (episode, step) in {f}")
                seen |= set(pairs)
        fp["datasets"][man.parent.name] = shards
    for rec in sorted(out.glob("jobs/*.json")):
        r = json.loads(rec.read_text())
        fp["records"][r["name"]] = sorted(r["result"])
        if r["kind"] == "train":
            fp["checkpoints"][r["name"]] = r["result"]["steps"]
    results = out / "report" / "results.json"
    if results.exists():
        fp["tables"] = _keys(json.loads(results.read_text()))
    for c in sorted(out.glob("offline/*.json")):
        fp["tables"][c.name] = sorted({(r.get("task"), r.get("method"), r.get("seed"))
                                       for r in json.loads(c.read_text())}, key=str)
    return fp


def _keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _keys(v) for k, v in obj.items() if not isinstance(v, int | float)}
    if isinstance(obj, list):
        return [_keys(v) for v in obj]
    return obj if isinstance(obj, str) else None


def running_runs(db: Path) -> list[str]:
    """MLflow runs still RUNNING in the store."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("mtdiff")
    if exp is None:
        return []
    return [r.info.run_name for r in client.search_runs(
        [exp.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)]


def finished_twice(db: Path) -> list[str]:
    """Jobs with more than one FINISHED MLflow run in the store (done twice; the report,
    which runs every time, aside)."""
    import collections

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("mtdiff")
    if exp is None:
        return []
    n = collections.Counter(r.data.tags.get("job") for r in client.search_runs(
        [exp.experiment_id], filter_string="attributes.status = 'FINISHED'", max_results=5000)
        if r.data.tags.get("job") not in (None, "report"))
    return sorted(j for j, c in n.items() if c > 1)


def main() -> int:
    """Reference run, N drills, a line per drill."""
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--work", default="/tmp/mtdiff-drills")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-reference", action="store_true",
                   help="use the reference run a previous call left in --work")
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ref = work / "ref" / "run"
    ref.parent.mkdir(exist_ok=True)
    done = work / "ref" / "seconds.txt"
    if args.reuse_reference and done.exists():
        ref_secs = float(done.read_text())
    else:
        rc, ref_secs, _ = _run(ref, work / "ref" / "mlflow.db", work / "ref" / "log.txt")
        if rc != 0:
            print(f"reference run failed (exit {rc}); see {work / 'ref' / 'log.txt'}")
            return 1
        done.write_text(f"{ref_secs:.1f}")
    want = fingerprint(ref)
    print(f"reference: {ref_secs:.0f}s, {len(want['records'])} job records, "
          f"{len(want['datasets'])} datasets")
    rng = np.random.default_rng(args.seed)
    # distinct moments spread over the run: one per equal slice of (5 s, 95% of it)
    edges = np.linspace(5.0, 0.85 * ref_secs, args.kills + 1)
    moments = [float(rng.uniform(a, b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    failed = 0
    for i, t in enumerate(moments):
        for attempt in range(3):
            d = work / f"drill-{i}" / f"try-{attempt}"
            d.mkdir(parents=True, exist_ok=True)
            out, db, log = d / "run", d / "mlflow.db", d / "log.txt"
            rc, _, running = _run(out, db, log, kill_after=t)
            if rc is None:
                break
            print(f"drill {i}: the run finished before the kill at {t:.0f}s; again at "
                  f"{0.6 * t:.0f}s")
            t *= 0.6
        if rc is not None:
            print(f"drill {i}: no run lasted until its kill; not a drill")
            failed += 1
            continue
        rc, secs, _ = _run(out, db, log)
        problems = []
        if rc != 0:
            problems.append(f"rerun exit {rc}")
        else:
            got = fingerprint(out)
            for part in want:
                if got[part] != want[part]:
                    problems.append(f"{part} differ")
        stale = running_runs(db)
        if stale:
            problems.append(f"{len(stale)} MLflow run(s) RUNNING: {stale[:3]}")
        twice = finished_twice(db)
        if twice:
            problems.append(f"{len(twice)} job(s) finished twice: {twice[:3]}")
        failed += bool(problems)
        print(f"drill {i}: killed at {t:5.0f}s while running [{running}]; rerun "
              f"{secs:.0f}s: {'OK' if not problems else '; '.join(problems)}")
    print(f"{args.kills - failed}/{args.kills} drills OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
