"""Prompt sets (paper eq. 8): J-step (s, a) windows of expert demonstrations, per task.

Stored beside the data as ``prompts.parquet`` (one row per step of a window, schema in
`mtdiff.data.schema.prompt_schema`). In memory a task's prompt set is an array
``(P, J, obs_dim + act_dim)``: P windows, J steps, state then action on the last axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtdiff import keys
from mtdiff.data.io import atomic_write_parquet
from mtdiff.data.schema import DatasetError, prompt_schema, vector_column
from mtdiff.data.writer import PROMPTS

PromptWindow = Literal["before-success", "anywhere"]


def _starts(ep: dict[str, np.ndarray], n_rows: int, prompt_len: int, window: PromptWindow) -> int:
    """How many window starts (0, 1, ...) a demo of `n_rows` rows (after padding) allows."""
    n = n_rows - prompt_len + 1
    succ = ep.get(keys.SUCCESS)
    if window == "before-success" and succ is not None and np.any(succ):
        first = int(np.argmax(succ))  # the step whose action first reached success
        # Windows [o, o + J) with o + J - 1 <= first; at least the one at 0.
        n = min(n, max(1, first - prompt_len + 2))
    return n


def cut_prompt_windows(
    demos: list[dict[str, np.ndarray]], prompt_len: int, count: int, rng: np.random.Generator,
    *, window: PromptWindow = "before-success",
) -> np.ndarray:
    """`count` random J-step windows from expert episodes -> (count, J, obs_dim + act_dim).

    Window starts are drawn uniformly over the allowed positions of all demos: all of them
    (``window="anywhere"``), or (``"before-success"``, `CollectConfig.prompt_window`) those
    whose window ends at or before the demo's first success step (a demo without success:
    all). A demo shorter than J is padded by repeating its last step (so the prompt is
    never cut short).
    """
    if not demos:
        raise DatasetError("no expert demonstrations to cut prompts from")
    seqs, n_starts = [], []
    for ep in demos:
        sa = np.concatenate([ep[keys.OBSERVATION], ep[keys.ACTION]], axis=-1).astype(np.float32)
        if len(sa) < prompt_len:
            sa = np.concatenate([sa, np.repeat(sa[-1:], prompt_len - len(sa), axis=0)])
        seqs.append(sa)
        n_starts.append(_starts(ep, len(sa), prompt_len, window))
    counts = np.array(n_starts)
    flat = rng.integers(0, counts.sum(), size=count)
    which = np.searchsorted(np.cumsum(counts), flat, side="right")
    offset = flat - np.r_[0, np.cumsum(counts)][which]
    return np.stack([seqs[w][o:o + prompt_len] for w, o in zip(which, offset, strict=True)])


def write_prompts(root: str | Path, prompts: dict[str, np.ndarray], obs_dim: int,
                  act_dim: int) -> Path:
    """Write (or replace) the prompt sets of a dataset atomically, merging with existing tasks.

    Prompts may cover tasks that have no transitions in the dataset (held-out tasks).
    """
    path = Path(root) / PROMPTS
    merged = load_prompts(root) if path.exists() else {}
    merged.update(prompts)
    tables = []
    for task in sorted(merged):
        w = np.asarray(merged[task], dtype=np.float32)
        if w.ndim != 3 or w.shape[-1] != obs_dim + act_dim:
            raise DatasetError(f"prompts for {task!r} have shape {w.shape}; expected "
                               f"(P, J, {obs_dim}+{act_dim})")
        P, J, _ = w.shape
        tables.append(pa.Table.from_pydict({
            keys.TASK: pa.array([task] * (P * J)),
            keys.PROMPT_ID: pa.array(np.repeat(np.arange(P, dtype=np.int32), J)),
            keys.STEP: pa.array(np.tile(np.arange(J, dtype=np.int32), P)),
            keys.OBSERVATION: pa.FixedSizeListArray.from_arrays(
                pa.array(w[..., :obs_dim].reshape(-1)), obs_dim),
            keys.ACTION: pa.FixedSizeListArray.from_arrays(
                pa.array(w[..., obs_dim:].reshape(-1)), act_dim),
        }, schema=prompt_schema(obs_dim, act_dim)))
    return atomic_write_parquet(path, pa.concat_tables(tables))


def load_prompts(root: str | Path) -> dict[str, np.ndarray]:
    """Prompt sets of a dataset: task -> (P, J, obs_dim + act_dim) float32."""
    path = Path(root) / PROMPTS
    if not path.exists():
        raise DatasetError(f"{path} is missing: this dataset has no prompt sets; rerun "
                           "`python pipelines/collect.py` (it writes prompts with the data)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"{path} is not a readable Parquet file ({e}); delete it and rerun "
                           "the collection to rebuild the prompts") from None
    obs = vector_column(table, keys.OBSERVATION)
    act = vector_column(table, keys.ACTION)
    sa = np.concatenate([obs, act], axis=-1)
    if not np.isfinite(sa).all():
        raise DatasetError(f"{path}: prompts contain NaN or inf; rebuild them")
    task = table.column(keys.TASK).to_numpy(zero_copy_only=False)
    pid = table.column(keys.PROMPT_ID).to_numpy()
    out: dict[str, np.ndarray] = {}
    for t in np.unique(task):
        m = task == t
        n_windows = int(pid[m].max()) + 1
        out[str(t)] = sa[m].reshape(n_windows, -1, sa.shape[-1])
    return out
