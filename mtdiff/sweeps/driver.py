"""The sweep's driver: the grid, what is left to run, Tune, the parent run, the outcome."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtdiff import tracking
from mtdiff.cli import RUN_FAILED, fail
from mtdiff.config import Config, ConfigError, apply_overrides, config_hash, to_dict
from mtdiff.runtime import cluster_cpus, init_ray
from mtdiff.sweeps.records import (
    ATTEMPTS,
    TRIALS,
    read_records,
    trial_key,
    write_record,
)
from mtdiff.sweeps.trials import expand_params
from mtdiff.tracking import sweeps as sweep_runs
from mtdiff.tracking.server import check_reachable

# Inputs of the trial functions that are paths: made absolute before they are hashed,
# stored or handed to a trial (a Tune trial runs in its own working directory).
PATH_KEYS = ("checkpoint", "data", "train_out", "out")
# What Tune's restore reads: a sweep folder holding these was not written by this code.
TUNE_STATE = ("tuner.pkl", "trainable.pkl", "experiment_state-*.json")


class SweepError(ValueError):
    """A sweep cannot start: bad space, or a sweep folder this code does not resume."""


class SweepFailed(RuntimeError):
    """Every trial of the sweep failed; the message is one line with the first error."""


def _absolute(trial_config: dict[str, Any]) -> dict[str, Any]:
    """`trial_config` with its paths absolute (map files too; shipped map names stay)."""
    out = dict(trial_config)
    for k in PATH_KEYS:
        v = out.get(k)
        if isinstance(v, str | Path):
            out[k] = str(Path(v).expanduser().resolve())
        elif isinstance(v, dict):
            out[k] = {n: str(Path(p).expanduser().resolve()) for n, p in v.items()}
    if out.get("maps"):
        out["maps"] = [str(Path(m).resolve()) if Path(m).is_file() else m for m in out["maps"]]
    return out


def _grid(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every point of a grid space (``tune.grid_search`` values, or constants)."""
    axes = []
    for k, v in space.items():
        if isinstance(v, dict) and set(v) == {"grid_search"}:
            axes.append([(k, x) for x in v["grid_search"]])
        elif hasattr(v, "sample"):  # a Tune Domain (uniform, choice, ...)
            raise SweepError(f"space[{k!r}] is a sampled domain; sweeps here are grids "
                             "(tune.grid_search), so that every trial can be named and resumed")
        else:
            axes.append([(k, v)])
    return [dict(point) for point in itertools.product(*axes)]


def _check_folder(folder: Path) -> None:
    """Refuse a sweep folder holding Tune state where `Tuner.restore` would read it:
    pickles that this code did not write (older versions resumed through them; a planted
    ``tuner.pkl`` would run code when unpickled)."""
    found = [p.name for pattern in TUNE_STATE for p in folder.glob(pattern)]
    if found:
        raise SweepError(f"{folder} holds Tune state ({', '.join(sorted(found))}) that this "
                         "version never restores (unpickling it could run code); delete the "
                         "folder, or pass another --storage/--out or --name")


