"""Nearest-neighbour search over a run's embeddings with FAISS (cosine similarity).

Rows are train then test, the order of the map, so "row 17" is one image everywhere.

Up to `IVF_THRESHOLD` vectors the index is exact (IndexFlatIP: a search reads every vector, a
few ms per query at 1M x 128). Above it, an inverted-file index (IndexIVFFlat, inner product)
with nlist ~ 4 sqrt(N) lists, searched `nprobe` at a time: approximate, tens of times faster.
Its k-means training runs on the GPU when faiss has GPU support and a GPU is present; the
stored index is always a CPU copy, which the app and the CLI load anywhere.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.readiness import refuse, searchable
from ssl_core.store import files
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.runs import Run

IVF_THRESHOLD = 1_000_000  # above this many vectors: IVF (approximate) instead of exact search
MIN_POINTS_PER_LIST = 39  # faiss's k-means wants at least 39 training points per centroid


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def ivf_sizes(n: int) -> tuple[int, int]:
    """(nlist, nprobe) for an IVF index over `n` vectors: ~4 sqrt(n) lists (at most one per 39
    vectors, so k-means has enough points), of which 1/32 (at least 16) are searched per query.
    1M vectors: 4000 lists of ~250 vectors, 125 searched: ~31k distances per query instead of 1M."""
    nlist = max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))
    return nlist, min(nlist, max(16, nlist // 32))


def faiss_gpu_available() -> bool:
    """faiss was built with GPU support (faiss-gpu-cu12) and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def build_index(vectors: np.ndarray, *, ivf_threshold: int = IVF_THRESHOLD, use_gpu: bool | None = None):
    """An inner-product index over L2-normalized vectors (scores are cosine similarities): exact
    up to `ivf_threshold` vectors, IVF above it. `use_gpu` (default: when available) trains and
    fills the IVF index on GPU 0; the index returned is on the CPU either way."""
    x = _normalized(vectors)
    n, dim = x.shape
    if n <= ivf_threshold:
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        return index
    nlist, nprobe = ivf_sizes(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if faiss_gpu_available() if use_gpu is None else use_gpu:
        resources = faiss.StandardGpuResources()
        on_gpu = faiss.index_cpu_to_gpu(resources, 0, index)
        on_gpu.train(x)
        on_gpu.add(x)
        index = faiss.index_gpu_to_cpu(on_gpu)
    else:
        index.train(x)
        index.add(x)
    index.nprobe = nprobe  # stored in faiss.index with the lists
    return index


def describe_index(index) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": type(index).__name__, "metric": "cosine", "num_vectors": int(index.ntotal),
                            "dim": int(index.d)}
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
    if ivf is not None:
        info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
    return info


def index_run(run: Run, *, ivf_threshold: int = IVF_THRESHOLD) -> dict[str, Any]:
    """Write index/faiss.index over all of the run's embeddings, and index/params.json."""

    vectors, *_ = load_all_embeddings(run)
    started = time.perf_counter()
    gpu = len(vectors) > ivf_threshold and faiss_gpu_available()
    index = build_index(vectors, ivf_threshold=ivf_threshold, use_gpu=gpu)
    run.index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = run.index_path.with_name(".faiss.index.tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(run.index_path)
    info = {**describe_index(index), "ivf_threshold": ivf_threshold, "built_on": "cuda" if gpu else "cpu",
            "faiss": faiss.__version__, "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(run.index_path.with_name(files.PARAMS), info)
    return info


def load_index(run: Run):
    if not run.index_path.exists():
        raise FileNotFoundError(f"run {run.id} has no search index yet; run `ssl-explorer index {run.id}`")
    return faiss.read_index(str(run.index_path))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, D) query vectors -> (cosine distances (M, k), row numbers (M, k)), nearest first."""
    sims, rows = index.search(_normalized(np.atleast_2d(queries)), k)
    return 1.0 - sims, rows


def neighbors(run: Run, row: int, k: int = 8) -> dict[str, Any]:
    """The k nearest images to the image at `row` (itself excluded), with ids, labels, distances;
    ValueError with `readiness.searchable`'s reason when the run cannot be searched yet."""
    refuse(searchable(run))
    vectors, labels, ids, splits = load_all_embeddings(run)
    if not 0 <= row < len(vectors):
        raise IndexError(f"index {row} is out of range: run {run.id} has {len(vectors)} images (0..{len(vectors) - 1})")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    class_names = run.read_class_names()
    rows, distances = Search(index=load_index(run), vectors=vectors).of_row(row, k)

    def describe(r: int, distance: float | None = None) -> dict[str, Any]:
        label = int(labels[r])
        item = {"row": int(r), "id": ids[r], "split": str(splits[r]), "label": label,
                "label_name": class_names[label] if 0 <= label < len(class_names) else None}
        if distance is not None:
            item["distance"] = round(float(distance), 6)
        return item

    hits = [describe(r, d) for r, d in zip(rows, distances)]
    # An unlabelled query (-1) has no label to share: None, not a count of other unlabelled images.
    same = sum(h["label"] == int(labels[row]) for h in hits) if labels[row] >= 0 else None
    return {"run_id": run.id, "query": describe(row), "k": k, "metric": "cosine distance",
            "same_label": same, "neighbors": hits}


@dataclass
class Search:
    """A run's FAISS index with the vectors it holds, for neighbours of rows or of new images."""

    index: Any
    vectors: np.ndarray  # (N, D) float32

    def of_row(self, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (k,), cosine distances (k,)) nearest to the image at `row`, itself excluded."""
        if not 0 <= row < len(self.vectors):
            raise IndexError(f"row {row} is out of range 0..{len(self.vectors) - 1}")
        rows, distances = self.of_vector(self.vectors[row], k + 1)
        keep = rows != row
        return rows[keep][:k], distances[keep][:k]

    def of_vector(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        distances, rows = search(self.index, vector, min(k, len(self.vectors)))
        found = rows[0] >= 0
        return rows[0][found], distances[0][found]


def load_search(run: Run) -> Search:
    vectors, *_ = load_all_embeddings(run)
    index = load_index(run)
    if index.ntotal != len(vectors):
        raise ValueError(f"run {run.id}: the index holds {index.ntotal} vectors for {len(vectors)} "
                         f"embeddings; run `ssl-explorer index {run.id}`")
    return Search(index=index, vectors=vectors)
