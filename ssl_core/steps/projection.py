"""2-D maps of a run's embeddings, computed once in the job and stored in the run folder.

    projection/pca_2d.npy    the first two principal components: well under a second for 100k
                             points, written first so that the Explore page has a map at once;
    projection/umap_2d.npy   UMAP, which takes its place when ready;
    projection/params.json   how each map was made: the UMAP backend actually used (config.json
                             keeps what was asked for, often "auto"), its version, timings.

UMAP backends (`ProjectConfig.backend`): `auto` takes cuML when it is installed and a CUDA GPU is
present, else TorchDR likewise, else umap-learn on the CPU. The GPU backends see L2-normalized
vectors under the Euclidean metric, which ranks neighbours as the cosine metric does.

umap-learn compiles its numba kernels in every fresh process: ~30 s of the ~40 s that 10k x 64
points take there. numba keeps compiled code on disk (NUMBA_CACHE_DIR, here
~/.cache/ssl-explorer/numba) only for functions declared `cache=True`: pynndescent declares
about 100 of its 240, umap-learn 1 of about 110. `_cache_numba_kernels` turns caching on for the
others before they first compile, so the first map on a machine pays the compilation once and
later processes (the next job, `ssl-explorer project`) load it. pynndescent's NN-descent cannot
be cached (its kernels take other kernels as arguments), so umap-learn gets its neighbours from
FAISS instead. bench/projection.py measures the whole against plain umap-learn.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_core.core.config import PROJECTION_BACKENDS
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import build_index
from ssl_core.store import files
from ssl_core.store.atomic import atomic_write_bytes, atomic_write_json
from ssl_core.store.runs import Run

PCA_FILE = files.PCA_MAP
UMAP_FILE = files.UMAP_MAP
# umap-learn's neighbours: exact search up to this many points (N^2 D work: ~1.3 s at 20k x 64 on
# two cores), FAISS IVF above it (approximate as umap-learn's own NN-descent is; recall@15 0.998
# on 50k `shapes` embeddings, in 3 s).
KNN_EXACT_MAX = 20_000
# The module each GPU backend imports, in the order `auto` tries them, with what installs it.
GPU_BACKENDS = {"cuml": ("cuml", "cuml-cu12 (RAPIDS)"), "torchdr": ("torchdr", "torchdr")}


# -- backend choice ----------------------------------------------------------------------------
def cuda_available() -> bool:
    return torch.cuda.is_available()


def _module(name: str):
    """The imported module, or None when it is not installed or fails to import (a cuML without
    its CUDA libraries raises other errors than ImportError)."""
    try:
        return importlib.import_module(name)
    except Exception:
        return None


def resolve_backend(requested: str = "auto") -> str:
    """The UMAP backend that `requested` means on this machine (see the module docstring)."""
    if requested not in PROJECTION_BACKENDS:
        raise ValueError(f"unknown projection backend '{requested}'; known: {', '.join(PROJECTION_BACKENDS)}")
    if requested == "auto":
        if cuda_available():
            for name, (module, _) in GPU_BACKENDS.items():
                if _module(module) is not None:
                    return name
        return "umap-learn"
    if requested in GPU_BACKENDS and _module(GPU_BACKENDS[requested][0]) is None:
        raise ValueError(f"projection backend '{requested}' is not installed (pip install "
                         f"{GPU_BACKENDS[requested][1]}); use 'auto' or 'umap-learn'")
    return requested


def backend_version(backend: str) -> str | None:
    module = _module({"umap-learn": "umap", **{k: v[0] for k, v in GPU_BACKENDS.items()}}[backend])
    return getattr(module, "__version__", None)


# -- numba's compilation cache ------------------------------------------------------------------
def numba_cache_dir() -> Path:
    """Where compiled umap-learn kernels are kept: $NUMBA_CACHE_DIR if set, else
    ~/.cache/ssl-explorer/numba (under $XDG_CACHE_HOME when that is set)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssl-explorer" / "numba"


