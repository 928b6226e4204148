"""Calibration files: how fast one kind of node runs each piece of work the graph's jobs do.

A calibration is a JSON object (written by `benchmarks/calibrate.py`, or shipped in
``mtdiff/experiment/calibration/``):

    {"node": "cpu-2core", "device": "cpu", "about": "...",
     "rates": {"<name>": {"value": 3.1, "unit": "s", "source": "measured on ..."},
               "<name>": {"fixed_s": 0.004, "flops_per_s": 4.1e10, "source": "..."}, ...}}

Every rate says where its figure comes from (``source``: measured with calibrate.py on
which machine, or derived from which measurement and how). Two shapes of rate:

- a plain figure (``value`` with its ``unit``: seconds, or things per second);
- a linear cost of one call of a network (a training step, a denoising call, a SAC or
  TD3-BC update): ``fixed_s`` per call (launch and Python overhead, the optimiser's
  per-parameter work) plus its FLOPs at ``flops_per_s``. The FLOPs of a call come from the
  job's config (`mtdiff.experiment.workload`), so a wider model or a larger batch costs
  more without a new calibration. ``sizes`` may hold the line measured for one model size
  (``"d128-l3"``: d_model, layers), used for networks of that size: a small model's
  matmuls run at a lower rate than a large one's.

`default_calibration(has_gpu, machine)` picks the shipped file by the node kind: a cluster
with GPUs gets the H200's; a CPU cluster gets the CPU file measured on `machine` (its
``machine`` field, `this_machine()` as `calibrate.py` records it) where one ships, else
`cpu-2core.json`. `--plan` passes `machine` only when it prices this machine: a cluster file
or a remote Ray cluster describes nodes elsewhere. Two 2-core CPUs can differ by 1.4x in
a training step and 1.7x in env steps/s (docs/cost.md), so a file is matched to the machine
it was measured on, never to one that merely looks alike.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALIBRATION_DIR = Path(__file__).with_name("calibration")
SHIPPED = {"cpu": "cpu-2core.json", "gpu": "h200.json"}
# The CPU features that change which kernels torch runs (AVX2 / AVX-512 vector code, bf16
# and AMX matmuls): part of a machine's fingerprint.
ISA = ("avx2", "avx512f", "avx512_bf16", "amx_tile")

# Every rate the cost model reads, by name: what it is. `load_calibration` refuses a file
# that lacks one (a half-written calibration would otherwise price work at zero).
RATES: dict[str, str] = {
    # start-up costs (seconds)
    "worker_start_s": "a Ray task in a new worker process: the process, torch, MLflow, mtdiff",
    "task_start_s": "a Ray task in a worker that already ran one (Ray's own latency)",
    "import_s.maze2d": "the first Maze2D env of a worker: its modules and model",
    "import_s.metaworld": "the first Meta-World env of a worker: metaworld, its model",
    "import_s.cheetah-vel": "the first Cheetah-vel env of a worker",
    "import_s.ant-dir": "the first Ant-dir env of a worker",
    "trainer_start_s": "a Ray Train fit()'s fixed cost: controller, worker group, setup",
    "trainer_start_cpus": "CPUs busy while a trainer starts (its worker's and its actors')",
    "checkpoint_s": "one training checkpoint (write + report)",
    "policy_load_s": "loading a planner checkpoint in an evaluation task",
    "report_s": "the report job's fixed cost",
    "report_job_s": "the report's cost per job record it reads",
    "finalize_s": "a fan-out job's driver-side end (summaries, plots, manifest)",
    # data
    "load_rows_per_s": "dataset rows loaded per second (Parquet -> arrays)",
    "write_rows_per_s": "dataset rows written per second (subset, synthesis, combine)",
    # environments (one core)
    "maze2d_collect_steps_per_s": "Maze2D expert collection, env steps per second",
    "maze2d_goal_episode_steps": "mean length of a Maze2D goal episode (ends at G)",
    "metaworld_scripted_steps_per_s": "Meta-World scripted-expert collection, steps/s",
    "env_steps_per_s.maze2d": "evaluation env steps per second (batched envs, no policy)",
    "env_steps_per_s.metaworld": "evaluation env steps per second",
    "env_steps_per_s.cheetah-vel": "evaluation env steps per second",
    "env_steps_per_s.ant-dir": "evaluation env steps per second",
    "env_make_s.maze2d": "making one evaluation env",
    "env_make_s.metaworld": "making one evaluation env",
    "env_make_s.cheetah-vel": "making one evaluation env",
    "env_make_s.ant-dir": "making one evaluation env",
    "sac_env_steps_per_s.metaworld": "SAC collection env steps/s (act + step + buffer)",
    "sac_env_steps_per_s.cheetah-vel": "SAC collection env steps/s (act + step + buffer)",
    "sac_env_steps_per_s.ant-dir": "SAC collection env steps/s (act + step + buffer)",
    "td3bc_eval_steps_per_s": "TD3-BC evaluation env steps/s (Meta-World, batched actor)",
    "quality_sample_s": "Table 4's dynamics error, seconds per checked row",
    "embedding_s": "Table 4's 2-D embedding plot",
    "nearest_pair_s": "Table 4's nearest-neighbour distance, seconds per (query, reference) "
                      "pair of Meta-World transitions",
    # networks: fixed_s + FLOPs / flops_per_s per call
    "train.gpt2": "a diffusion training step (GPT-2 backbone: MTDiff-P, -S, -onehot)",
    "train.unet": "a diffusion training step (U-Net backbone)",
    "train.dt": "a Decision Transformer training step (MT-DT, Prompt-DT)",
    "train.mlp": "an MLP baseline training step (MTBC, MTIQL, MTCQL)",
    "denoise.gpt2": "one denoiser call in planning or synthesis (GPT-2)",
    "denoise.unet": "one denoiser call in planning (U-Net)",
    "act.dt": "one Decision Transformer policy call",
    "act.mlp": "one MLP baseline policy call",
    "sac_update": "one SAC update (actor, twin critics, temperature)",
    "td3bc_update": "one TD3-BC update (twin critics, delayed actor)",
}
LINEAR = tuple(k for k in RATES if k.split(".")[0] in
               ("train", "denoise", "act", "sac_update", "td3bc_update"))


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Calibration:
    """Rates of one node kind (module docstring). A GPU node's file names a ``host``
    calibration for the work its CPUs do (environments, data, CPU-only tasks); its own
    rates are those of the GPU and any it measured itself."""

    node: str
    device: str  # "cpu" | "cuda"
    rates: dict[str, dict[str, Any]]
    about: str = ""
    path: str = ""
    host: Calibration | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def _rate(self, name: str) -> dict[str, Any]:
        if name in self.rates:
            return self.rates[name]
        if self.host is not None:
            return self.host._rate(name)
        raise KeyError(f"calibration {self.node!r} has no rate {name!r}")

    def value(self, name: str) -> float:
        """A plain figure (``value``): this file's, else its host's."""
        return float(self._rate(name)["value"])

    def call_s(self, name: str, flops: float, size: str = "") -> float:
        """Seconds of one call of a linear rate doing `flops` FLOPs: the line measured for
        the network's `size` ("d128-l3": d_model and layers) where the rate has one (a
        small model uses the hardware less well than a large one), else the family's."""
        r = self._rate(name)
        r = r.get("sizes", {}).get(size, r) if size else r
        return float(r["fixed_s"]) + flops / float(r["flops_per_s"])

    def on(self, gpu: bool) -> Calibration:
        """The rates of the device a task computes on: this file's for a task holding a
        GPU (on a GPU calibration), else the host's CPU rates."""
        if self.device != "cpu" and not gpu and self.host is not None:
            return self.host
        return self

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON object."""
        return {"node": self.node, "device": self.device, "about": self.about,
                **self.extra, "rates": self.rates}


def _check_numbers(where: str, name: str, r: Any, fields: tuple[str, ...]) -> None:
    for f in fields:
        v = r.get(f) if isinstance(r, dict) else None
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v) \
                or v < 0 or (f == "flops_per_s" and v <= 0):
            raise CalibrationError(f"{where}: rate {name!r} needs a number >= 0 in {f!r} "
                                   f"(flops_per_s > 0), got {v!r}")


def _check_rate(where: str, name: str, r: Any) -> None:
    fields = ("fixed_s", "flops_per_s") if name in LINEAR else ("value",)
    _check_numbers(where, name, r, fields)
    sizes = r.get("sizes", {})
    if not isinstance(sizes, dict):
        raise CalibrationError(f"{where}: rate {name!r}: sizes must map a size (d128-l3) to "
                               "{fixed_s, flops_per_s}")
    for size, line in sizes.items():
        _check_numbers(where, f"{name}/{size}", line, fields)
    if not isinstance(r.get("source"), str) or not r["source"]:
        raise CalibrationError(f"{where}: rate {name!r} does not say where it comes from "
                               "(a \"source\" string)")


def from_dict(doc: Any, path: str = "", host: Calibration | None = None) -> Calibration:
    """A checked `Calibration` from a file's JSON object (`host`: the calibration its
    ``host`` field names, already loaded)."""
    where = path or "calibration"
    if not isinstance(doc, dict) or not isinstance(doc.get("rates"), dict):
        raise CalibrationError(f"{where}: not a calibration (a JSON object with \"rates\"); "
                               "write one with benchmarks/calibrate.py")
    rates = doc["rates"]
    for name, r in rates.items():
        _check_rate(where, name, r)
    have = set(rates) | (set(_all_rates(host)) if host is not None else set())
    missing = [k for k in RATES if k not in have]
    if missing:
        raise CalibrationError(f"{where}: lacks the rate(s) {', '.join(missing)}; rerun "
                               "benchmarks/calibrate.py or copy them from a shipped file")
    machine = doc.get("machine")
    if machine is not None and not (
            isinstance(machine, dict) and isinstance(machine.get("cpu"), str)
            and isinstance(machine.get("cpus"), int) and isinstance(machine.get("isa"), list)):
        raise CalibrationError(f"{where}: \"machine\" is not {{\"cpu\": str, \"cpus\": int, "
                               "\"isa\": [...]}} (as benchmarks/calibrate.py writes it)")
    device = str(doc.get("device", "cpu"))
    if device not in ("cpu", "cuda"):
        raise CalibrationError(f"{where}: device {device!r} is not 'cpu' or 'cuda'")
    extra = {k: v for k, v in doc.items() if k not in ("node", "device", "about", "rates")}
    return Calibration(str(doc.get("node") or Path(where).stem), device, rates,
                       str(doc.get("about", "")), path, host, extra)


def _all_rates(cal: Calibration) -> list[str]:
    return [*cal.rates, *(_all_rates(cal.host) if cal.host is not None else [])]


def load_calibration(path: str | Path, _seen: tuple[str, ...] = ()) -> Calibration:
    """The calibration in `path` (JSON; its ``host`` file, a path relative to it, loaded
    too); a missing or malformed file raises `CalibrationError` with one line."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except OSError as e:
        raise CalibrationError(f"calibration {path}: cannot read it ({e.strerror or e})"
                               ) from e
    except ValueError as e:
        raise CalibrationError(f"calibration {path}: not JSON ({e})") from e
    host = None
    if isinstance(doc, dict) and doc.get("host"):
        hp = (p.parent / str(doc["host"])).resolve()
        if str(hp) in _seen or hp == p.resolve():
            raise CalibrationError(f"calibration {path}: its host chain loops back to {hp}")
        host = load_calibration(hp, (*_seen, str(p.resolve())))
    return from_dict(doc, str(p), host)


