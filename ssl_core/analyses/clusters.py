"""Clusters of a run's embeddings, computed on request and stored in the run folder.

Two algorithms over every row (train then test), always on the embeddings, never on the 2-D map:

- k-means (FAISS, spherical: L2-normalised vectors and centroids, so cosine geometry like the
  rest of the project). k defaults to the number of classes when the run has labels, else
  round(sqrt(N / 2)) clamped to [2, 50].
- HDBSCAN (scikit-learn) on a PCA-reduced copy of the normalised vectors (32 dims by default):
  density-based, any number of clusters, and rows in no dense region are noise (-1). Above
  `HDBSCAN_MAX_FIT_ROWS` rows it is fitted on a seeded sample and every other row takes the label
  of its nearest sampled row.

    analysis/clusters.npz    kmeans_labels, kmeans_distance (cosine distance to its centroid),
                             kmeans_centroids, hdbscan_labels (-1 = noise), hdbscan_distance
                             (cosine distance to its cluster's mean direction; NaN for noise),
                             labels (the run's labels, -1 where unknown, for captions)
    analysis/clusters.json   every setting (so the result can be reproduced), per-cluster size,
                             purity and dominant label, the most central and most outlying rows
                             of each cluster, and overall purity / NMI / ARI against the labels

`ssl-explorer analyze RUN_ID --only clusters` computes them; the app only reads them.
On 5,000 x 256 (the demo runs) the whole takes about a second on two CPU cores.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

import faiss
import numpy as np
from threadpoolctl import threadpool_limits

from ssl_core.analyses.stored import has_stored, load_stored, store_result
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import faiss_gpu_available
from ssl_core.store.runs import Run

NAME = "clusters"
ALGORITHMS = ("kmeans", "hdbscan")
COMMAND = "ssl-explorer analyze {run_id} --only clusters"

MAX_DEFAULT_K = 50  # the unlabelled rule sqrt(N/2) grows without bound; more clusters than this are unreadable
KMEANS_MAX_TRAIN_ROWS = 200_000  # k-means centroids are fitted on a sample of at most this many rows
HDBSCAN_MAX_FIT_ROWS = 20_000  # HDBSCAN is fitted on a sample of at most this many rows (its cost is ~N^2)
SINGLE_THREAD_ROWS = 50_000  # below this, FAISS and BLAS run on one thread: OpenMP's start-up and
# spinning cost more than the work on small sets (k-means 10x, HDBSCAN 2-3x slower with two threads
# on a busy two-core machine)

Progress = Callable[[float, str], None] | None


def normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@contextlib.contextmanager
def small_set_threads(n_rows: int) -> Iterator[None]:
    """One FAISS and one BLAS thread for sets under SINGLE_THREAD_ROWS rows, the libraries'
    defaults otherwise; restored afterwards."""
    if n_rows >= SINGLE_THREAD_ROWS:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def default_k(n_rows: int, num_classes: int) -> tuple[int, str]:
    """(k, the rule that chose it): the number of classes when known, else sqrt(N/2) in [2, 50]."""
    if num_classes >= 2:
        k, rule = num_classes, "number of classes"
    else:
        k, rule = int(round(math.sqrt(n_rows / 2))), "round(sqrt(N / 2)) clamped to [2, 50]"
        k = min(max(k, 2), MAX_DEFAULT_K)
    return min(k, n_rows), rule


def default_min_cluster_size(n_rows: int) -> int:
    """HDBSCAN's smallest cluster: 0.5% of the rows, at least 5 (25 for 5,000 rows)."""
    return max(5, int(round(0.005 * n_rows)))


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, niter: int = 25, nredo: int = 3,
           use_gpu: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spherical k-means of L2-normalised rows `x` (N, D) -> (labels (N,) int64, cosine distance
    of each row to its centroid (N,) float32, unit-norm centroids (k, D) float32)."""
    n, dim = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of rows ({n}); got {k}")
    max_per_centroid = max(1, math.ceil(min(n, KMEANS_MAX_TRAIN_ROWS) / k))
    model = faiss.Kmeans(dim, k, niter=niter, nredo=nredo, seed=seed, spherical=True, gpu=use_gpu,
                         max_points_per_centroid=max_per_centroid, min_points_per_centroid=1, verbose=False)
    model.train(x)
    centroids = normalized(model.centroids)
    index = faiss.IndexFlatIP(dim)
    index.add(centroids)
    similarity, labels = index.search(x, 1)
    return labels[:, 0].astype(np.int64), (1.0 - similarity[:, 0]).astype(np.float32), centroids


def hdbscan(x: np.ndarray, *, pca_dims: int = 32, min_cluster_size: int | None = None,
            min_samples: int | None = 10, seed: int = 0,
            max_fit_rows: int = HDBSCAN_MAX_FIT_ROWS) -> tuple[np.ndarray, dict[str, Any]]:
    """HDBSCAN of L2-normalised rows `x` on their first `pca_dims` principal components (all of
    `x` when it has no more dims than that) -> (labels (N,) int64 with -1 for noise, the settings
    used)."""
    from sklearn.cluster import HDBSCAN  # heavy (~0.5 s): scikit-learn is imported only when this runs
    from sklearn.decomposition import PCA  # heavy (~0.5 s): scikit-learn is imported only when this runs

    n, dim = x.shape
    min_cluster_size = default_min_cluster_size(n) if min_cluster_size is None else min_cluster_size
    if min_cluster_size < 2:
        raise ValueError(f"min_cluster_size must be at least 2; got {min_cluster_size}")
    dims = min(pca_dims, dim, n)
    reduced = PCA(dims, random_state=seed).fit_transform(x).astype(np.float32) if dims < dim else x
    fit_rows = np.arange(n)
    if n > max_fit_rows:
        fit_rows = np.sort(np.random.default_rng(seed).choice(n, size=max_fit_rows, replace=False))
    samples = min(min_samples if min_samples is not None else min_cluster_size, len(fit_rows) - 1)
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=max(1, samples), copy=True)
    fitted = model.fit_predict(reduced[fit_rows]).astype(np.int64)
    if len(fit_rows) == n:
        labels = fitted
    else:  # every other row: the label of its nearest fitted row (noise stays noise)
        index = faiss.IndexFlatL2(reduced.shape[1])
        index.add(np.ascontiguousarray(reduced[fit_rows]))
        _, nearest = index.search(np.ascontiguousarray(reduced), 1)
        labels = fitted[nearest[:, 0]]
        labels[fit_rows] = fitted
    settings = {"pca_dims": int(dims), "pca": bool(dims < dim), "min_cluster_size": int(min_cluster_size),
                "min_samples": int(max(1, samples)), "cluster_selection_method": "eom",
                "metric": f"euclidean on the {'PCA of the ' if dims < dim else ''}L2-normalised embeddings",
                "fit_rows": int(len(fit_rows)),
                "rows_not_fitted": "label of the nearest fitted row" if len(fit_rows) < n else None}
    return labels, settings


def cluster_rows(clusters: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(cluster, its rows in increasing order) for every cluster, noise (-1) left out; one sort,
    not one scan of all rows per cluster."""
    valid = np.flatnonzero(clusters >= 0)
    order = valid[np.argsort(clusters[valid], kind="stable")]
    for rows in np.split(order, np.flatnonzero(np.diff(clusters[order])) + 1):
        if len(rows):
            yield int(clusters[rows[0]]), rows


