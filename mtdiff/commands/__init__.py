"""The `mtdiff` command: one entry point for every pipeline and sweep.

    mtdiff repro [--preset P] [--plan] ...     the whole reproduction (a graph of jobs)
    mtdiff collect | train | evaluate | synthesize | distill | dataset | report ...
    mtdiff sweep <name> ...                    budget-curve, guidance-temperature, ...
    mtdiff <command> --help                    its arguments and the config fields it reads
    mtdiff <command> --print-config ...        the resolved config, nothing run

`pipelines/*.py` and `sweeps/*.py` are the same commands as scripts. Exit codes as in
`mtdiff.cli`: 0 done, 1 a run failed (rerun to resume; a full disk is one line naming
it), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from mtdiff import supervise
from mtdiff.cli import RUN_FAILED, disk_full_error, disk_full_message

INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

COMMANDS = {  # name -> (module, one line)
    "repro": ("repro", "reproduce the paper end to end: collect, train, evaluate, report"),
    "collect": ("collect", "collect a suite's dataset (scripted experts or SAC)"),
    "train": ("train", "train a planner, synthesizer or baseline on a dataset"),
    "evaluate": ("evaluate", "evaluate a checkpoint in its environments"),
    "synthesize": ("synthesize", "synthesize transitions with MTDiff-S"),
    "distill": ("distill", "distill a planner into a few-step student"),
    "dataset": ("dataset", "inspect, validate, convert or subset datasets"),
    "report": ("report", "build the report of a reproduction's output folder"),
}
SWEEPS = {
    "budget-curve": ("sweep_budget_curve", "return vs training budget, MTDiff-P against MTBC"),
    "guidance-temperature": ("sweep_guidance_temperature", "guidance scale x temperature"),
    "horizon-prompt": ("sweep_horizon_prompt", "planning horizon x prompt length"),
    "sampler-steps": ("sweep_sampler_steps", "samplers and their denoising steps"),
    "task-count": ("sweep_task_count", "return vs number of training tasks (Fig. 7)"),
}


def _usage() -> str:
    lines = ["usage: mtdiff <command> [arguments]  (mtdiff <command> --help)", "", "commands:"]
    lines += [f"  {name:<22}{text}" for name, (_, text) in COMMANDS.items()]
    lines += ["  sweep <name>          a Tune sweep:"]
    lines += [f"    {name:<22}{text}" for name, (_, text) in SWEEPS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch `mtdiff <command> ...` to `mtdiff.commands.<module>.main`."""
    if argv is None and supervise.wanted():
        return supervise.run()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name == "sweep":
        if not rest or rest[0] in ("-h", "--help"):
            print(_usage())
            return 0 if rest else 2
        if rest[0] not in SWEEPS:
            print(f"error: no sweep {rest[0]!r}; choose one of {', '.join(SWEEPS)}",
                  file=sys.stderr)
            return 2
        module, prog, rest = SWEEPS[rest[0]][0], f"mtdiff sweep {rest[0]}", rest[1:]
    elif name in COMMANDS:
        module, prog = COMMANDS[name][0], f"mtdiff {name}"
    else:
        print(f"error: no command {name!r}; run `mtdiff --help` for the list", file=sys.stderr)
        return 2
    sys.argv[0] = prog  # argparse names the command in its usage and errors
    return guarded(importlib.import_module(f"mtdiff.commands.{module}").main, rest)


def guarded(command: Callable[[list[str] | None], int | None],
            argv: list[str] | None = None) -> int:
    """Run a command's main; Ctrl-C ends it with one line and exit 130, a full disk (also
    when a Ray worker or Ray Train hit it) with one line naming the disk and exit 1, not a
    traceback (every job writes atomically, so rerunning the same command resumes).

    Run from the command line (`argv` None) against a running cluster, the command runs
    under `mtdiff.supervise`, which turns Ray's native abort of a driver (the head
    restarted) into one line too."""
    if argv is None and supervise.wanted():
        return supervise.run()
    try:
        return command(argv) or 0
    except KeyboardInterrupt:
        print("\ninterrupted; rerun the same command to resume", file=sys.stderr)
        return INTERRUPTED
    except Exception as e:
        full = disk_full_error(e)
        if full is None:
            raise
        _stop_ray()  # its workers' buffered log lines would follow the error line
        print(f"error: {disk_full_message(full)}", file=sys.stderr)
        return RUN_FAILED


def _stop_ray() -> None:
    """Shut down the Ray instance this process uses, if any (best effort)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return
    try:
        if ray.is_initialized():
            ray.shutdown()
    except Exception:  # noqa: BLE001 - failing anyway; the error line matters
        pass
    sys.stderr.flush()