def this_machine() -> dict[str, Any]:
    """This machine's fingerprint: its CPU model, logical CPUs and which of `ISA` it has
    (from /proc/cpuinfo on Linux; elsewhere the model as `platform` names it, no flags)."""
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and not model:
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return {"cpu": model or platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "isa": [f for f in ISA if f in flags]}


def cpu_calibration_for(machine: dict[str, Any] | None,
                        directory: Path = CALIBRATION_DIR) -> Path:
    """The CPU calibration in `directory` whose ``machine`` equals `machine`, else
    `SHIPPED["cpu"]` there (also for `machine` None: no machine to match)."""
    for p in sorted(directory.glob("*.json")) if machine is not None else ():
        try:
            doc = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("device", "cpu") == "cpu" \
                and doc.get("machine") == machine:
            return p
    return directory / SHIPPED["cpu"]


def default_calibration(has_gpu: bool, machine: dict[str, Any] | None = None) -> Calibration:
    """The shipped calibration of the node kind: the H200's where the cluster has GPUs,
    else the CPU file measured on `machine` (`cpu_calibration_for`)."""
    if has_gpu:
        return load_calibration(CALIBRATION_DIR / SHIPPED["gpu"])
    return load_calibration(cpu_calibration_for(machine))


def measured_elsewhere(cal: Calibration, machine: dict[str, Any]) -> str | None:
    """One line for a plan of `machine` priced by a CPU file measured on another machine
    (None where the file is this machine's, or prices a GPU node)."""
    if cal.device != "cpu" or cal.extra.get("machine") == machine:
        return None
    where = cal.extra.get("machine")
    said = f"{where['cpu']}, {where['cpus']} CPUs" if isinstance(where, dict) else \
        "a machine it does not name"
    return (f"note: calibration {cal.node} was measured on another machine ({said}); "
            f"`python benchmarks/calibrate.py --node NAME` measures this one "
            f"({machine['cpu']}, {machine['cpus']} CPUs) in a few minutes, and --plan then "
            "uses it")


