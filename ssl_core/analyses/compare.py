"""Several runs side by side: how alike their representations of the same images are (linear CKA,
k-NN overlap), their maps brought into one frame (Procrustes), and their scores in one table.

Everything compares rows image by image, so the runs must hold the same images: the same
dataset and split settings, which the stored ids check (`ids_signature`, `check_comparable`).
Rows are train then test everywhere, as `load_all_embeddings`, the map and the index hold them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from ssl_core.analyses.runner import JOB_FILE
from ssl_core.analyses.stored import read_result
from ssl_core.steps.alignment import align_map
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import linear_cka
from ssl_core.steps.index import build_index
from ssl_core.steps.projection import load_map
from ssl_core.steps.readiness import comparable, embedded, refuse
from ssl_core.store import files
from ssl_core.store.reading import is_number
from ssl_core.store.runs import Run


def _neighbour_lists(x: np.ndarray, k: int) -> np.ndarray:
    """(N, k) rows of each row's k nearest neighbours by cosine, itself excluded."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    _, rows = build_index(x).search(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), k + 1)
    # Drop each image itself; with duplicate vectors it need not come first, so drop by value.
    return np.array([[j for j in row if j != i][:k] for i, row in enumerate(rows)])


def _shared_share(na: np.ndarray, nb: np.ndarray) -> float:
    shared = [len(set(ra) & set(rb)) for ra, rb in zip(na, nb)]
    return float(np.mean(shared) / na.shape[1])


def knn_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each image's k nearest neighbours (cosine, itself excluded) that the two
    representations agree on: 1 when they rank neighbours alike, about k/N for unrelated ones.
    a (N, D1), b (N, D2)."""
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"k-NN overlap needs two (N, D) arrays over the same N images; got {a.shape} and {b.shape}")
    if not 1 <= k < len(a):
        raise ValueError(f"k must be between 1 and N - 1 = {len(a) - 1}; got {k}")
    return _shared_share(_neighbour_lists(a, k), _neighbour_lists(b, k))


def compare_runs(run_a: Run, run_b: Run, *, k: int = 10, max_images: int = 5000) -> dict[str, Any]:
    """CKA and k-NN overlap of two runs on their shared held-out images (the test split, at most
    `max_images` of them, in stored order)."""
    for run in (run_a, run_b):
        refuse(embedded(run))
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


# -- several runs over the same images --------------------------------------------------------
def ids_signature(run: Run) -> str:
    """A digest of the run's stored image ids (train then test, in order): two runs can be
    compared row by row exactly when their signatures are equal."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        path = run.embeddings_dir / files.ids(split)
        try:
            ids = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"run {run.id} has no {split} embeddings; run `ssl-explorer embed {run.id}`") from None
        digest.update(f"{split}:{len(ids)}:".encode())
        digest.update("\n".join(map(str, ids)).encode())
    return digest.hexdigest()


def check_comparable(runs: list[Run]) -> None:
    """ValueError when `runs` cannot be compared side by side: a run not ready to
    (`readiness.comparable`, the Compare page's reason), or runs that hold other images than the
    first run (another dataset, other split settings), so their rows differ image by image."""
    if len(runs) < 2:
        raise ValueError(f"a comparison needs at least 2 runs; got {len(runs)}")
    if len({run.id for run in runs}) != len(runs):
        raise ValueError(f"a run is named twice: {', '.join(run.id for run in runs)}")
    for run in runs:
        refuse(comparable(run))
    first = ids_signature(runs[0])
    others = [run.id for run in runs[1:] if ids_signature(run) != first]
    if others:
        raise ValueError(f"run(s) {', '.join(others)} did not embed the same images as {runs[0].id} "
                         f"({runs[0].config.data.dataset}); compare runs made on the same dataset with the "
                         "same split settings")


