"""Nearest-neighbour search over a run's embeddings with FAISS (cosine similarity).

Rows are train then test, the order of the map, so "row 17" is one image everywhere.

Up to `IVF_THRESHOLD` vectors the index is exact (IndexFlatIP: a search reads every vector,
54 ms per query at 1M x 128 on 2 CPU cores; why the threshold sits there: at its definition).
Above it, an inverted-file index (IndexIVFFlat, inner product) with nlist ~ 4 sqrt(N) lists,
of which a query searches `nprobe`: approximate, and as many times faster as lists are skipped.
`nprobe` is chosen for recall when the index is built: the neighbours of a fixed sample of the
indexed rows are searched with nprobe 1, 2, 4, ... and compared with exact search, and the
smallest nprobe whose recall@10 reaches `TARGET_RECALL` is kept (every list, i.e. exact, when
none does). index/params.json records nlist, nprobe, the measured recall and the sample size.
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

# Above this many vectors: IVF (approximate) instead of exact search. Measured on 2 AMD EPYC
# cores (bench/results/search_cpu.md, 1M x 128, clustered): exact search reads every vector, so one
# query (the app's case: the neighbours of one image) costs ~5.4 ms per 100k vectors of 128-d,
# 54 ms at 1M, and its index is built in 0.3 s. IVF answers in 0.1 ms at recall@10 0.97
# (nprobe 8 of 4,000 lists), but its k-means takes 73 s to build at 1M (91-147 s while other
# work shared the cores). Up to 1M an exact answer stays within an interactive ~60 ms and a run
# is searchable a second after its embeddings; above it exact search passes 100 ms near 1.8M and
# keeps growing with N, while the IVF build, paid once, grows as N^1.5 (nlist ~ sqrt N
# centroids, each k-means pass over N vectors).
IVF_THRESHOLD = 1_000_000
MIN_POINTS_PER_LIST = 39  # faiss's k-means wants at least 39 training points per centroid
# The recall nprobe is chosen for: 9.5 of a row's 10 true neighbours on average, so a page of
# neighbours differs from exact search by about one image in two queries, while nprobe stays a
# small share of nlist (1M x 128: nprobe 8 of 4,000, bench/results/search_cpu.md). Higher targets
# climb steeply where clusters overlap: the last true neighbours sit in lists far down the probe
# order (200k overlapping clusters, 1,788 lists: recall 0.920 at nprobe 64, 0.946 at 128, 0.968 at 256).
TARGET_RECALL = 0.95
RECALL_K = 10  # recall@10: the Explore page shows 8 neighbours unless asked for more
# Queries that measure recall: indexed rows drawn with a fixed seed, so a rebuild chooses the
# same nprobe. 1,000 queries x 10 neighbours put the standard error of the mean recall near
# 0.002 at 0.95, well inside the steps between one nprobe and its double.
RECALL_QUERIES = 1_000
RECALL_SEED = 0


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def ivf_nlist(n: int) -> int:
    """Lists of an IVF index over `n` vectors: ~4 sqrt(n), at most one per 39 vectors so that
    k-means has enough points. 1M vectors: 4000 lists of ~250 vectors."""
    return max(1, min(int(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def faiss_gpu_available() -> bool:
    """faiss was built with GPU support (faiss-gpu-cu12) and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (M, k) that the same row of `found` (M, k') holds;
    -1 (no result) matches nothing."""
    k = truth.shape[1]
    return float(np.mean([len(set(f[f >= 0].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


def _others(rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The first k results of each query row that are not the query itself (as `Search.of_row`
    shows neighbours); -1 where fewer are left."""
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, (found, query) in enumerate(zip(rows, queries)):
        kept = found[found != query][:k]
        out[i, :len(kept)] = kept
    return out


def choose_nprobe(index, x: np.ndarray, *, target: float = TARGET_RECALL, queries: int = RECALL_QUERIES,
                  seed: int = RECALL_SEED) -> dict[str, Any]:
    """Set the IVF `index`'s nprobe to the smallest of 1, 2, 4, ... (up to nlist) whose recall@10
    reaches `target`, measured against exact search of `x` (the normalized vectors it holds) on
    `queries` of its rows drawn with `seed`, each row's own hit left out. When no nprobe below
    nlist reaches it, every list is searched (the search is then exhaustive). Returns the record:
    nprobe, recall_at_10, recall_queries, target_recall, target_reached, recall_by_nprobe."""
    if not 0 < target <= 1:
        raise ValueError(f"target recall must be in (0, 1]; got {target}")
    ivf = faiss.extract_index_ivf(index)
    n = int(index.ntotal)
    k = min(RECALL_K, n - 1)
    if k < 1:
        raise ValueError(f"recall needs at least 2 indexed vectors; the index holds {n}")
    sample = np.sort(np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False))
    q = np.ascontiguousarray(x[sample])
    _, exact = faiss.knn(q, x, k + 1, metric=faiss.METRIC_INNER_PRODUCT)
    truth = _others(exact, sample, k)
    tried: dict[int, float] = {}
    nprobe = 1
    while True:
        ivf.nprobe = nprobe
        _, found = index.search(q, k + 1)
        tried[nprobe] = recall_at_k(_others(found, sample, k), truth)
        if tried[nprobe] >= target or nprobe >= ivf.nlist:
            break
        nprobe = min(2 * nprobe, int(ivf.nlist))
    ivf.nprobe = nprobe  # stored in faiss.index with the lists
    return {"nprobe": nprobe, f"recall_at_{RECALL_K}": round(tried[nprobe], 4), "recall_queries": len(sample),
            "recall_seed": seed, "target_recall": target, "target_reached": tried[nprobe] >= target,
            "recall_by_nprobe": {str(p): round(r, 4) for p, r in tried.items()}}


