"""How alike two runs' representations of the same images are: linear CKA and k-NN overlap.

Both compare rows image by image, so the two runs must hold the same images: the same dataset
and split settings, which the stored ids check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssl_core.evaluate import linear_cka
from ssl_core.runs import Run


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each image's k nearest neighbours (cosine, itself excluded) that the two
    representations agree on: 1 when they rank neighbours alike, about k/N for unrelated ones.
    a (N, D1), b (N, D2)."""
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"k-NN overlap needs two (N, D) arrays over the same N images; got {a.shape} and {b.shape}")
    if not 1 <= k < len(a):
        raise ValueError(f"k must be between 1 and N - 1 = {len(a) - 1}; got {k}")
    from ssl_core.index import build_index

    def neighbours(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        _, rows = build_index(x).search(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), k + 1)
        # Drop each image itself; with duplicate vectors it need not come first, so drop by value.
        return np.array([[j for j in row if j != i][:k] for i, row in enumerate(rows)])

    na, nb = neighbours(a), neighbours(b)
    shared = [len(set(ra) & set(rb)) for ra, rb in zip(na, nb)]
    return float(np.mean(shared) / k)


def compare_runs(run_a: Run, run_b: Run, *, k: int = 10, max_images: int = 5000) -> dict[str, Any]:
    """CKA and k-NN overlap of two runs on their shared held-out images (the test split, at most
    `max_images` of them, in stored order)."""
    from ssl_core.embed import load_embeddings

    a, _, ids_a = load_embeddings(run_a, "test")
    b, _, ids_b = load_embeddings(run_b, "test")
    if ids_a != ids_b:
        raise ValueError(f"runs {run_a.id} and {run_b.id} did not embed the same test images "
                         f"({len(ids_a)} and {len(ids_b)} ids, in a different order or set); "
                         "compare runs made on the same dataset with the same split settings")
    n = min(len(a), max_images)
    a, b = a[:n], b[:n]
    return {"run_a": run_a.id, "run_b": run_b.id, "images": n, "split": "test",
            "cka": round(linear_cka(a, b), 4), "knn_overlap": round(knn_overlap(a, b, k), 4), "k": k}