def aligned_maps(runs: list[Run]) -> list[tuple[np.ndarray, str]]:
    """Each run's 2-D map (UMAP, else PCA: `project.load_map`) as (coords, kind), every map after
    the first aligned onto the first, so that the same image sits in about the same place."""
    maps = [load_map(run) for run in runs]
    reference = maps[0][0]
    for run, (coords, _) in zip(runs, maps):
        if len(coords) != len(reference):
            raise ValueError(f"run {run.id}'s map has {len(coords)} points and {runs[0].id}'s {len(reference)}; "
                             f"run `ssl-explorer project {run.id}`")
    return [(reference.astype(np.float32), maps[0][1])] + [(align_map(c, reference), kind) for c, kind in maps[1:]]


def compare_many(runs: list[Run], *, k: int = 10, max_images: int = 5000) -> dict[str, Any]:
    """CKA and k-NN overlap of every pair of `runs` on their shared test images (at most
    `max_images`, in stored order): {"runs", "images", "k", "cka", "knn_overlap"}, the two
    matrices as nested lists (symmetric, 1 on the diagonal)."""
    if not runs:
        raise ValueError("compare_many needs at least one run")
    vectors, ids = [], None
    for run in runs:
        x, _, run_ids = load_embeddings(run, "test")
        if ids is not None and run_ids != ids:
            raise ValueError(f"runs {runs[0].id} and {run.id} did not embed the same test images; "
                             "compare runs made on the same dataset with the same split settings")
        ids = run_ids
        vectors.append(x[:max_images])
    n = len(vectors[0])
    if not 1 <= k < n:
        raise ValueError(f"k must be between 1 and the number of test images - 1 = {n - 1}; got {k}")
    neighbours = [_neighbour_lists(x, k) for x in vectors]
    size = len(runs)
    cka, overlap = np.eye(size), np.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            cka[i, j] = cka[j, i] = linear_cka(vectors[i], vectors[j])
            overlap[i, j] = overlap[j, i] = _shared_share(neighbours[i], neighbours[j])
    return {"runs": [run.id for run in runs], "images": n, "k": k, "split": "test",
            "cka": np.round(cka, 4).tolist(), "knn_overlap": np.round(overlap, 4).tolist()}


# -- scores side by side ----------------------------------------------------------------------
# The scores a comparison shows, in order: (key, label, which way is better). None: a property,
# not a score (a larger effective rank is not better in itself: a random encoder's is high).
SCORES: tuple[tuple[str, str, str | None], ...] = (
    ("knn_top1", "kNN top-1", "higher"),
    ("linear_top1", "linear top-1", "higher"),
    ("linear_top1_1pct", "few-shot linear top-1 (1% labels)", "higher"),
    ("linear_top1_10pct", "few-shot linear top-1 (10% labels)", "higher"),
    ("effective_rank", "effective rank", None),
    ("uniformity", "uniformity", None),
    ("images_per_s", "training images/s", "higher"),
)
DIRECTION_NOTES = {
    "effective_rank": "not ranked: higher means the embedding spreads over more dimensions",
    "uniformity": "not ranked: lower means the points cover the sphere more evenly",
}


# Top-level numbers of an analysis that describe its input, not the representation.
SIZE_FIELDS = frozenset({"dim", "num_rows", "num_train", "num_test", "num_classes"})


