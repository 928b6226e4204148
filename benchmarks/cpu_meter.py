"""CPU seconds a command and every process it starts use, beside its wall time.

On a machine shared with other work, a run's wall time says as much about the others as
about the run; its CPU seconds (user + system of it and its descendants: Ray's raylet,
workers, trainers) and the share of the cores they amount to say what the run itself
cost. Samples /proc every `--every` seconds (a process that lives less than that is
missed; one that ends loses at most its last interval).

    python benchmarks/cpu_meter.py --json run.json -- python pipelines/full_repro.py ...

Writes {"wall_s", "cpu_s", "cores_used" (cpu_s / wall_s), "load" (1-min load averages
sampled), "exit_code"} and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system seconds) of a process, or None when gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def descendants_cpu(root: int, seen: dict[int, float]) -> None:
    """Update `seen` (pid -> CPU seconds) with `root` and all its descendants now."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            table[int(entry)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            seen[pid] = max(seen.get(pid, 0.0), table[pid][1])
        todo += children.get(pid, [])


def main() -> int:
    """Run the command, sample, report."""
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the command")
    args = p.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        p.error("give the command after --")
    seen: dict[int, float] = {}
    loads = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    while proc.poll() is None:
        descendants_cpu(proc.pid, seen)
        loads.append(os.getloadavg()[0])
        time.sleep(args.every)
    wall = time.perf_counter() - t0
    cpu = sum(seen.values())
    out = {"command": cmd, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "cores_used": round(cpu / wall, 3), "exit_code": proc.returncode,
           "load_mean": round(sum(loads) / max(len(loads), 1), 1),
           "load_max": round(max(loads, default=0.0), 1)}
    print(json.dumps(out), file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