def _one_line(err: BaseException) -> str:
    """The last non-empty line of an error (a Ray error's text ends with the cause)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def run_sweep(name: str, cfg: Config, space: dict[str, Any], trial: Callable[[dict], None], *,
              trial_config: dict[str, Any], storage: str | Path,
              cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
              trainer_cpus: float = 0.0,
              num_samples: int = 1, scheduler: str | None = None,
              max_concurrent: int | None = None) -> dict[str, Any]:
    """Run (or resume) a sweep; returns {"parent_run_id", "results": [(params, success)],
    "best", "trials": [(params, metrics)], "failed": [(params, error line)], "folder"}.

    space: dotted config field -> ``tune.grid_search([...])`` (or a constant).
    trainer_cpus: CPUs a trial's own `TorchTrainer` reserves outside the trial (Train V2:
    the trainer's workers are not part of the trial's resources); counted when deciding
    how many trials run at once. Raises `SweepError` (bad input, before any work) or
    `SweepFailed` (every trial failed).
    """
    from ray import tune

    if scheduler not in (None, "asha"):
        raise SweepError(f"unknown scheduler {scheduler!r}; use 'asha' or none")
    folder = Path(storage).expanduser().resolve() / name
    _check_folder(folder)
    trial_config = _absolute(trial_config)
    identity = config_hash({"base": to_dict(cfg), "trial": trial_config,
                            "function": f"{trial.__module__}.{trial.__qualname__}"})
    points = [{"key": trial_key(identity, p, i), "params": p, "sample": i}
              for i in range(num_samples) for p in _grid(space)]
    for p in points[: len(points) // num_samples]:  # bad swept values: now, not in trials
        try:
            apply_overrides(cfg, [f"{k}={v}" for k, v in expand_params(p["params"]).items()])
        except ConfigError as e:
            raise SweepError(f"swept values {p['params']}: {e}") from None
    check_reachable(cfg.tracking.resolved_uri())
    records_dir = folder / TRIALS
    records_dir.mkdir(parents=True, exist_ok=True)
    done = read_records(records_dir)
    todo = [p for p in points if p["key"] not in done]
    if len(todo) < len(points):
        print(f"[sweep] {name}: {len(points) - len(todo)} of {len(points)} trials already "
              f"finished ({records_dir}); running {len(todo)}")
    init_ray()
    failed: list[tuple[dict[str, Any], str]] = []
    with sweep_runs.sweep_parent(cfg, name=name, storage=str(folder.parent),
                               space=space) as spec:
        if todo:
            failed = _fit(tune, trial, todo, {**trial_config, "base": to_dict(cfg),
                                              "mlflow": spec, "records": str(records_dir)},
                          folder, cpus_per_trial, gpus_per_trial, scheduler,
                          max_concurrent or max(1, int(cluster_cpus() // max(
                              cpus_per_trial + trainer_cpus, 1e-9))))
        done = read_records(records_dir)
        finished = [done[p["key"]] for p in points if p["key"] in done]
        rows = [(r["params"], r["metrics"].get("success")) for r in finished]
        best = max(rows, key=lambda r: r[1] if r[1] is not None else -1) if rows else None
        if best and best[1] is not None:
            tracking.log_metrics({"best_success": float(best[1])})
            tracking.set_tags({"best_params": str(best[0])})
        if not finished:
            first = failed[0][1] if failed else "no trial reported a result"
            raise SweepFailed(f"all {len(points)} trials of sweep {name!r} failed; the first: "
                              f"{first} (trial logs under {folder / ATTEMPTS})")
    return {"parent_run_id": spec["parent_id"], "results": rows, "best": best,
            "trials": [(r["params"], r["metrics"]) for r in finished], "failed": failed,
            "folder": str(folder)}


def _fit(tune: Any, trial: Callable[[dict], None], todo: list[dict[str, Any]],
         common: dict[str, Any], folder: Path, cpus: float, gpus: float,
         scheduler: str | None, concurrent: int) -> list[tuple[dict[str, Any], str]]:
    """One Tune run over the unfinished trials, in a new attempt folder (Tune's state is
    written there and never read back). Returns the failed trials with their error line;
    trials the scheduler stopped early get a record (status "stopped") here."""
    sched = (tune.schedulers.ASHAScheduler(grace_period=1, reduction_factor=2)
             if scheduler == "asha" else None)
    attempt = f"attempt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    tuner = tune.Tuner(
        tune.with_resources(trial, {"cpu": cpus, "gpu": gpus}),
        param_space={**common, "trial": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(metric="success", mode="max", scheduler=sched,
                                    max_concurrent_trials=concurrent),
        run_config=tune.RunConfig(name=attempt, storage_path=str(folder / ATTEMPTS)))
    failed = []
    done = None
    for r in tuner.fit():
        t = r.config["trial"]
        if r.error is not None:
            failed.append((t["params"], _one_line(r.error)))
            continue
        done = read_records(common["records"]) if done is None else done
        if t["key"] not in done and r.metrics:  # stopped early by the scheduler
            write_record(common["records"], t["key"], t["params"], t["sample"], r.metrics,
                         status="stopped")
            run_id = sweep_runs.find_child_run(common["mlflow"], t["key"])
            if run_id is not None:
                sweep_runs.terminate_run(common["mlflow"]["uri"], run_id, "KILLED",
                                         stopped_early="true")
    return failed


def exit_code(result: dict[str, Any]) -> int:
    """0 when every trial has a result; else one line on stderr and 1 (a failed run:
    rerunning the same command runs only the failed trials)."""
    if not result["failed"]:
        return 0
    print(f"error: {len(result['failed'])} trial(s) of the sweep failed (the first: "
          f"{result['failed'][0][1]}); rerun the same command to run only those",
          file=sys.stderr)
    return 1


def run_sweep_or_exit(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`run_sweep` for the scripts in `sweeps/`: bad input exits 2 with one line (before
    any work), a sweep whose every trial failed exits 1 with one line."""
    try:
        return run_sweep(*args, **kwargs)
    except SweepFailed as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(RUN_FAILED) from None
    except ValueError as e:  # SweepError, TrackingError, ConfigError, DatasetError
        fail(str(e))
