"""Fig. 11's picture: a 2-D embedding (t-SNE or PCA) of synthetic vs original transitions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from mtdiff import tracking
from mtdiff.synth.quality import normalizer


def embed_2d(x: np.ndarray, method: Literal["tsne", "pca"] = "tsne", seed: int = 0
             ) -> np.ndarray:
    """(N, D) -> (N, 2) by t-SNE (sklearn; PCA init) or PCA (numpy SVD, the fallback)."""
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:  # pragma: no cover - sklearn is a test dependency
            method = "pca"
        else:
            perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 4)))
            return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    xc = x - x.mean(0)
    _, _, vt = np.linalg.svd(xc, full_matrices=False)
    return xc @ vt[:2].T


def embedding_plot(sets: dict[str, np.ndarray], path: str | Path, *,
                   method: Literal["tsne", "pca"] = "tsne", max_points: int = 1000, seed: int = 0,
                   title: str = "") -> Path:
    """Scatter of several point sets (e.g. {"original": ..., "RAD": ...}, rows of
    `Transitions.transition_matrix()`) in one 2-D embedding; PNG at `path`.

    All sets are z-scored with the first set's statistics and embedded together, at most
    `max_points` random rows each. Logged to MLflow (artifact dir "plots") when a run is
    active.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    rng = np.random.default_rng(seed)
    names = list(sets)
    mean, scale = normalizer(np.asarray(sets[names[0]], np.float64))
    picked = []
    for name in names:
        x = np.asarray(sets[name], np.float64)
        picked.append(x[rng.choice(len(x), min(max_points, len(x)), replace=False)])
    emb = embed_2d((np.concatenate(picked) - mean) / scale, method, seed)
    fig = Figure(figsize=(5, 5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lo = 0
    for name, x in zip(names, picked, strict=True):
        ax.scatter(emb[lo:lo + len(x), 0], emb[lo:lo + len(x), 1], s=3, alpha=0.5, label=name)
        lo += len(x)
    ax.set_title(title or f"{method.upper()} of transitions")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=4)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)

    tracking.log_artifact(path, artifact_path="plots")
    return path
