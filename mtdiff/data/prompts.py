"""Prompt sets (paper eq. 8): J-step (s, a) windows of expert demonstrations, per task.

Stored beside the data as ``prompts.parquet`` (one row per step of a window, schema in
`mtdiff.data.schema.prompt_schema`). In memory a task's prompt set is an array
``(P, J, obs_dim + act_dim)``: P windows, J steps, state then action on the last axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtdiff import keys
from mtdiff.data.io import atomic_write_parquet
from mtdiff.data.schema import DatasetError, prompt_schema, vector_column
from mtdiff.data.writer import PROMPTS


def cut_prompt_windows(
    demos: list[dict[str, np.ndarray]], prompt_len: int, count: int, rng: np.random.Generator,
) -> np.ndarray:
    """`count` random J-step windows from expert episodes -> (count, J, obs_dim + act_dim).

    Window starts are drawn uniformly over all positions of all demos; a demo shorter
    than J is padded by repeating its last step (so the prompt is never cut short).
    """
    if not demos:
        raise DatasetError("no expert demonstrations to cut prompts from")
    seqs = []
    for ep in demos:
        sa = np.concatenate([ep[keys.OBSERVATION], ep[keys.ACTION]], axis=-1).astype(np.float32)
        if len(sa) < prompt_len:
            sa = np.concatenate([sa, np.repeat(sa[-1:], prompt_len - len(sa), axis=0)])
        seqs.append(sa)
    n_starts = np.array([len(s) - prompt_len + 1 for s in seqs])
    flat = rng.integers(0, n_starts.sum(), size=count)
    which = np.searchsorted(np.cumsum(n_starts), flat, side="right")
    offset = flat - np.r_[0, np.cumsum(n_starts)][which]
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