def distance_to_cluster_mean(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine distance of each row to the mean direction of its cluster; NaN for noise (-1)."""
    distance = np.full(len(x), np.nan, dtype=np.float32)
    for _, rows in cluster_rows(labels):
        centre = normalized(x[rows].mean(axis=0, keepdims=True))[0]
        distance[rows] = 1.0 - x[rows] @ centre
    return distance


def purity(clusters: np.ndarray, labels: np.ndarray) -> float | None:
    """The fraction of rows whose cluster's most common label is their own, over rows that have a
    label and a cluster (not noise); None when there are none."""
    keep = (labels >= 0) & (clusters >= 0)
    if not keep.any():
        return None
    _, cluster_codes = np.unique(clusters[keep], return_inverse=True)
    _, label_codes = np.unique(labels[keep], return_inverse=True)
    table = np.zeros((cluster_codes.max() + 1, label_codes.max() + 1), dtype=np.int64)
    np.add.at(table, (cluster_codes, label_codes), 1)
    return float(table.max(axis=1).sum() / keep.sum())


def agreement(clusters: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Purity, NMI and ARI of `clusters` against `labels`, on the labelled rows not marked noise."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # heavy (~0.5 s): scikit-learn is imported only when this runs

    keep = (labels >= 0) & (clusters >= 0)
    if not keep.any():
        return {"purity": None, "nmi": None, "ari": None, "scored_rows": 0}
    return {"purity": round(purity(clusters, labels), 4),
            "nmi": round(float(normalized_mutual_info_score(labels[keep], clusters[keep])), 4),
            "ari": round(float(adjusted_rand_score(labels[keep], clusters[keep])), 4),
            "scored_rows": int(keep.sum())}


def describe_clusters(clusters: np.ndarray, distance: np.ndarray, labels: np.ndarray, ids: list[str],
                      class_names: list[str], examples: int) -> list[dict[str, Any]]:
    """One record per cluster (largest first): size, dominant label and purity, label counts, and
    the `examples` rows closest to and farthest from its centre."""
    records = []
    for cluster, rows in cluster_rows(clusters):
        order = rows[np.argsort(distance[rows], kind="stable")]
        record: dict[str, Any] = {"cluster": int(cluster), "size": int(len(rows)),
                                  "mean_distance": round(float(np.mean(distance[rows])), 4)}
        known = labels[rows][labels[rows] >= 0]
        if len(known):
            values, counts = np.unique(known, return_counts=True)
            top = np.argsort(-counts, kind="stable")
            dominant = int(values[top[0]])
            record.update(
                dominant_label=dominant,
                dominant_label_name=class_names[dominant] if dominant < len(class_names) else str(dominant),
                purity=round(float(counts[top[0]] / len(known)), 4),
                label_counts={(class_names[int(values[i])] if values[i] < len(class_names) else str(values[i])):
                              int(counts[i]) for i in top[:5]})
        else:
            record.update(dominant_label=None, dominant_label_name=None, purity=None, label_counts={})
        record["central_rows"] = [int(r) for r in order[:examples]]
        record["outlying_rows"] = [int(r) for r in order[::-1][:examples]]
        record["central_ids"] = [ids[r] for r in record["central_rows"]]
        record["outlying_ids"] = [ids[r] for r in record["outlying_rows"]]
        records.append(record)
    return sorted(records, key=lambda r: (-r["size"], r["cluster"]))


def cluster_run(run: Run, *, device: str = "cpu", progress: Progress = None, k: int | None = None,
                seed: int = 0, niter: int = 25, nredo: int = 3, pca_dims: int = 32,
                min_cluster_size: int | None = None, min_samples: int | None = 10,
                examples: int = 16) -> dict[str, Any]:
    """k-means and HDBSCAN of all of `run`'s embeddings; writes analysis/clusters.npz and
    analysis/clusters.json (see the module docstring) and returns the summary. `device` "cuda"
    trains k-means on the GPU when FAISS has GPU support."""
    report = progress or (lambda fraction, text: None)
    report(0.0, "loading embeddings")
    vectors, labels, ids, splits = load_all_embeddings(run)
    n, dim = vectors.shape
    if n < 2:
        raise ValueError(f"run {run.id} has {n} embedding(s); clustering needs at least 2")
    class_names = run.read_class_names()
    labelled = bool((labels >= 0).any())
    num_classes = len(class_names) if class_names else (int(labels.max()) + 1 if labelled else 0)
    if k is None:
        k, k_rule = default_k(n, num_classes if labelled else 0)
    else:
        k_rule = "given"
    x = normalized(vectors)
    use_gpu = str(device).startswith("cuda") and faiss_gpu_available()
    seconds: dict[str, float] = {}

    report(0.05, f"k-means, k={k}")
    started = time.perf_counter()
    with small_set_threads(n):
        km_labels, km_distance, centroids = kmeans(x, k, seed=seed, niter=niter, nredo=nredo, use_gpu=use_gpu)
    seconds["kmeans"] = round(time.perf_counter() - started, 3)

    report(0.35, "HDBSCAN")
    started = time.perf_counter()
    with small_set_threads(n):
        hdb_labels, hdb_settings = hdbscan(x, pca_dims=pca_dims, min_cluster_size=min_cluster_size,
                                           min_samples=min_samples, seed=seed)
    hdb_distance = distance_to_cluster_mean(x, hdb_labels)
    seconds["hdbscan"] = round(time.perf_counter() - started, 3)

    report(0.9, "summarising")
    import sklearn  # heavy (~0.5 s): scikit-learn is imported only when this runs

    summary: dict[str, Any] = {
        "name": NAME, "run_id": run.id, "num_rows": int(n), "dim": int(dim), "rows": "train then test",
        "num_train": int((splits == "train").sum()), "labelled": labelled, "num_classes": int(num_classes),
        "class_names": class_names,
        "settings": {
            "seed": seed, "examples_per_cluster": examples, "input": "L2-normalised embeddings",
            "kmeans": {"k": int(k), "k_rule": k_rule, "niter": niter, "nredo": nredo, "spherical": True,
                       "metric": "cosine", "max_train_rows": KMEANS_MAX_TRAIN_ROWS,
                       "device": "cuda" if use_gpu else "cpu"},
            "hdbscan": {**hdb_settings, "pca_seed": seed},
        },
        "kmeans": {"num_clusters": int(len(np.unique(km_labels))), **agreement(km_labels, labels),
                   "clusters": describe_clusters(km_labels, km_distance, labels, ids, class_names, examples)},
        "hdbscan": {"num_clusters": int(len(np.unique(hdb_labels[hdb_labels >= 0]))),
                    "noise_rows": int((hdb_labels < 0).sum()),
                    "noise_fraction": round(float((hdb_labels < 0).mean()), 4),
                    **agreement(hdb_labels, labels),
                    "clusters": describe_clusters(hdb_labels, hdb_distance, labels, ids, class_names, examples)},
        "scored_on": ("labelled rows; for HDBSCAN only the rows not marked noise" if labelled else
                      "no labels: purity, NMI and ARI need labels, so the clusters are not scored against any"),
        "seconds": seconds,
        "versions": {"faiss": faiss.__version__, "scikit-learn": sklearn.__version__, "numpy": np.__version__},
    }
    store_result(run, NAME, summary, kmeans_labels=km_labels, kmeans_distance=km_distance,
                 kmeans_centroids=centroids, hdbscan_labels=hdb_labels, hdbscan_distance=hdb_distance,
                 labels=labels.astype(np.int64))
    report(1.0, "clusters stored")
    return summary


def has_clusters(run: Run) -> bool:
    return has_stored(run, NAME)


def load_clusters(run: Run) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(clusters.json, the arrays of clusters.npz) as `cluster_run` stored them."""
    return load_stored(run, NAME, "clusters", per_row=("kmeans_labels", "kmeans_distance", "hdbscan_labels",
                                                         "hdbscan_distance", "labels"))


KMEANS_FACTOR = "k-means cluster"
HDBSCAN_FACTOR = "HDBSCAN cluster"


def with_cluster_factors(data, summary: dict[str, Any], arrays: dict[str, np.ndarray]):
    """`data` (an ExploreData, rows train then test) with the stored clusters added as two
    categorical factors, so the map can be coloured by them; `data` itself is not changed."""
    kmeans_labels, hdbscan_labels = arrays["kmeans_labels"], arrays["hdbscan_labels"]
    if len(kmeans_labels) != len(data.ids):
        raise ValueError(f"run {data.run_id}: the stored clusters cover {len(kmeans_labels)} rows, the map "
                         f"{len(data.ids)}; run `{COMMAND.format(run_id=data.run_id)}` again")
    k = int(summary["settings"]["kmeans"]["k"])
    num_hdbscan = int(hdbscan_labels.max()) + 1 if len(hdbscan_labels) else 0
    factors = {**data.factors, KMEANS_FACTOR: kmeans_labels, HDBSCAN_FACTOR: hdbscan_labels + 1}
    levels = {**data.factor_levels, KMEANS_FACTOR: tuple(f"cluster {c}" for c in range(k)),
              HDBSCAN_FACTOR: ("noise", *(f"cluster {c}" for c in range(num_hdbscan)))}
    return replace(data, factors=factors, factor_levels=levels)
