"""Measure a GPU node's rates for the cost model and write its calibration file.

`benchmarks/calibrate.py` measures a CPU node: its environments, data, Ray start-ups and
one core's networks. A GPU node's file (like the shipped ``h200.json``) holds only what
runs on the GPU and names a ``host`` file for the rest (the node's CPUs). This script
measures those GPU rates, through the same code the jobs run, on the device:

- training (`train.gpt2`, `.dt`, `.unet`, `.mlp`): the methods' learners
  (`build_learner(...).update` on a sampled batch, sampling included, as the training
  loop does) at the config's own `train.compile` and `train.tf32` (default "auto": the
  compiled step on CUDA), several batches, the line through (FLOPs, seconds);
- planning (`denoise.gpt2`, `.unet`) and acting (`act.dt`, `.mlp`): the methods'
  policies (`load_policy` of an untrained checkpoint, then `begin` / `act` / `observe`
  on random states at 1 and more environments, as an evaluation batch calls them), at the
  config's `diffusion.compile` (default "auto": CUDA graphs);
- `sac_update` and `td3bc_update`: `SACAgent.update`, `TD3BC.train`;
- `policy_load_s`: loading a planner plus its first plan's extra time (CUDA-graph
  capture); `trainer_start_s`: the host file's Ray Train start plus this device's CUDA
  start and the first two training steps' extra time (compilation), measured.

Every figure is wall time with the device synchronised. It needs only torch, numpy and
pyarrow (no Ray, MLflow or MuJoCo), so it runs on a bare GPU machine. Sections run in
order of what they cost the `paper` plan and stop being started when `--budget` minutes
would be passed; a rate not measured keeps the `--base` file's figure and says so in its
source. From the repository root:

    PYTHONPATH=. python benchmarks/calibrate_gpu.py --node h100 [--budget 6]
        [--out FILE] [--base mtdiff/experiment/calibration/h200.json]
        [--host mtdiff/experiment/calibration/cpu-2core.json] [--tiny]

Writes FILE (default mtdiff/experiment/calibration/<node>.json); use it with
`full_repro.py --plan --calibration FILE`. `--tiny` (smoke-sized models, short timings)
lets the tests run the script on a CPU. The last line is one JSON object: the file, the
rates measured and kept, the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# benchmarks/, beside this script; none imports Ray, MLflow or MuJoCo at its top
from calibrate_common import LOCAL, PAPER, SMOKE, Calibrator
from calibrate_networks import learner_at, untrained_checkpoint
from planning_speed import sync

from mtdiff.collect.sac import ReplayBuffer, SACAgent, SACHyper
from mtdiff.config import apply_overrides, get_preset
from mtdiff.data.random_data import write_random_dataset
from mtdiff.data.transitions import Transitions
from mtdiff.eval.policy import load_policy
from mtdiff.experiment.flops import network, sac_update_flops, td3bc_update_flops
from mtdiff.experiment.rates import CALIBRATION_DIR, from_dict, load_calibration
from mtdiff.offline.td3bc import TD3BC
from mtdiff.train.core import to_torch

OBS, ACT, TASKS = 39, 4, 10  # Meta-World's shapes; 10 tasks (the task count sets no cost)
# Undiscounted returns: the discounted reward-to-go needs scipy, which the bare GPU machine
# lacks; the return's scale costs nothing in a step.
SAME_COST = ("data.return_discount=1.0",)
GPU_RATES = ("train.gpt2", "train.unet", "train.dt", "train.mlp", "denoise.gpt2",
             "denoise.unet", "act.dt", "act.mlp", "sac_update", "td3bc_update",
             "trainer_start_s", "policy_load_s")


def device_timed(fn: Callable[[], Any], dev: torch.device, min_s: float,
                 min_reps: int = 3) -> float:
    """Mean wall seconds of one call of `fn` (already warm), the device synchronised."""
    sync(dev)
    n, t0 = 0, time.perf_counter()
    while n < min_reps or time.perf_counter() - t0 < min_s:
        fn()
        n += 1
        if n % 8 == 0:
            sync(dev)  # keeps the elapsed-time check honest with an asynchronous queue
    sync(dev)
    return (time.perf_counter() - t0) / n


class GPUCalibration:
    """The measurements, each into the `Calibrator`'s rates."""

    def __init__(self, c: Calibrator, dev: torch.device, data: Path, tiny: bool,
                 min_s: float) -> None:
        self.c, self.dev, self.data, self.tiny, self.min_s = c, dev, data, tiny, min_s
        self.first_step_extra: list[float] = []  # compile + warm-up of each learner

    def size(self, size: list[str]) -> list[str]:
        return SMOKE if self.tiny else size

    def train_points(self, kind: str, size: list[str], batches: list[int]
                     ) -> list[tuple[str, float, float]]:
        """(size, FLOPs per step, seconds per step) of `kind`'s learner per batch per task."""
        pts = []
        for m in batches:
            learner, setup, net = learner_at(self.data, kind, self.size(size), m, self.dev,
                                             *SAME_COST)

            def step(lr: Any = learner, st: Any = setup) -> None:
                lr.update(to_torch(st.sampler.sample(), self.dev))

            sync(self.dev)
            t0 = time.perf_counter()
            step()
            step()
            sync(self.dev)
            first_two = time.perf_counter() - t0
            secs = device_timed(step, self.dev, self.min_s)
            self.first_step_extra.append(max(0.0, first_two - 2 * secs))
            batch = setup.sampler.batch_size
            pts.append((net.size, batch * net.train_flops, secs))
            print(f"    {kind} {net.size} batch {batch}: {secs * 1e3:.2f} ms/step "
                  f"(first two steps {first_two:.1f} s)", flush=True)
        return pts

    def training(self, family: str) -> None:
        how = f"learner.update on a sampled batch, {self.dev.type}, train.compile / tf32 " \
              "at the config's defaults (auto: compiled on CUDA)"
        if family == "gpt2":
            pts = self.train_points("mtdiff-p", PAPER, [1] if self.tiny else [8, 40])
            pts += self.train_points("mtdiff-p", LOCAL, [8])
            self.c.put_line("train.gpt2", pts, f"DiffusionLearner: {how}, MTDiff-P "
                            "paper-sized at batch 80 and 400, local-sized at 80")
        elif family == "dt":
            self.c.put_line("train.dt", self.train_points("promptdt", LOCAL, [8, 40]),
                            f"PromptDTLearner: {how}, local-sized, batch 80 and 400")
        elif family == "unet":
            self.c.put_line("train.unet", self.train_points("mtdiff-p-unet", LOCAL, [8, 40]),
                            f"DiffusionLearner (U-Net, d_model 128): {how}, batch 80, 400")
        else:
            self.c.put_line("train.mlp", self.train_points("mtbc", [], [8, 40])
                            + self.train_points("mtiql", [], [8, 40]),
                            f"MTBC / MTIQL learners: {how}, batch 80 and 400")

    def policy_points(self, kind: str, size: list[str], envs: tuple[int, ...],
                      loads: list[float] | None = None) -> tuple[str, list]:
        """(rate name, points) of `kind`'s policy calls at each env count."""
        ckpt, cfg = untrained_checkpoint(
            self.data, kind, self.size(size),
            Path(self.c.tmp) / f"ckpt-{kind}-{len(os.listdir(self.c.tmp))}", *SAME_COST,
            f"diffusion.sample_steps={5 if self.tiny else 20}")
        net = network(cfg, "metaworld", OBS, ACT, 1)
        rows_per_env, calls = (2, cfg.diffusion.sample_steps) if net.diffusion else (1, 1)
        name = f"{'denoise' if net.diffusion else 'act'}.{net.family}"
        rng = np.random.default_rng(0)
        sync(self.dev)
        t0 = time.perf_counter()
        policy = load_policy(ckpt, device=self.dev, diffusion=cfg.diffusion)
        load_s = time.perf_counter() - t0
        pts = []
        for n in envs:
            idx = np.arange(n)
            obs = rng.normal(size=(n, OBS)).astype(np.float32)
            task = policy.tasks[0]
            prompts = np.stack([policy.sample_prompts(task, 1, rng)[0] for _ in idx]) \
                if policy.conditioning == "prompt" and policy.prompts else None
            task_ids = np.zeros(n, np.int64) if policy.conditioning == "task_id" else None
            policy.begin(obs, prompts=prompts, task_ids=task_ids, env_tasks=[task] * n)

            def act(p: Any = policy, i: np.ndarray = idx, o: np.ndarray = obs) -> None:
                p.act(i)
                p.observe(i, o, np.zeros(len(i), np.float32))

            t0 = time.perf_counter()
            act()  # the first plan at this size: CUDA-graph capture / compilation
            sync(self.dev)
            first = time.perf_counter() - t0
            secs = device_timed(act, self.dev, self.min_s)
            if loads is not None and n == envs[0]:
                loads.append(load_s + max(0.0, first - secs))
            pts.append((net.size, rows_per_env * n * net.call_flops, secs / calls))
            print(f"    {kind} {net.size} {n} envs: {secs * 1e3:.2f} ms/plan "
                  f"({calls} calls; first {first:.2f} s)", flush=True)
        return name, pts

    def planning(self, family: str, loads: list[float]) -> None:
        many = (1, 8) if self.tiny else (1, 50)
        how = f"load_policy of an untrained checkpoint on {self.dev.type}, begin/act/observe " \
              "on random states (diffusion.compile at its default: auto), "
        if family == "gpt2":
            name, pts = self.policy_points("mtdiff-p", PAPER, many, loads)
            pts += self.policy_points("mtdiff-p", LOCAL, many)[1]
            self.c.put_line(name, pts, how + "MTDiff-P paper- and local-sized, guided DDIM, "
                            f"{many} envs, per denoiser call")
        elif family == "unet":
            name, pts = self.policy_points("mtdiff-p-unet", LOCAL, many)
            self.c.put_line(name, pts, how + f"U-Net planner (d_model 128), {many} envs")
        elif family == "dt":
            name, pts = self.policy_points("promptdt", LOCAL, many)
            self.c.put_line(name, pts, how + f"Prompt-DT local-sized, {many} envs")
        else:
            name, pts = self.policy_points("mtbc", [], many)
            self.c.put_line(name, pts, how + f"MTBC, {many} envs")

    def sac(self) -> None:
        pts = []
        for hidden, batch in ((256, 256), (256, 1024)):
            cfg = apply_overrides(get_preset("paper"), [f"sac.hidden={hidden}",
                                                        f"sac.batch_size={batch}"])
            s = cfg.sac
            agent = SACAgent(OBS, ACT, SACHyper(hidden=s.hidden, lr=s.lr, gamma=s.gamma,
                                                tau=s.tau, batch_size=s.batch_size),
                             seed=0, device=self.dev)
            buf = ReplayBuffer(5000, OBS, ACT, batch, agent.device)
            rng = np.random.default_rng(0)
            buf.add_many(rng.normal(size=(5000, OBS)).astype(np.float32),
                         rng.uniform(-1, 1, (5000, ACT)).astype(np.float32), rng.random(5000),
                         rng.normal(size=(5000, OBS)).astype(np.float32), np.zeros(5000))
            for _ in range(3):
                agent.update(buf)
            pts.append(("", sac_update_flops(cfg, OBS, ACT),
                        device_timed(lambda a=agent, b=buf: a.update(b), self.dev,
                                     self.min_s)))
        self.c.put_line("sac_update", pts, f"SACAgent.update on {self.dev.type} (hidden 256, "
                        "batch 256 and 1024)")

    def td3bc(self) -> None:
        rng = np.random.default_rng(0)
        n = 20_000
        data = Transitions.from_arrays(
            rng.normal(size=(n, OBS)).astype(np.float32),
            rng.uniform(-1, 1, (n, ACT)).astype(np.float32), rng.random(n).astype(np.float32),
            rng.normal(size=(n, OBS)).astype(np.float32))
        pts = []
        for batch in (256, 1024):
            cfg = apply_overrides(get_preset("paper"), ["offline.hidden=256",
                                                        f"offline.batch_size={batch}"])
            agent = TD3BC(OBS, ACT, cfg.offline, device=self.dev, seed=0)
            agent.fit_normalizer(data.observations)
            sample = agent.batches(data)
            agent.train(sample, 4, log_every=10**9)
            secs = device_timed(lambda a=agent, s=sample: a.train(s, 20, log_every=10**9),
                                self.dev, self.min_s)
            pts.append(("", td3bc_update_flops(cfg, OBS, ACT), secs / 20))
        self.c.put_line("td3bc_update", pts, f"TD3BC.train on {self.dev.type} (hidden 256, "
                        "batch 256 and 1024)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--node", default="gpu", help="name of this node kind (h100, h200, ...)")
    p.add_argument("--out", help="output file (default mtdiff/experiment/calibration/"
                   "<node>.json)")
    p.add_argument("--base", default=str(CALIBRATION_DIR / "h200.json"),
                   help="GPU calibration whose figures the rates not measured keep")
    p.add_argument("--host", default=str(CALIBRATION_DIR / "cpu-2core.json"),
                   help="calibration of the node's CPUs (environments, data, Ray)")
    p.add_argument("--budget", type=float, default=6.0, help="minutes; no section starts "
                   "that would pass it (each is assumed to take as long as the longest yet)")
    p.add_argument("--tiny", action="store_true", help="smoke-sized models and short "
                   "timings: runs on a CPU, for the tests")
    args = p.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type != "cuda" and not args.tiny:
        print("calibrate_gpu.py: no CUDA device here; it measures a GPU node (a CPU node: "
              "benchmarks/calibrate.py; to try this script on a CPU: --tiny)", file=sys.stderr)
        raise SystemExit(2)
    out = Path(args.out or CALIBRATION_DIR / f"{args.node}.json").resolve()
    try:
        host = load_calibration(args.host)
        base = load_calibration(args.base)
    except ValueError as e:
        print(f"calibrate_gpu.py: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=dev).sum().item()
    cuda_start = time.perf_counter() - t0
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        c = Calibrator(args.node, Path(tmp))
        c.where = (f"measured on {args.node} ({name}, torch {torch.__version__}, host "
                   f"{socket.gethostname()}, {time.strftime('%Y-%m-%d')}) with "
                   "benchmarks/calibrate_gpu.py, wall seconds, device synchronised")
        data = Path(tmp) / "data"
        write_random_dataset(str(data), tasks=TASKS, episodes=4, episode_len=200,
                             obs_dim=OBS, act_dim=ACT)
        g = GPUCalibration(c, dev, data, args.tiny, 0.3 if args.tiny else 1.5)
        loads: list[float] = []
        sections: list[tuple[str, Callable[[], None]]] = [
            ("train.gpt2", lambda: g.training("gpt2")),
            ("denoise.gpt2", lambda: g.planning("gpt2", loads)),
            ("train.dt", lambda: g.training("dt")), ("act.dt", lambda: g.planning("dt", [])),
            ("train.mlp", lambda: g.training("mlp")), ("act.mlp", lambda: g.planning("mlp", [])),
            ("td3bc_update", g.td3bc), ("sac_update", g.sac),
            ("train.unet", lambda: g.training("unet")),
            ("denoise.unet", lambda: g.planning("unet", [])),
        ]
        longest, skipped = 0.0, []
        for rate, run in sections:
            left = args.budget * 60 - (time.perf_counter() - t_all)
            if longest > left:
                skipped.append(rate)
                print(f"  {rate:<34} not measured: {left:.0f} s of the budget left", flush=True)
                continue
            print(rate.split(".")[0], flush=True)
            t0 = time.perf_counter()
            run()
            longest = max(longest, time.perf_counter() - t0)
        if "train.gpt2" in c.rates:
            extra = float(np.median(g.first_step_extra[:2]))  # the paper-sized ones
            c.put("trainer_start_s", host.value("trainer_start_s") + cuda_start + extra, "s",
                  f"the host file's Ray Train start ({host.value('trainer_start_s'):.1f} s) + "
                  f"this device's CUDA start ({cuda_start:.1f} s) + the paper-sized MTDiff-P's "
                  f"first two steps beyond two steady ones ({extra:.1f} s: compilation)")
        if loads:
            c.put("policy_load_s", float(np.median(loads)), "s", "load_policy of the "
                  "paper-sized MTDiff-P on the device + its first plan beyond a steady one "
                  "(CUDA-graph capture)")
    measured = [k for k in GPU_RATES if k in c.rates]
    kept = [k for k in GPU_RATES if k not in c.rates and k in base.rates]
    rates = {k: c.rates[k] for k in measured}
    for k in kept:
        rates[k] = {**base.rates[k], "source": f"not measured by this run (its budget); "
                    f"kept from {Path(args.base).name}: {base.rates[k]['source']}"}
    doc = {"node": args.node, "device": dev.type,
           "host": os.path.relpath(Path(args.host).resolve(), out.parent),
           "about": f"{args.node} ({name}): the rates of work on the GPU, written by "
                    "benchmarks/calibrate_gpu.py; the node's CPUs are priced by the host "
                    "file", "rates": rates}
    from_dict(doc, str(out), host=host)  # the checks the cost model makes
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    tmp_out.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp_out, out)
    secs = time.perf_counter() - t_all
    print(f"wrote {out} ({len(measured)} rates measured, {len(kept)} kept) in {secs:.0f} s")
    print(json.dumps({"out": str(out), "node": args.node, "device": name,
                      "measured": measured, "kept": kept, "not_measured": skipped,
                      "seconds": round(secs, 1)}))


if __name__ == "__main__":
    main()
