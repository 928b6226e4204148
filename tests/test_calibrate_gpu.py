"""`benchmarks/calibrate_gpu.py`: a GPU node's calibration, written on a machine with torch,
numpy and pyarrow only. Here it runs `--tiny` on the CPU (the CUDA path is the same code
on another device; a lent GPU runs it for real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mtdiff.experiment.rates import CALIBRATION_DIR, load_calibration
from tests.test_fastplan import BLOCKED, GPU_MACHINE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "benchmarks/calibrate_gpu.py"
GPU_RATES = ("train.gpt2", "train.unet", "train.dt", "train.mlp", "denoise.gpt2",
             "denoise.unet", "act.dt", "act.mlp", "sac_update", "td3bc_update",
             "trainer_start_s", "policy_load_s")
# pyarrow imports pandas (and its dependencies) where it is installed; the GPU machine has
# none and pyarrow runs without it. A None entry for pandas breaks pyarrow's check for it,
# so pandas is the one package the test leaves importable.
PYARROW_OPTIONAL = {"pandas", "dateutil", "six", "pytz", "tzdata"}


def run(tmp_path: Path, *args: str, block: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if block:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(textwrap.dedent(f"""
            import atexit, json, sys
            for name in {tuple(b for b in BLOCKED if b != "pandas")!r}:
                sys.modules[name] = None  # `import name` fails as if not installed
            def dump():
                with open({str(tmp_path / "modules.json")!r}, "w") as f:
                    json.dump(sorted({{m.split(".")[0] for m, v in sys.modules.items()
                                      if v is not None}}), f)
            atexit.register(dump)
        """))
        env["PYTHONPATH"] = f"{site}{os.pathsep}{ROOT}"
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)


def test_it_measures_every_gpu_rate_without_ray_mlflow_mujoco(tmp_path):
    """Every rate a GPU node's file holds is measured, the file is one the cost model
    loads (its host, the CPU file, found from where it was written), and the script
    imports nothing the bare GPU machine lacks."""
    out = tmp_path / "cal" / "tiny.json"
    r = run(tmp_path, "--tiny", "--node", "tiny", "--out", str(out), "--budget", "10",
            block=True)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["measured"] == list(GPU_RATES) and summary["kept"] == []
    cal = load_calibration(out)
    assert cal.host is not None and cal.host.node == "cpu-2core"
    assert set(cal.rates) == set(GPU_RATES)
    for name in GPU_RATES:
        assert cal.rates[name]["source"].startswith("measured on tiny"), name
    # a bigger batch costs more, by the fitted line, as it did when measured
    assert cal.call_s("train.gpt2", 1e10) > cal.call_s("train.gpt2", 1e9) > 0
    assert cal.value("trainer_start_s") >= cal.host.value("trainer_start_s")
    assert cal.value("env_steps_per_s.metaworld") == cal.host.value("env_steps_per_s.metaworld")
    imported = set(json.loads((tmp_path / "modules.json").read_text()))
    beside = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    third_party = {m for m in imported - set(sys.stdlib_module_names) - beside
                   if not m.startswith("_")}
    assert third_party <= GPU_MACHINE | PYARROW_OPTIONAL, third_party - GPU_MACHINE


def test_what_the_budget_leaves_keeps_the_base_figures_and_says_so(tmp_path):
    """With no time to measure, every rate keeps the base file's figure, its source says
    that it was not measured, and the file still loads."""
    out = tmp_path / "kept.json"
    r = run(tmp_path, "--tiny", "--node", "kept", "--out", str(out), "--budget", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["measured"] == [] and summary["kept"] == list(GPU_RATES)
    cal, base = load_calibration(out), load_calibration(CALIBRATION_DIR / "h200.json")
    for name in GPU_RATES:
        assert cal.rates[name]["source"].startswith("not measured by this run"), name
        mine = {k: v for k, v in cal.rates[name].items() if k != "source"}
        assert mine == {k: v for k, v in base.rates[name].items() if k != "source"}


def test_without_cuda_or_with_a_bad_base_it_stops_with_one_line(tmp_path):
    r = run(tmp_path, "--node", "x", "--out", str(tmp_path / "x.json"))
    if r.returncode == 0:  # a machine with CUDA measured it for real
        return
    assert r.returncode == 2 and "no CUDA device" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run(tmp_path, "--tiny", "--base", str(bad), "--out", str(tmp_path / "y.json"))
    assert r.returncode == 2 and str(bad) in r.stderr and "not JSON" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "y.json").exists()