def _build(x: np.ndarray, ivf_threshold: int, use_gpu: bool | None,
           target_recall: float) -> tuple[Any, dict[str, Any]]:
    """(index over the normalized vectors `x`, its nprobe record: empty for an exact index)."""
    n, dim = x.shape
    if n <= ivf_threshold:
        index = faiss.IndexFlatIP(dim)
        index.add(x)
        return index, {}
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, ivf_nlist(n), faiss.METRIC_INNER_PRODUCT)
    if faiss_gpu_available() if use_gpu is None else use_gpu:
        resources = faiss.StandardGpuResources()
        on_gpu = faiss.index_cpu_to_gpu(resources, 0, index)
        on_gpu.train(x)
        on_gpu.add(x)
        index = faiss.index_gpu_to_cpu(on_gpu)
    else:
        index.train(x)
        index.add(x)
    return index, choose_nprobe(index, x, target=target_recall)


def build_index(vectors: np.ndarray, *, ivf_threshold: int = IVF_THRESHOLD, use_gpu: bool | None = None,
                target_recall: float = TARGET_RECALL):
    """An inner-product index over L2-normalized vectors (scores are cosine similarities): exact
    up to `ivf_threshold` vectors, IVF above it with nprobe chosen for `target_recall`
    (`choose_nprobe`). `use_gpu` (default: when available) trains and fills the IVF index on
    GPU 0; the index returned is on the CPU either way."""
    return _build(_normalized(vectors), ivf_threshold, use_gpu, target_recall)[0]


def describe_index(index) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": type(index).__name__, "metric": "cosine", "num_vectors": int(index.ntotal),
                            "dim": int(index.d)}
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexFlat) else None
    if ivf is not None:
        info.update(nlist=int(ivf.nlist), nprobe=int(ivf.nprobe))
    return info


def index_run(run: Run, *, ivf_threshold: int = IVF_THRESHOLD, target_recall: float = TARGET_RECALL) -> dict[str, Any]:
    """Write index/faiss.index over all of the run's embeddings, and index/params.json (for an
    IVF index: nlist, the nprobe chosen, its measured recall@10 and the queries that measured it)."""

    vectors, *_ = load_all_embeddings(run)
    started = time.perf_counter()
    gpu = len(vectors) > ivf_threshold and faiss_gpu_available()
    x = _normalized(vectors)
    del vectors  # one copy of the vectors beside the index, not two
    index, probes = _build(x, ivf_threshold, gpu, target_recall)
    run.index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = run.index_path.with_name(".faiss.index.tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(run.index_path)
    info = {**describe_index(index), **probes, "ivf_threshold": ivf_threshold, "built_on": "cuda" if gpu else "cpu",
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
