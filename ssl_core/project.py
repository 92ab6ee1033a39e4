"""2-D maps of a run's embeddings (UMAP), computed once in the job and stored in the run folder.

umap-learn compiles its kernels with numba on first use (tens of seconds in a fresh process);
pointing NUMBA_CACHE_DIR at a persistent folder lets later processes reuse that work.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core.runs import Run, atomic_write_bytes, atomic_write_json


def _numba_cache() -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssl-explorer" / "numba"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache))


def project_umap(vectors: np.ndarray, *, n_neighbors: int = 15, min_dist: float = 0.1,
                 seed: int = 0) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32 UMAP coordinates on the cosine metric."""
    if len(vectors) < 4:
        raise ValueError(f"a UMAP map needs at least 4 points; got {len(vectors)}")
    _numba_cache()
    import umap

    reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, len(vectors) - 1),
                        min_dist=min_dist, metric="cosine", random_state=seed)
    return reducer.fit_transform(vectors).astype(np.float32)


def project_run(run: Run, *, n_neighbors: int = 15, min_dist: float = 0.1) -> dict[str, Any]:
    """Write projection/umap_2d.npy (train rows, then test rows) and projection/params.json."""
    from ssl_core.embed import load_all_embeddings

    vectors, _, _, splits = load_all_embeddings(run)
    t0 = time.perf_counter()
    coords = project_umap(vectors, n_neighbors=n_neighbors, min_dist=min_dist, seed=run.config.train.seed)
    buffer = io.BytesIO()
    np.save(buffer, coords)
    atomic_write_bytes(run.projection_dir / "umap_2d.npy", buffer.getvalue())
    params = {"method": "umap", "n_neighbors": n_neighbors, "min_dist": min_dist, "metric": "cosine",
              "random_state": run.config.train.seed, "rows": "train then test",
              "num_points": len(coords), "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_json(run.projection_dir / "params.json", params)
    return params


def load_projection(run: Run) -> np.ndarray:
    path = run.projection_dir / "umap_2d.npy"
    if not path.exists():
        raise FileNotFoundError(f"run {run.id} has no map yet; run `ssl-explorer project {run.id}`")
    return np.load(path, allow_pickle=False)
