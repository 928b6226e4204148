"""A fixed-shape denoising loop that can be compiled: inductor, or CUDA graphs on a GPU.

`sample` (in `samplers`) is the reference loop: Python floats per step, shapes as given.
`FastSampler` runs the same maths in a form compilers like:

- every step of DDPM, DDIM and DPM-Solver++(2M) is one linear update,
  x_prev = c_x x + c_0 x̂_0 + c_p x̂_0' + c_ε ε + c_z z, with x̂_0 = (x - √(1-ᾱ) ε) / √ᾱ
  (clipped when the sampler clips) and x̂_0' the previous step's; the per-step numbers
  are a (n, 7) tensor (`step_table`), so one compiled step serves all n steps;
- the noise is drawn up front, in the eager loop's order and shapes (x_K, then each step
  that draws), so with the same generator the outputs equal `sample`'s (float rounding);
- the batch is padded to a power-of-two bucket (rows repeat the first one, outputs are
  cut), so a shrinking set of active environments reuses a few compiled graphs instead
  of recompiling at every size;
- guidance's two branches stay one batch of 2B, as in `guided_model_fn`.

Modes: "eager" (this loop uncompiled: the reference for the others), "inductor"
(`torch.compile` of the step), "reduce-overhead" (`torch.compile`'s CUDA-graph mode),
"cudagraph" (the whole n-step loop captured as one `torch.cuda.CUDAGraph` per bucket,
eager kernels: no compile cost). Engines are cached per model and settings for the life
of the process (`fast_sampler`), so an evaluation worker pays compile cost once.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from mtdiff.diffusion.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, Sampler

Mode = Literal["eager", "inductor", "reduce-overhead", "cudagraph"]
MODES: tuple[str, ...] = ("eager", "inductor", "reduce-overhead", "cudagraph")
# Columns of a step table row.
S0, S1, C_X0, C_X0P, C_X, C_EPS, C_Z = range(7)


def step_table(sampler: Sampler) -> tuple[list[int], torch.Tensor, list[bool]]:
    """The sampler's steps as linear updates: (timesteps, table (n, 7) float64, draws).

    Row i: √ᾱ_k, √(1-ᾱ_k), c_0, c_p, c_x, c_ε, c_z (see the module docstring); draws[i]
    says whether the eager `step` draws noise there (it does even when c_z is 0, e.g. at
    temperature 0, so the random stream stays the same).
    """
    abar = sampler.schedule.alphas_cumprod64.tolist()
    ts = list(sampler.timesteps)
    rows, draws = [], []
    for i, k in enumerate(ts):
        p = ts[i + 1] if i + 1 < len(ts) else -1
        a_k, a_p = abar[k], (abar[p] if p >= 0 else 1.0)
        row = [math.sqrt(a_k), math.sqrt(1.0 - a_k), 0.0, 0.0, 0.0, 0.0, 0.0]
        draw = False
        if isinstance(sampler, DDPMSampler):
            beta = 1.0 - a_k / a_p
            row[C_X0] = math.sqrt(a_p) * beta / (1.0 - a_k)  # posterior mean (DDPM eq. 7)
            row[C_X] = math.sqrt(1.0 - beta) * (1.0 - a_p) / (1.0 - a_k)
            if p >= 0:
                var = max((1.0 - a_p) / (1.0 - a_k) * beta, 1e-20)
                row[C_Z], draw = math.sqrt(sampler.temperature * var), True
        elif isinstance(sampler, DDIMSampler):
            var = (1.0 - a_p) / (1.0 - a_k) * (1.0 - a_k / a_p)
            sigma = sampler.eta * math.sqrt(var)
            row[C_X0] = math.sqrt(a_p)
            row[C_EPS] = math.sqrt(max(1.0 - a_p - sigma**2, 0.0))
            if sigma > 0:
                row[C_Z], draw = sigma * math.sqrt(sampler.temperature), True
        elif isinstance(sampler, DPMSolverSampler):
            if p < 0:
                row[C_X0] = 1.0  # the last step returns x̂_0
            else:
                lam = [0.5 * (math.log(a) - math.log(1.0 - a)) for a in (a_k, a_p)]
                h = lam[1] - lam[0]
                row[C_X] = math.sqrt(1.0 - a_p) / math.sqrt(1.0 - a_k)
                c = -math.sqrt(a_p) * math.expm1(-h)
                if i == 0:
                    row[C_X0] = c  # first order on the first step
                else:
                    a_q = abar[ts[i - 1]]
                    r = (lam[0] - 0.5 * (math.log(a_q) - math.log(1.0 - a_q))) / h
                    row[C_X0], row[C_X0P] = c * (1.0 + 0.5 / r), -c * 0.5 / r
        else:
            raise TypeError(f"no step table for {type(sampler).__name__}")
        rows.append(row)
        draws.append(draw)
    return ts, torch.tensor(rows, dtype=torch.float64), draws


def bucket_size(n: int) -> int:
    """The power of two >= n that a batch of n is padded to."""
    return 1 << max(0, (n - 1).bit_length())


def resolve_mode(setting: str, device: torch.device | str) -> Mode | None:
    """`DiffusionConfig.compile` on a device -> a `FastSampler` mode, or None (eager `sample`)."""
    dev = torch.device(device)
    if setting == "off":
        return None
    if setting == "auto":
        return "cudagraph" if dev.type == "cuda" else None
    if setting in ("cudagraph", "reduce-overhead") and dev.type != "cuda":
        raise ValueError(f"diffusion.compile={setting!r} needs a CUDA device, not {dev}; "
                         "use 'inductor' or 'off' on CPU")
    if setting not in MODES:
        raise ValueError(f"diffusion.compile={setting!r} is not one of off, auto, {MODES}")
    return setting  # type: ignore[return-value]


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection during a CUDA graph capture (collected just before).

    An engine dropped earlier (rebound, or evicted from `_ENGINES`) is freed only by the
    cyclic collector; if that runs mid-capture, its graphs are reset inside the capture,
    which CUDA refuses, and the capture fails ("operation not permitted when stream is
    capturing"; then "Offset increment outside graph capture" in later captures). Seen on an
    H200 (torch 2.11) in `benchmarks/gpu_check.py`; `torch.cuda.graph` collects first only
    when `torch.compiler.config.force_cudagraph_gc` is set."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _recompile_limit(n: int) -> Any:
    """Raise dynamo's per-function graph limit for the duration of a call (its name moved
    from `cache_size_limit` to `recompile_limit` across torch versions)."""
    import torch._dynamo.config as dcfg

    name = "recompile_limit" if hasattr(dcfg, "recompile_limit") else "cache_size_limit"
    return dcfg.patch(**{name: max(n, getattr(dcfg, name))})


class _Graph:
    """One bucket's captured CUDA graph and its static input / output buffers."""

    def __init__(self, graph: torch.cuda.CUDAGraph, inputs: dict[str, Any], out: torch.Tensor):
        self.graph, self.inputs, self.out = graph, inputs, out


