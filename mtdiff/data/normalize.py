"""Per-dimension normalisation of observations, actions and rewards.

Statistics are pooled over all tasks of a dataset (they live in its manifest), so one
model sees one scale. ``gaussian`` (the default; the paper does not say) is a z-score;
``minmax`` maps [min, max] to [-1, 1] as the authors' code does. Constant dimensions
(e.g. Meta-World's unused second-object slots) get a floor on their scale instead of a
division by zero.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from mtdiff import keys

EPS = 1e-6
NORMALIZED_KEYS = (keys.OBSERVATION, keys.ACTION, keys.REWARD)


class Normalizer:
    """``normalize(key, x)`` / ``unnormalize(key, x)`` for key in observation/action/reward."""

    def __init__(self, stats: dict[str, dict[str, Any]],
                 kind: Literal["gaussian", "minmax"] = "gaussian") -> None:
        if kind not in ("gaussian", "minmax"):
            raise ValueError(f"unknown normalizer {kind!r}; use 'gaussian' or 'minmax'")
        missing = [k for k in NORMALIZED_KEYS if k not in stats]
        if missing:
            raise ValueError(f"statistics for {missing} are missing; the dataset manifest is "
                             "incomplete - re-run finalisation (collect) for it")
        self.kind = kind
        self.stats = {k: {s: np.asarray(v, dtype=np.float32) for s, v in stats[k].items()}
                      for k in NORMALIZED_KEYS}
        self._shift: dict[str, np.ndarray] = {}
        self._scale: dict[str, np.ndarray] = {}
        for k, st in self.stats.items():
            if kind == "gaussian":
                self._shift[k] = st["mean"]
                self._scale[k] = np.maximum(st["std"], EPS)
            else:  # [min, max] -> [-1, 1]: (x - mid) / half_range
                self._shift[k] = (st["max"] + st["min"]) / 2
                self._scale[k] = np.maximum((st["max"] - st["min"]) / 2, EPS)

    def normalize(self, key: str, x: np.ndarray) -> np.ndarray:
        """x (..., dim) in data units -> normalised float32."""
        return ((x - self._shift[key]) / self._scale[key]).astype(np.float32)

    def unnormalize(self, key: str, x: np.ndarray) -> np.ndarray:
        """Normalised x (..., dim) -> data units (works on numpy arrays and torch tensors)."""
        shift, scale = self._shift[key], self._scale[key]
        if hasattr(x, "new_tensor"):  # torch tensor: keep device and dtype
            return x * x.new_tensor(scale) + x.new_tensor(shift)
        return (x * scale + shift).astype(np.float32)

    def normalized_bounds(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each (dim,) float32: the data's [min, max] in normalised units ([-1, 1]
        for minmax; (min - mean) / std .. (max - mean) / std for gaussian): the range
        x̂_0 is clipped to (`DiffusionConfig.clip_denoised`)."""
        st = self.stats[key]
        return self.normalize(key, st["min"]), self.normalize(key, st["max"])

    def state_dict(self) -> dict[str, Any]:
        """JSON-able form (goes into checkpoints next to the weights)."""
        stats = {k: {s: v.tolist() for s, v in st.items()} for k, st in self.stats.items()}
        return {"kind": self.kind, "stats": stats}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Normalizer:
        """Inverse of `state_dict`."""
        return cls(state["stats"], state["kind"])
