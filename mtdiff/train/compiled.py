"""The compiled training step behind `train.compile`: what changes, and where it pays.

A compiled step keeps the maths of the eager one and changes how it runs:

- the loss (model forward and loss, and through AOTAutograd its backward) is one
  `torch.compile` graph: inductor fuses the elementwise work around the matmuls, and on
  CUDA "reduce-overhead" replays it as a CUDA graph;
- the optimiser is fused (`Adam(fused=True)`: one kernel for every parameter) and the
  grad-norm clip runs over all gradients at once (`foreach`);
- the random draws of a step (diffusion step k, noise, R's drop) are made outside the
  graph (`mtdiff.train.core.draw_noise`), so a compiled and an eager step from the same
  seed see the same numbers. Dropout inside the graph draws its masks on CPU from the
  eager generator (inductor's `fallback_random`), so there the compiled step equals the
  eager one in value: inductor's own CPU masks come from a scalar Philox call per element,
  which cost 40 ms of a 270 ms local-sized MTDiff-P step against 25 ms for eager's
  `bernoulli_` (docs/training_speed.md). On CUDA they come from inductor's generator
  (equal in distribution, not in value).

The EMA (`mtdiff.train.ema.EMA`) is a single foreach update in every mode.

"auto" compiles on CUDA and runs eager on CPU. On this 2-core CPU the compiled step is
1.01-1.10x the eager one for MTDiff-P and 0.95-0.96x for Prompt-DT
(`benchmarks/train_throughput.py`, one thread), less than its compiling costs at `local`:
matmuls are half of the eager step there, and the rest is elementwise work bound by memory
traffic, which fusing shortens only a little. On a GPU the eager step is launch-bound (~640
small kernels per step) and that is what compiling removes;
`benchmarks/gpu_check.py` measures it where a GPU is lent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

SETTINGS = ("off", "auto", "inductor", "reduce-overhead")


def step_mode(setting: str, device: torch.device | str) -> str | None:
    """`train.compile` on `device` -> "inductor", "reduce-overhead" or None (eager)."""
    dev = torch.device(device)
    if setting not in SETTINGS:
        raise ValueError(f"train.compile={setting!r} is not one of {', '.join(SETTINGS)}")
    if setting == "off":
        return None
    if setting == "reduce-overhead" and dev.type != "cuda":
        raise ValueError(f"train.compile=reduce-overhead replays CUDA graphs and needs a CUDA "
                         f"device, not {dev}; use inductor or auto")
    if setting == "auto":
        return "inductor" if dev.type == "cuda" else None
    return setting


def compile_fn(fn: Callable[..., torch.Tensor], mode: str | None,
               device: torch.device | str) -> Callable[..., torch.Tensor]:
    """`fn` compiled for `mode` on `device` (None: `fn` itself). Shapes are static: a
    training's batch shape never changes. On CPU, random ops in the graph (dropout) use the
    eager generator (module docstring)."""
    if mode is None:
        return fn
    if mode == "reduce-overhead":
        graph = torch.compile(fn, dynamic=False, mode="reduce-overhead")

        def replay(*args: Any, **kwargs: Any) -> torch.Tensor:
            # A CUDA-graph output lives in memory the next replay overwrites: keep a copy.
            torch.compiler.cudagraph_mark_step_begin()
            return graph(*args, **kwargs).clone()

        return replay
    if torch.device(device).type == "cpu":
        return torch.compile(fn, dynamic=False, options={"fallback_random": True})
    return torch.compile(fn, dynamic=False)


def adam(params: Iterable[nn.Parameter], *, lr: float, fast: bool, weight_decay: float = 0.0,
         decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (AdamW when `decoupled`), fused when `fast`; the state dicts are the same, so a
    checkpoint resumes in either mode."""
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    extra: dict[str, Any] = {"fused": True} if fast else {}
    return kind(params, lr=lr, weight_decay=weight_decay, **extra)


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float | None,
                   fast: bool) -> torch.Tensor:
    """Total grad norm over `params`, clipped to `max_norm` when given (foreach when `fast`)."""
    params = [p for p in params if p.grad is not None]
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params], foreach=fast or None)
    return torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=fast or None)