class FastSampler:
    """Sample x_0 (B, H, D) with a fixed-shape, optionally compiled, loop (see module doc).

    model: `model(x, k, cond, drop_return=None) -> eps`; sampler: its steps and settings
    (read once: a later `set_timesteps` on it is not seen); guidance: α as in
    `guided_model_fn` (None or 1.0: the plain conditional call).
    """

    def __init__(self, model: nn.Module, sampler: Sampler, *, guidance: float | None,
                 mode: Mode, device: torch.device | str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.device = torch.device(device)
        if mode in ("cudagraph", "reduce-overhead") and self.device.type != "cuda":
            raise ValueError(f"mode {mode!r} needs a CUDA device, got {self.device}")
        self.model, self.mode = model, mode
        self.guidance = None if guidance == 1.0 else guidance
        self.init_sigma = sampler.init_noise_sigma
        self.clip = sampler.clip_sample
        ts, table, self.draws = step_table(sampler)
        self.timesteps = ts
        self.table = table.to(self.device, torch.float32)  # (n, 7)
        self.compile_seconds = 0.0  # first calls of each bucket (compile/capture + one run)
        self.compiles = 0
        self.calls = 0
        self._seen: set[tuple[Any, ...]] = set()
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        step: Callable[..., tuple[torch.Tensor, torch.Tensor]] = self._step
        if mode == "inductor":
            step = torch.compile(self._step, dynamic=False)
        elif mode == "reduce-overhead":
            step = torch.compile(self._step, dynamic=False, mode="reduce-overhead")
        self._compiled_step = step

    # -- the maths -----------------------------------------------------------------------

    def _step(self, x: torch.Tensor, x0_prev: torch.Tensor, kk: torch.Tensor,
              cond: dict[str, torch.Tensor], drop: torch.Tensor | None, coef: torch.Tensor,
              z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One denoising step on a bucket: x, x0_prev, z (B, H, D); kk, cond, drop at the
        model's batch (2B when guided); coef (7,) -> (x_prev, x̂_0)."""
        g = self.guidance
        if g is None:
            eps = self.model(x, kk, cond)
        elif g == 0.0:
            eps = self.model(x, kk, cond, drop)
        else:
            B = x.shape[0]
            e = self.model(torch.cat([x, x]), kk, cond, drop)  # (2B, H, D)
            eps = e[B:] + g * (e[:B] - e[B:])  # eq. 9 (cfg_mix): uncond + α (cond - uncond)
        eps = eps.to(x.dtype)
        s0, s1, c0, cp, cx, ce, cz = coef.unbind()
        x0 = (x - s1 * eps) / s0
        if self.clip is not None:  # keep ε consistent with the clipped x̂_0 (as DDIM does)
            if isinstance(self.clip, tuple):  # per-dimension (lo, hi), (D,) each
                x0 = x0.clamp(self.clip[0], self.clip[1])
            else:
                x0 = x0.clamp(-self.clip, self.clip)
            eps = (x - s0 * x0) / s1
        prev = cx * x + c0 * x0 + cp * x0_prev + ce * eps + cz * z
        return prev, x0

    def _loop(self, x: torch.Tensor, cond: dict[str, torch.Tensor], drop: torch.Tensor | None,
              kks: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        x0 = torch.zeros_like(x)
        if self.mode == "reduce-overhead":  # a new plan: earlier graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        with _recompile_limit(64):  # one graph per bucket and engine: more than dynamo's 8
            for i in range(len(self.timesteps)):
                x, x0 = self._compiled_step(x, x0, kks[i], cond, drop, self.table[i], z[i])
        return x

    # -- inputs at a bucket's shape ------------------------------------------------------

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator | None,
              dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x_K and the per-step noise, drawn in `sample`'s order (x_K first)."""
        where = generator.device if generator is not None else self.device

        def randn() -> torch.Tensor:
            return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(
                self.device)

        x = randn() * self.init_sigma  # Alg. 1 line 5: x_K ~ N(0, β I)
        return x, [randn() if d else None for d in self.draws]  # type: ignore[misc]

    def _inputs(self, cond: dict[str, torch.Tensor], x: torch.Tensor,
                noise: list[torch.Tensor | None], Bk: int) -> dict[str, Any]:
        """Pad to Bk rows and build the model-batch tensors (2Bk rows when guided)."""
        N = x.shape[0]

        def pad(t: torch.Tensor) -> torch.Tensor:  # conditions: repeat the first row
            return t if Bk == N else torch.cat([t, t[:1].expand(Bk - N, *t.shape[1:])])

        def pad0(t: torch.Tensor) -> torch.Tensor:  # samples and noise: zeros
            return t if Bk == N else torch.cat([t, t.new_zeros(Bk - N, *t.shape[1:])])

        xp = pad0(x)
        zeros = torch.zeros_like(xp)
        z = torch.stack([zeros if n is None else pad0(n) for n in noise])  # (n, Bk, H, D)
        c = {key: pad(v) for key, v in cond.items() if v is not None}
        guided = self.guidance is not None and self.guidance != 0.0
        rows = 2 * Bk if guided else Bk
        if guided:
            c = {key: torch.cat([v, v]) for key, v in c.items()}  # (2Bk, ...)
            drop: torch.Tensor | None = torch.arange(rows, device=self.device) >= Bk
        elif self.guidance == 0.0:
            drop = torch.ones(rows, dtype=torch.bool, device=self.device)
        else:
            drop = None
        kks = [torch.full((rows,), k, dtype=torch.long, device=self.device)
               for k in self.timesteps]
        return {"x": xp, "cond": c, "drop": drop, "kks": kks, "z": z}

    # -- the call ------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, cond: dict[str, torch.Tensor], shape: tuple[int, ...], *,
                 generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x_0 (N, H, D) for `shape` = (N, H, D) and `cond` at batch N (as `sample`)."""
        N = shape[0]
        Bk = bucket_size(N)
        x, noise = self._draw(shape, generator, dtype)
        inp = self._inputs(cond, x, noise, Bk)
        key = (Bk, tuple(shape[1:]), dtype, tuple(sorted(inp["cond"])))
        first = key not in self._seen
        t0 = time.perf_counter()
        if self.mode == "cudagraph":
            out = self._replay(key, inp)
        else:
            out = self._loop(inp["x"], inp["cond"], inp["drop"], inp["kks"], inp["z"])
            if self.mode == "reduce-overhead":
                out = out.clone()  # the graph's output buffer is rewritten by the next plan
        if first:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self._seen.add(key)
            self.compiles += 1
            self.compile_seconds += time.perf_counter() - t0
        self.calls += 1
        return out[:N]

    def _replay(self, key: tuple[Any, ...], inp: dict[str, Any]) -> torch.Tensor:
        """Capture the whole loop for this bucket once (after a warm-up), then replay it."""
        g = self._graphs.get(key)
        if g is None:
            static = {"x": inp["x"].clone(), "z": inp["z"].clone(),
                      "cond": {k: v.clone() for k, v in inp["cond"].items()},
                      "drop": inp["drop"], "kks": inp["kks"]}
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):  # warm-up outside the capture (cuBLAS handles etc.)
                for _ in range(2):
                    self._loop(static["x"], static["cond"], static["drop"], static["kks"],
                               static["z"])
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with _no_collection(), torch.cuda.graph(graph):
                out = self._loop(static["x"], static["cond"], static["drop"], static["kks"],
                                 static["z"])
            g = self._graphs[key] = _Graph(graph, static, out)
        g.inputs["x"].copy_(inp["x"])
        g.inputs["z"].copy_(inp["z"])
        for k, v in inp["cond"].items():
            g.inputs["cond"][k].copy_(v)
        g.graph.replay()
        return g.out.clone()


# Engines of this process per model: id(model) -> (model, {settings: engine}), oldest
# first. Bounded: an evaluation worker sees a few checkpoints, and an engine holds its model.
_ENGINES: dict[int, tuple[nn.Module, dict[tuple[Any, ...], FastSampler]]] = {}
_MAX_MODELS = 8


def fast_sampler(model: nn.Module, sampler: Sampler, *, guidance: float | None, mode: Mode,
                 device: torch.device | str, tf32: bool = False) -> FastSampler:
    """The process's `FastSampler` for this model and these settings (built on first use).
    `tf32`: whether its calls run under `matmul_tf32` (a captured graph keeps the kernels
    chosen at capture, so engines with and without it are kept apart)."""
    key = (type(sampler).__name__, tuple(sampler.timesteps), sampler.temperature,
           getattr(sampler, "eta", 0.0), _clip_key(sampler.clip_sample), guidance, mode,
           str(device), tf32)
    hit = _ENGINES.get(id(model))
    if hit is None or hit[0] is not model:
        while len(_ENGINES) >= _MAX_MODELS:
            _ENGINES.pop(next(iter(_ENGINES)))
        hit = _ENGINES[id(model)] = (model, {})
    if key not in hit[1]:
        hit[1][key] = FastSampler(model, sampler, guidance=guidance, mode=mode, device=device)
    return hit[1][key]


def _clip_key(clip: Any) -> Any:
    """A hashable, value-based key for a sampler's x̂_0 clipping (tensor bounds by value, so
    a new planner with the same checkpoint finds its engines again)."""
    if isinstance(clip, tuple):
        return tuple(tuple(float(v) for v in t.flatten().tolist()) for t in clip)
    return clip


def engines_of(model: nn.Module) -> list[FastSampler]:
    """The engines built so far for `model` in this process (for compile-cost reports)."""
    hit = _ENGINES.get(id(model))
    return list(hit[1].values()) if hit is not None and hit[0] is model else []
