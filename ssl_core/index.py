"""Nearest-neighbour search over a run's embeddings with FAISS (cosine similarity).

Rows are train then test, the order of the map, so "row 17" is one image everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ssl_core.runs import Run


def _normalized(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def build_index(vectors: np.ndarray):
    """An exact inner-product index over L2-normalized vectors: scores are cosine similarities."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(_normalized(vectors))
    return index


def index_run(run: Run) -> dict[str, Any]:
    """Write index/faiss.index over all of the run's embeddings."""
    import faiss

    from ssl_core.embed import load_all_embeddings

    vectors, *_ = load_all_embeddings(run)
    index = build_index(vectors)
    run.index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = run.index_path.with_name(".faiss.index.tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(run.index_path)
    return {"kind": "IndexFlatIP", "metric": "cosine", "num_vectors": index.ntotal, "dim": index.d}


def load_index(run: Run):
    import faiss

    if not run.index_path.exists():
        raise FileNotFoundError(f"run {run.id} has no search index yet; run `ssl-explorer index {run.id}`")
    return faiss.read_index(str(run.index_path))


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, D) query vectors -> (cosine distances (M, k), row numbers (M, k)), nearest first."""
    sims, rows = index.search(_normalized(np.atleast_2d(queries)), k)
    return 1.0 - sims, rows


def neighbors(run: Run, row: int, k: int = 8) -> dict[str, Any]:
    """The k nearest images to the image at `row` (itself excluded), with ids, labels, distances."""
    from ssl_core.embed import load_all_embeddings

    vectors, labels, ids, splits = load_all_embeddings(run)
    if not 0 <= row < len(vectors):
        raise IndexError(f"index {row} is out of range: run {run.id} has {len(vectors)} images (0..{len(vectors) - 1})")
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    from ssl_core.explore import Search

    class_names = _class_names(run)
    rows, distances = Search(index=load_index(run), vectors=vectors).of_row(row, k)

    def describe(r: int, distance: float | None = None) -> dict[str, Any]:
        label = int(labels[r])
        item = {"row": int(r), "id": ids[r], "split": str(splits[r]), "label": label,
                "label_name": class_names[label] if 0 <= label < len(class_names) else None}
        if distance is not None:
            item["distance"] = round(float(distance), 6)
        return item

    hits = [describe(r, d) for r, d in zip(rows, distances)]
    return {"run_id": run.id, "query": describe(row), "k": k, "metric": "cosine distance",
            "same_label": sum(h["label"] == int(labels[row]) for h in hits), "neighbors": hits}


def _class_names(run: Run) -> list[str]:
    import json

    path = run.embeddings_dir / "class_names.json"
    return json.loads(path.read_text()) if path.exists() else []