def _use_numba_cache() -> Path:
    cache = numba_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    if "numba" in sys.modules:  # numba reads the variable once, when first imported
        from numba.core import config  # heavy: numba only when UMAP runs

        config.CACHE_DIR = str(cache)
    return cache


def _cache_numba_kernels() -> int:
    """Turn on numba's disk cache for every module-level kernel of umap-learn and pynndescent
    that did not ask for it; returns how many. Kernels numba cannot cache are skipped (numba
    warns and compiles them as before)."""
    from numba.core.caching import NullCache  # heavy: numba only when UMAP runs
    from numba.core.dispatcher import Dispatcher  # heavy: numba only when UMAP runs

    enabled = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                try:
                    value.enable_caching()
                except Exception:  # no cache locator for this function: leave it uncached
                    continue
                enabled += 1
    return enabled


# -- the maps ----------------------------------------------------------------------------------
def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def project_pca(vectors: np.ndarray, chunk: int = 65_536) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32: the L2-normalized vectors (the cosine geometry that
    UMAP and search use) on their first two principal axes. The covariance is summed in chunks,
    so memory stays at one (D, D) matrix beside the data; signs are fixed for repeatable maps."""
    if len(vectors) < 2:
        raise ValueError(f"a PCA map needs at least 2 points; got {len(vectors)}")
    x = _normalized(vectors)
    mean = x.mean(axis=0, dtype=np.float64)
    covariance = np.zeros((x.shape[1], x.shape[1]))
    for start in range(0, len(x), chunk):
        centred = x[start:start + chunk].astype(np.float64) - mean
        covariance += centred.T @ centred
    _, vecs = np.linalg.eigh(covariance)  # ascending eigenvalues
    axes = vecs[:, ::-1][:, :2]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])  # largest loading positive
    return (x @ axes.astype(np.float32) - (mean @ axes).astype(np.float32)).astype(np.float32)


def cosine_knn(vectors: np.ndarray, k: int, exact_up_to: int = KNN_EXACT_MAX) -> tuple[np.ndarray, np.ndarray]:
    """(indices (N, k) int32, cosine distances (N, k) float32) of each vector's k nearest, itself
    first, as umap-learn's `precomputed_knn` takes them. FAISS finds them (exact up to
    `exact_up_to` points, IVF above), so umap-learn skips pynndescent, whose NN-descent kernels
    take other kernels as arguments and cannot be cached: most of the compilation that a warm
    cache leaves in a fresh process."""
    x = _normalized(vectors)
    sims, rows = build_index(x, ivf_threshold=exact_up_to).search(x, k)
    return rows.astype(np.int32), np.clip(1.0 - sims, 0.0, 2.0).astype(np.float32)


def project_umap(vectors: np.ndarray, *, backend: str = "umap-learn", n_neighbors: int = 15,
                 min_dist: float = 0.1, seed: int = 0) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32 UMAP coordinates on the cosine geometry, computed by
    `backend` (a resolved name: umap-learn | cuml | torchdr)."""
    if len(vectors) < 4:
        raise ValueError(f"a UMAP map needs at least 4 points; got {len(vectors)}")
    n_neighbors = min(n_neighbors, len(vectors) - 1)
    if backend == "umap-learn":
        _use_numba_cache()
        import umap  # heavy and optional backend: imported only when chosen

        _cache_numba_kernels()
        knn = cosine_knn(vectors, n_neighbors)
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                            random_state=seed, precomputed_knn=knn)
        with warnings.catch_warnings():
            # "n_jobs overridden by setting random_state": the seed is worth one thread for SGD.
            # "knn_search_index is not an NNDescent object": we never `transform` new points.
            warnings.filterwarnings("ignore", message=".*(n_jobs|knn_search_index|[Cc]annot cache).*")
            coords = reducer.fit_transform(vectors)
    elif backend == "cuml":
        from cuml.manifold import UMAP  # optional GPU backend: imported only when chosen

        # No random_state: cuML then runs its optimisation in parallel (a seed serializes it).
        coords = UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist,
                      output_type="numpy").fit_transform(_normalized(vectors))
    elif backend == "torchdr":
        import torchdr  # optional GPU backend: imported only when chosen

        coords = torchdr.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed,
                              device="cuda" if cuda_available() else "cpu").fit_transform(_normalized(vectors))
    else:
        raise ValueError(f"unknown UMAP backend '{backend}'; known: {', '.join(PROJECTION_BACKENDS[1:])}")
    if hasattr(coords, "get"):  # a cupy array
        coords = coords.get()
    if hasattr(coords, "detach"):  # a torch tensor
        coords = coords.detach().cpu().numpy()
    return np.asarray(coords, dtype=np.float32)


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def project_run(run: Run, *, backend: str | None = None) -> dict[str, Any]:
    """Write the PCA map, then the UMAP map (rows train then test) and projection/params.json.
    `backend` overrides the run's `project.backend` (config.json keeps what it asked for)."""
    cfg = run.config.project
    requested = backend or cfg.backend
    chosen = resolve_backend(requested)  # before any work: a bad choice fails at once
    vectors, *_ = load_all_embeddings(run)
    # Maps of older embeddings must not stand in for the new ones while these are computed.
    for name in (UMAP_FILE, PCA_FILE):
        (run.projection_dir / name).unlink(missing_ok=True)
    started = time.perf_counter()
    _save_npy(run.projection_dir / PCA_FILE, project_pca(vectors))
    params: dict[str, Any] = {
        "rows": "train then test", "num_points": len(vectors), "dim": int(vectors.shape[1]),
        "pca": {"file": PCA_FILE, "input": "L2-normalized embeddings",
                "seconds": round(time.perf_counter() - started, 3)},
        "umap": None,  # filled in when the UMAP map is written
    }
    atomic_write_json(run.projection_dir / files.PARAMS, params)

    started = time.perf_counter()
    coords = project_umap(vectors, backend=chosen, n_neighbors=cfg.n_neighbors, min_dist=cfg.min_dist,
                          seed=run.config.train.seed)
    seconds = time.perf_counter() - started
    _save_npy(run.projection_dir / UMAP_FILE, coords)
    params["umap"] = {
        "file": UMAP_FILE, "backend": chosen, "requested": requested, "version": backend_version(chosen),
        "device": "cpu" if chosen == "umap-learn" else ("cuda" if cuda_available() else "cpu"),
        "n_neighbors": min(cfg.n_neighbors, len(vectors) - 1), "min_dist": cfg.min_dist, "metric": "cosine",
        "random_state": None if chosen == "cuml" else run.config.train.seed,
        "numba_cache": str(numba_cache_dir()) if chosen == "umap-learn" else None,
        "seconds": round(seconds, 2),
    }
    atomic_write_json(run.projection_dir / files.PARAMS, params)
    return params


def read_params(run: Run) -> dict[str, Any] | None:
    try:
        return json.loads((run.projection_dir / files.PARAMS).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def load_map(run: Run) -> tuple[np.ndarray, str]:
    """(coords (N, 2), "umap" | "pca"): the UMAP map when it exists, else the PCA map that the
    job writes first; FileNotFoundError when the run has neither."""
    for kind, name in (("umap", UMAP_FILE), ("pca", PCA_FILE)):
        path = run.projection_dir / name
        if path.exists():
            return np.load(path, allow_pickle=False), kind
    raise FileNotFoundError(f"run {run.id} has no map yet; run `ssl-explorer project {run.id}`")


def load_projection(run: Run) -> np.ndarray:
    """The UMAP map only."""
    path = run.projection_dir / UMAP_FILE
    if not path.exists():
        raise FileNotFoundError(f"run {run.id} has no map yet; run `ssl-explorer project {run.id}`")
    return np.load(path, allow_pickle=False)