def precision_unpriced(cal: Calibration, bf16: bool, tf32: bool) -> str | None:
    """One line for a plan whose trainings run at another precision than `cal`'s training
    rates were measured at (None where they match). Those rates are fp32 steps on a CPU and
    TF32 steps on a GPU (`train.tf32`'s default); the cost model has no second set, so a plan
    with `train.bf16` (or, on a GPU, `train.tf32=false`) prices its trainings at them and
    says how far off that was where it was measured (docs/training_speed.md)."""
    if cal.device == "cpu":
        if not bf16:
            return None
        said = ("on a 2-core Xeon with AMX a bf16 step ran 1.5x (local-sized MTDiff-P) to 2.5x "
                "(paper-sized) the fp32 rate; on the one without AMX it was slower than fp32")
    elif bf16:
        said = "on an H200 a bf16 step of the paper-sized MTDiff-P ran 0.74x the TF32 rate"
    elif not tf32:
        said = "on an H200 an fp32 step of the paper-sized MTDiff-P ran 0.52x the TF32 rate"
    else:
        return None
    kind = "fp32" if cal.device == "cpu" else "TF32"
    run = "bf16 autocast" if bf16 else "fp32 (train.tf32=false)"
    return (f"note: the trainings run in {run} and are priced at calibration {cal.node}'s "
            f"{kind} rates: {said} (docs/training_speed.md)")
