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

Large runs on the CPU: umap-learn's time grows at least linearly with the points (2.5 minutes for
100k on two cores), so above `SAMPLE_ABOVE` points it lays out a sample of `SAMPLE_SIZE` rows
(`sample_rows`, drawn by the run's seed) and every other row is placed from its `PLACE_K`
nearest sample points in that layout (`place`). Every row gets coordinates, in the run's row
order; projection/params.json records the method, the threshold, the sample size, k and the
seed, so the same run and files give the same map. The GPU backends (cuML, TorchDR) map every
point: the sampling applies to umap-learn only. Embeddings holding NaN or infinite values are
refused before any map is made (`refuse_non_finite`); `project_run(progress=...)` hears of each
stage and of the placement, chunk by chunk.
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
from typing import Any, Callable

import numpy as np
import torch

from ssl_core.core.config import PROJECTION_BACKENDS
from ssl_core.data.user_files import shortlist
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
# umap-learn maps at most SAMPLE_ABOVE points; above that, a sample of SAMPLE_SIZE rows, and the
# others are placed from their PLACE_K nearest sample points. On two cores, 100k mixture points so
# mapped took 48 s instead of 155 s for a full UMAP, trustworthiness 0.952 instead of 0.959; 1M
# took 264 s on a busy machine, 12 s of it placing 950k points (bench/results/projection_cpu.md).
SAMPLE_ABOVE = 50_000
SAMPLE_SIZE = 50_000
PLACE_K = 10  # 5 to 15 scored alike in trials (the rule keeps the 5 that agree best)
CHUNK = 65_536  # rows normalized, projected or placed at once: memory stays O(CHUNK x D) beside the input
SAMPLED = "umap-sample+knn-placement"  # params.json's "method" when umap-learn mapped a sample
PLACE_RULE = ("similarity-weighted mean of the half of the k nearest sample points nearest (in 2-D) "
              "to their coordinate-wise median")
Progress = Callable[[float, str], None] | None
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


def _chunks(n: int, chunk: int = CHUNK):
    return (slice(start, min(start + chunk, n)) for start in range(0, n, chunk))


def project_pca(vectors: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32: the L2-normalized vectors (the cosine geometry that
    UMAP and search use) on their first two principal axes. The mean, the covariance and the
    projection go `chunk` rows at a time, so memory stays at a chunk and one (D, D) matrix beside
    the data (no normalized copy of it); signs are fixed for repeatable maps."""
    if len(vectors) < 2:
        raise ValueError(f"a PCA map needs at least 2 points; got {len(vectors)}")
    n, dim = vectors.shape
    mean = sum(_normalized(vectors[rows]).sum(axis=0, dtype=np.float64) for rows in _chunks(n, chunk)) / n
    covariance = np.zeros((dim, dim))
    for rows in _chunks(n, chunk):
        centred = _normalized(vectors[rows]).astype(np.float64) - mean
        covariance += centred.T @ centred
    _, vecs = np.linalg.eigh(covariance)  # ascending eigenvalues
    axes = vecs[:, ::-1][:, :2]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])  # largest loading positive
    coords = np.empty((n, 2), np.float32)
    for rows in _chunks(n, chunk):
        coords[rows] = _normalized(vectors[rows]) @ axes.astype(np.float32) - (mean @ axes).astype(np.float32)
    return coords


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
                 min_dist: float = 0.1, seed: int = 0, init: np.ndarray | None = None,
                 n_epochs: int | None = None, learning_rate: float = 1.0) -> np.ndarray:
    """(N, D) embeddings -> (N, 2) float32 UMAP coordinates on the cosine geometry, computed by
    `backend` (a resolved name: umap-learn | cuml | torchdr). umap-learn only: `init` (N, 2), a
    layout to start from instead of the spectral one, `n_epochs` of optimisation (None:
    umap-learn's own, 500 below 10,000 points) and its initial `learning_rate` - what the map as it
    learns (map_snapshots.py) uses."""
    if (init is not None or n_epochs is not None or learning_rate != 1.0) and backend != "umap-learn":
        raise ValueError(f"init, n_epochs and learning_rate are umap-learn's options; backend '{backend}' "
                         "takes none of them")
    if init is not None and np.shape(init) != (len(vectors), 2):
        raise ValueError(f"init must be ({len(vectors)}, 2), one row per point; got {np.shape(init)}")
    if len(vectors) < 4:
        raise ValueError(f"a UMAP map needs at least 4 points; got {len(vectors)}")
    n_neighbors = min(n_neighbors, len(vectors) - 1)
    if backend == "umap-learn":
        _use_numba_cache()
        import umap  # heavy and optional backend: imported only when chosen

        _cache_numba_kernels()
        knn = cosine_knn(vectors, n_neighbors)
        reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
                            random_state=seed, precomputed_knn=knn, n_epochs=n_epochs, learning_rate=learning_rate,
                            init="spectral" if init is None else np.asarray(init, dtype=np.float32))
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


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """The rows umap-learn maps when a run has more than it maps: `size` of range(n), drawn
    without replacement by `np.random.default_rng(seed).choice`, in increasing order."""
    if not 0 < size <= n:
        raise ValueError(f"a sample of {size} rows out of {n} is not possible")
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def place(vectors: np.ndarray, sample: np.ndarray, sample_coords: np.ndarray, *, k: int = PLACE_K,
          chunk: int = CHUNK, progress: Progress = None) -> np.ndarray:
    """(N, 2) float32: rows `sample` at `sample_coords` (their layout), every other row by
    `placed_coords` from its k nearest sample points (cosine; FAISS finds them, exactly up to
    KNN_EXACT_MAX sample points and with IVF above). Rows are searched `chunk` at a time, so
    memory is the output, the sample and one chunk beside the input."""
    n = len(vectors)
    k = min(k, len(sample))
    coords = np.empty((n, 2), np.float32)
    coords[sample] = sample_coords
    rest = np.ones(n, bool)
    rest[sample] = False
    rest = np.flatnonzero(rest)
    index = build_index(vectors[sample], ivf_threshold=KNN_EXACT_MAX)
    exact = None  # for the rare row whose IVF lists held fewer than k sample points
    for part in _chunks(len(rest), chunk):
        rows = rest[part]
        queries = _normalized(vectors[rows])
        sims, found = index.search(queries, k)
        short = np.flatnonzero((found < 0).any(axis=1))
        if len(short):
            if exact is None:
                exact = build_index(vectors[sample], ivf_threshold=len(sample))
            sims[short], found[short] = exact.search(queries[short], k)
        coords[rows] = placed_coords(sims, found, sample_coords)
        if progress:
            progress(part.stop / len(rest), f"placed {part.stop:,} of {len(rest):,} points")
    return coords


def placed_coords(sims: np.ndarray, found: np.ndarray, sample_coords: np.ndarray) -> np.ndarray:
    """(M, 2): where M points go, from the cosine similarities (M, k) and positions in the
    sample (M, k) of their k nearest sample points: the similarity-weighted mean of the half of
    those k points' coordinates nearest (in 2-D) to their coordinate-wise median.

    A plain mean puts a point whose neighbours lie on two islands of the map in the gap between
    them; the median alone puts many points on one spot (10 to 45% of them shared a position in a
    trial). 30k mixture points placed from a 3k sample scored a trustworthiness of 0.9488 with
    this rule, 0.9362 with the weighted mean of all k, 0.9539 as a full UMAP; from a 50k sample,
    both rules score the same (bench/results/projection_cpu.md)."""
    points = sample_coords[found]  # (M, k, 2)
    median = np.median(points, axis=1, keepdims=True)
    keep = np.argsort(np.linalg.norm(points - median, axis=2), axis=1, kind="stable")[:, :(found.shape[1] + 1) // 2]
    weights = np.take_along_axis(np.maximum(sims, 0.0) + 1e-6, keep, axis=1)  # > 0: a zero vector has sims 0
    points = np.take_along_axis(points, keep[:, :, None], axis=1)
    return ((weights[:, :, None] * points).sum(axis=1) / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def project_umap_sampled(vectors: np.ndarray, *, sample_size: int = SAMPLE_SIZE, k: int = PLACE_K,
                         n_neighbors: int = 15, min_dist: float = 0.1, seed: int = 0,
                         progress: Progress = None) -> tuple[np.ndarray, dict[str, Any]]:
    """((N, 2) float32 coordinates, how they were made): umap-learn maps `sample_rows(N,
    sample_size, seed)`, `place` puts every other row beside its nearest sample points."""
    report = progress or (lambda fraction, text: None)
    sample = sample_rows(len(vectors), sample_size, seed)
    report(0.0, f"UMAP of a sample of {len(sample):,} of {len(vectors):,} points")
    started = time.perf_counter()
    sample_coords = project_umap(vectors[sample], backend="umap-learn", n_neighbors=n_neighbors,
                                 min_dist=min_dist, seed=seed)
    umap_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report(0.5, f"placing {len(vectors) - len(sample):,} points")
    coords = place(vectors, sample, sample_coords, k=k,
                   progress=lambda fraction, text: report(0.5 + 0.5 * fraction, text))
    info = {"size": len(sample), "seed": seed, "numpy": np.__version__,
            "rows": "np.random.default_rng(seed).choice(num_points, size, replace=False), sorted",
            "placement": {"k": min(k, len(sample)), "metric": "cosine", "rule": PLACE_RULE,
                          "search": "exact" if len(sample) <= KNN_EXACT_MAX else "FAISS IVF (steps.index.build_index)"},
            "umap_seconds": round(umap_seconds, 2), "placement_seconds": round(time.perf_counter() - started, 2)}
    return coords, info


def refuse_non_finite(run: Run, vectors: np.ndarray) -> None:
    """ValueError naming the run, how many of its rows hold NaN or infinite values, and which
    (a NaN would otherwise stop the PCA map with "Eigenvalues did not converge")."""
    bad = np.flatnonzero(np.concatenate([~np.isfinite(vectors[rows]).all(axis=1)
                                         for rows in _chunks(len(vectors))] or [np.zeros(0, bool)]))
    if len(bad):
        ids = load_all_embeddings(run)[2]  # only now: a million ids are not kept for the maps
        raise ValueError(f"run {run.id}: {len(bad):,} of {len(vectors):,} embeddings hold NaN or infinite values "
                         f"(rows {shortlist(bad.tolist())}; ids {shortlist([ids[r] for r in bad])}), so no map "
                         f"can be made; embed the run again (`ssl-explorer embed {run.id}`), or import its "
                         f"vectors again without those rows (`ssl-explorer import --skip-invalid`)")


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def project_run(run: Run, *, backend: str | None = None, sample_above: int = SAMPLE_ABOVE,
                sample_size: int = SAMPLE_SIZE, place_k: int = PLACE_K, progress: Progress = None) -> dict[str, Any]:
    """Write the PCA map, then the UMAP map (rows train then test) and projection/params.json.
    `backend` overrides the run's `project.backend` (config.json keeps what it asked for). With
    umap-learn, a run of more than `sample_above` points gets `project_umap_sampled`'s map.
    `progress(fraction, text)` hears of each stage and of the placement's chunks."""
    cfg = run.config.project
    requested = backend or cfg.backend
    chosen = resolve_backend(requested)  # before any work: a bad choice fails at once
    report = progress or (lambda fraction, text: None)
    vectors = load_all_embeddings(run)[0]
    # Maps of older embeddings must not stand in for the new ones while these are computed.
    for name in (UMAP_FILE, PCA_FILE):
        (run.projection_dir / name).unlink(missing_ok=True)
    refuse_non_finite(run, vectors)
    started = time.perf_counter()
    report(0.0, f"PCA map of {len(vectors):,} points")
    _save_npy(run.projection_dir / PCA_FILE, project_pca(vectors))
    params: dict[str, Any] = {
        "rows": "train then test", "num_points": len(vectors), "dim": int(vectors.shape[1]),
        "pca": {"file": PCA_FILE, "input": "L2-normalized embeddings",
                "seconds": round(time.perf_counter() - started, 3)},
        "umap": None,  # filled in when the UMAP map is written
    }
    atomic_write_json(run.projection_dir / files.PARAMS, params)

    started = time.perf_counter()
    seed = run.config.train.seed
    sampled = chosen == "umap-learn" and len(vectors) > sample_above
    if sampled:
        coords, sample = project_umap_sampled(
            vectors, sample_size=min(sample_size, len(vectors)), k=place_k, n_neighbors=cfg.n_neighbors,
            min_dist=cfg.min_dist, seed=seed, progress=lambda fraction, text: report(0.1 + 0.9 * fraction, text))
    else:
        report(0.1, f"UMAP of {len(vectors):,} points ({chosen})")
        coords, sample = project_umap(vectors, backend=chosen, n_neighbors=cfg.n_neighbors,
                                      min_dist=cfg.min_dist, seed=seed), None
    seconds = time.perf_counter() - started
    _save_npy(run.projection_dir / UMAP_FILE, coords)
    mapped = sample["size"] if sampled else len(vectors)
    params["umap"] = {
        "file": UMAP_FILE, "backend": chosen, "requested": requested, "version": backend_version(chosen),
        "device": "cpu" if chosen == "umap-learn" else ("cuda" if cuda_available() else "cpu"),
        "method": SAMPLED if sampled else "umap",
        "sample_above": sample_above if chosen == "umap-learn" else None,  # the GPU backends map every point
        "sample": sample,
        "n_neighbors": min(cfg.n_neighbors, mapped - 1), "min_dist": cfg.min_dist, "metric": "cosine",
        "random_state": None if chosen == "cuml" else seed,
        "numba_cache": str(numba_cache_dir()) if chosen == "umap-learn" else None,
        "seconds": round(seconds, 2),
    }
    atomic_write_json(run.projection_dir / files.PARAMS, params)
    report(1.0, f"UMAP map of {len(vectors):,} points written")
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
