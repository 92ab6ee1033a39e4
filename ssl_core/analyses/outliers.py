"""Outliers and near-duplicates of a run's embeddings, computed on request and stored.

Outlier score of a row: the mean cosine distance to its k nearest other rows (k=10 by default,
the row itself excluded), over every row (train then test) in the run's cosine geometry. A row
far from everything scores high; a row inside a dense group scores near 0.

Near-duplicates: pairs of rows (i < j) whose cosine similarity is at least `threshold` (0.98 by
default), found by a range search. Both searches use the run's usual index (ssl_core.steps.index:
exact up to a million rows, IVF above). Only the `max_pairs` most similar pairs are stored;
how many there were in all is recorded too.

    analysis/outliers.npz    score (N,), rank (rows, highest score first), pairs (P, 2) and
                             pair_similarity (P,), most similar first
    analysis/outliers.json   the settings, score statistics, the top outliers (row, id, split,
                             score, label) and the stored pairs

`ssl-explorer analyze RUN_ID --only outliers` computes them; the app only reads them and
filters the stored pairs by a higher threshold if asked.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

import faiss
import numpy as np

from ssl_core.analyses.clusters import normalized, small_set_threads
from ssl_core.analyses.stored import has_stored, load_stored, store_result
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import build_index, describe_index
from ssl_core.store.runs import Run

NAME = "outliers"
RANGE_SEARCH_RESULTS = 1 << 22  # query rows per range search: at most ~4M (row, row) results at once

Progress = Callable[[float, str], None] | None


def knn_scores(x: np.ndarray, k: int, index=None) -> tuple[np.ndarray, np.ndarray]:
    """(mean cosine distance of each row to its k nearest other rows (N,), those rows (N, k)) for
    L2-normalised rows `x`, searched in `index` (default: ssl_core.steps.index.build_index(x), exact up
    to a million rows). The row itself is dropped even when exact duplicates tie with it."""
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and the number of rows minus one ({n - 1}); got {k}")
    index = build_index(x) if index is None else index
    similarity, rows = index.search(x, k + 1)
    other = rows != np.arange(n)[:, None]
    # Keep the first k entries that are not the row itself, in order (a stable sort of "is self").
    order = np.argsort(~other, axis=1, kind="stable")[:, :k]
    similarity = np.take_along_axis(similarity, order, axis=1)
    rows = np.take_along_axis(rows, order, axis=1)
    return (1.0 - similarity).mean(axis=1).astype(np.float32), rows


def near_duplicates(x: np.ndarray, threshold: float, max_pairs: int,
                    index=None) -> tuple[np.ndarray, np.ndarray, int]:
    """(pairs (P, 2) with i < j, their cosine similarities (P,), the number of such pairs in all)
    for L2-normalised rows `x`: the `max_pairs` most similar pairs at or above `threshold`, by a
    range search in `index` (default: ssl_core.steps.index.build_index(x))."""
    n = len(x)
    index = build_index(x) if index is None else index
    step = max(1, RANGE_SEARCH_RESULTS // max(n, 1))
    kept_pairs = np.zeros((0, 2), dtype=np.int64)
    kept_sims = np.zeros(0, dtype=np.float32)
    total = 0
    # faiss's range search keeps results strictly above its radius: nudge it down by one float step
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    for start in range(0, n, step):
        limits, sims, rows = index.range_search(x[start:start + step], radius)
        queries = start + np.repeat(np.arange(len(limits) - 1), np.diff(limits.astype(np.int64)))
        keep = (queries < rows) & (sims >= threshold)
        total += int(keep.sum())
        pairs = np.stack([queries[keep], rows[keep]], axis=1)
        kept_pairs = np.concatenate([kept_pairs, pairs])
        kept_sims = np.concatenate([kept_sims, sims[keep].astype(np.float32)])
        if len(kept_sims) > max_pairs:  # keep only the most similar, so memory stays bounded
            top = np.argpartition(-kept_sims, max_pairs - 1)[:max_pairs]
            kept_pairs, kept_sims = kept_pairs[top], kept_sims[top]
    order = np.lexsort((kept_pairs[:, 1], kept_pairs[:, 0], -kept_sims))  # most similar first, then by row
    return kept_pairs[order], np.minimum(kept_sims[order], 1.0), total


def outlier_run(run: Run, *, device: str = "cpu", progress: Progress = None, k: int = 10,
                threshold: float = 0.98, max_pairs: int = 2000, top: int = 200) -> dict[str, Any]:
    """Outlier scores and near-duplicate pairs of all of `run`'s embeddings; writes
    analysis/outliers.npz and analysis/outliers.json (see the module docstring) and returns the
    summary. `device` is accepted for the shared interface of analyses: ssl_core.steps.index decides
    where the index is built."""
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity between -1 and 1; got {threshold}")
    if max_pairs < 1 or top < 1:
        raise ValueError(f"max_pairs and top must be at least 1; got {max_pairs} and {top}")
    report = progress or (lambda fraction, text: None)
    report(0.0, "loading embeddings")
    vectors, labels, ids, splits = load_all_embeddings(run)
    n = len(vectors)
    if n < 2:
        raise ValueError(f"run {run.id} has {n} embedding(s); outlier scores need at least 2")
    k = min(k, n - 1)
    class_names = run.read_class_names()
    x = normalized(vectors)
    seconds: dict[str, float] = {}

    report(0.05, f"{k} nearest neighbours of every row")
    started = time.perf_counter()
    with small_set_threads(n):
        index = build_index(x)
        score, _ = knn_scores(x, k, index)
    rank = np.argsort(-score, kind="stable")
    seconds["scores"] = round(time.perf_counter() - started, 3)

    report(0.5, f"pairs at cosine similarity >= {threshold}")
    started = time.perf_counter()
    with small_set_threads(n):
        pairs, similarity, found = near_duplicates(x, threshold, max_pairs, index)
    seconds["duplicates"] = round(time.perf_counter() - started, 3)

    def label_of(row: int) -> tuple[int, str | None]:
        label = int(labels[row])
        return label, (class_names[label] if 0 <= label < len(class_names) else None)

    def describe(row: int) -> dict[str, Any]:
        label, name = label_of(row)
        return {"row": int(row), "id": ids[row], "split": str(splits[row]), "score": round(float(score[row]), 6),
                "label": label, "label_name": name}

    pair_records = []
    for (a, b), sim in zip(pairs, similarity):
        pair_records.append({"a": int(a), "b": int(b), "similarity": round(float(sim), 6),
                             "id_a": ids[a], "id_b": ids[b], "label_a": label_of(a)[0], "label_b": label_of(b)[0],
                             "label_name_a": label_of(a)[1], "label_name_b": label_of(b)[1]})

    summary: dict[str, Any] = {
        "name": NAME, "run_id": run.id, "num_rows": int(n), "dim": int(vectors.shape[1]),
        "rows": "train then test", "num_train": int((splits == "train").sum()),
        "settings": {"k": int(k), "score": "mean cosine distance to the k nearest other rows",
                     "index": describe_index(index),
                     "threshold": float(threshold), "max_pairs": int(max_pairs), "top": int(top)},
        "score_stats": {"mean": round(float(score.mean()), 6), "median": round(float(np.median(score)), 6),
                        "p99": round(float(np.quantile(score, 0.99)), 6), "max": round(float(score.max()), 6)},
        "top_outliers": [describe(r) for r in rank[:top]],
        "duplicates": {"threshold": float(threshold), "pairs_found": found, "pairs_stored": len(pair_records),
                       "capped": found > len(pair_records), "pairs": pair_records},
        "seconds": seconds,
        "versions": {"faiss": faiss.__version__, "numpy": np.__version__},
    }
    store_result(run, NAME, summary, score=score, rank=rank.astype(np.int64),
                 pairs=pairs.astype(np.int64).reshape(-1, 2), pair_similarity=similarity.astype(np.float32))
    report(1.0, "outliers stored")
    return summary


def has_outliers(run: Run) -> bool:
    return has_stored(run, NAME)


def load_outliers(run: Run) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(outliers.json, the arrays of outliers.npz) as `outlier_run` stored them."""
    return load_stored(run, NAME, "outlier scores", per_row=("score", "rank"))


OUTLIER_FACTOR = "outlier score"


def with_outlier_score(data, arrays: dict[str, np.ndarray]):
    """`data` (an ExploreData, rows train then test) with the stored outlier scores added as a
    continuous factor, so the map can be coloured by them; `data` itself is not changed."""
    score = np.asarray(arrays["score"], dtype=np.float32)
    if len(score) != len(data.ids):
        raise ValueError(f"run {data.run_id}: the stored outlier scores cover {len(score)} rows, the map "
                         f"{len(data.ids)}; run `ssl-explorer analyze {data.run_id} --only outliers` again")
    return replace(data, factors={**data.factors, OUTLIER_FACTOR: score})


def pairs_above(summary: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """The stored near-duplicate pairs at or above `threshold` (which can only narrow the stored
    set: pairs below the threshold used when computing were never stored)."""
    return [p for p in summary["duplicates"]["pairs"] if p["similarity"] >= threshold]