def run_scores(run: Run) -> dict[str, float]:
    """Every scalar score of a run: eval.json's numbers, the mean training images/s from
    metrics.jsonl, and the analyses stored under analysis/: fine-tuning as
    `finetune_<mode>_top1`, the layer-wise probe as `layer_<layer>_top1`, the factor probe as
    `factor_<factor>` (R^2, or accuracy for a categorical factor), clusters as
    `kmeans_purity|nmi|ari` and `hdbscan_...`, and any other top-level number as `<analysis>_<key>`."""
    scores: dict[str, float] = {}
    for key, value in (run.read_eval() or {}).items():
        if is_number(value):
            scores[key] = value
    speeds = [m["images_per_s"] for m in run.read_metrics() if is_number(m.get("images_per_s"))]
    if speeds:
        scores["images_per_s"] = round(float(np.mean(speeds)), 1)
    folder = run.analysis_dir
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name == JOB_FILE:  # the analysis job's progress (its pid, its fraction): no score
            continue
        name = path.stem
        result = read_result(run, name)
        if result is None:
            continue  # being rewritten or broken: the analysis page reports it
        # The list-shaped results, one column per entry: fine-tuning modes, probe layers, factors.
        for key, entries, field, column in (("finetune", "modes", "top1", "finetune_{}_top1"),
                                            ("layers", "layers", "linear_top1", "layer_{}_top1"),
                                            ("factors", "factors", "score", "factor_{}")):
            if name == key:
                for entry in result.get(entries) or []:
                    label = entry.get("mode" if key == "finetune" else "name") if isinstance(entry, dict) else None
                    if label and is_number(entry.get(field)):
                        scores[column.format(label)] = entry[field]
        if name == "clusters":
            for algorithm in ("kmeans", "hdbscan"):
                for measure in ("purity", "nmi", "ari"):
                    value = (result.get(algorithm) or {}).get(measure)
                    if is_number(value):
                        scores[f"{algorithm}_{measure}"] = value
        for key, value in result.items():
            if is_number(value) and key not in SIZE_FIELDS:
                scores[f"{name}_{key}"] = value
    return scores


def score_rows(scores: list[dict[str, float]]) -> list[tuple[str, str, str | None]]:
    """The SCORES rows plus one per fine-tuning mode present in any of `scores`."""
    order = {"frozen": 0, "last_block": 1, "full": 2}  # least to most of the backbone trained
    modes = sorted({key for s in scores for key in s if key.startswith("finetune_") and key.endswith("_top1")},
                   key=lambda key: (order.get(key[len("finetune_"):-len("_top1")], 3), key))
    rows = list(SCORES[:4])
    rows += [(key, f"fine-tuning top-1 ({key[len('finetune_'):-len('_top1')]})", "higher") for key in modes]
    return rows + list(SCORES[4:])


def best_of(values: list[float | None], better: str | None) -> set[int]:
    """Positions holding the best value (ties all count); none when `better` is None or fewer
    than two values are present."""
    present = [(i, v) for i, v in enumerate(values) if v is not None]
    if better is None or len(present) < 2:
        return set()
    target = max(v for _, v in present) if better == "higher" else min(v for _, v in present)
    return {i for i, v in present if v == target}


def no_label_scores(run: Run) -> str | None:
    """Why eval.json holds no kNN or linear-probe score (the run's images carry no labels), or
    None when it holds them or the run is not scored yet."""
    scores = run.read_eval() or {}
    if scores.get("labelled") is False or ("knn_top1" in scores and scores["knn_top1"] is None):
        return scores.get("note") or "no labels: kNN and linear-probe scores need labelled images"
    return None


def per_class_unavailable(run: Run) -> str | None:
    """Why the run has no per-class kNN accuracy to compare, or None when eval.json holds it."""
    reason = no_label_scores(run)
    if reason:
        return reason
    if per_class_accuracy(run) is None:
        return f"not stored yet: run `ssl-explorer eval --recompute {run.id}`"
    return None


def per_class_accuracy(run: Run) -> list[float | None] | None:
    """eval.json's per-class kNN top-1 (None for a class without test images), or None when the
    run's scores predate it."""
    values = (run.read_eval() or {}).get("per_class_knn_top1")
    return values if isinstance(values, list) else None


def knn_skipped(run: Run) -> str | None:
    """Why the run's training has no kNN curve (no labels, say), as training wrote it in
    metrics.jsonl; None when it has checks, or has not reached its first yet."""
    for record in run.read_metrics():
        if isinstance(record, dict) and isinstance(record.get("knn_skipped"), str):
            return record["knn_skipped"]
    return None


def training_curve(run: Run, key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of `key` ("loss", "knn_top1", ...) over training, from metrics.jsonl;
    lines without the key are skipped, and a line without an epoch is placed by its step."""
    epochs, values = [], []
    for record in run.read_metrics():
        if is_number(record.get(key)):
            epoch = record.get("epoch", record.get("step"))
            if is_number(epoch):
                epochs.append(float(epoch))
                values.append(float(record[key]))
    return epochs, values
