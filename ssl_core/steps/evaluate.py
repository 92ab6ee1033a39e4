"""Scores of a representation on held-out images: weighted kNN and a linear probe.

Both treat the encoder as frozen and read only stored embeddings, so scoring a run never
retrains or re-embeds it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.runs import Run
from ssl_core.steps.embed import load_embeddings

KNN_K = 20  # neighbours of eval.json's knn_top1 (and of the analyses that compare with it), as in DINO


def knn_predict(bank: torch.Tensor | np.ndarray, bank_labels: torch.Tensor | np.ndarray,
                queries: torch.Tensor | np.ndarray, *, num_classes: int, k: int = 20,
                temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Labels (M,) predicted by the weighted kNN classifier of InstDisc (Wu et al. 2018) and DINO.

    bank (N, D) with bank_labels (N,); queries (M, D). Cosine similarity; each of the k nearest
    bank vectors votes for its label with weight exp(sim / temperature); unlabelled bank vectors
    (label < 0) do not vote.
    """
    bank = F.normalize(torch.as_tensor(bank).float(), dim=1)
    queries = F.normalize(torch.as_tensor(queries).float(), dim=1)
    bank_labels = torch.as_tensor(bank_labels).long()
    if len(bank) == 0:
        raise ValueError("kNN needs a non-empty bank")
    k = min(k, len(bank))
    predictions = []
    for start in range(0, len(queries), chunk):
        sims, nearest = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(sims), num_classes)
        votes.scatter_add_(1, bank_labels[nearest].clamp_min(0), weights * (bank_labels[nearest] >= 0))
        predictions.append(votes.argmax(1))
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def weighted_knn(bank: torch.Tensor | np.ndarray, bank_labels: torch.Tensor | np.ndarray,
                 queries: torch.Tensor | np.ndarray, query_labels: torch.Tensor | np.ndarray, *,
                 num_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Top-1 accuracy of `knn_predict` on the labelled queries (label < 0 is not scored)."""
    query_labels = torch.as_tensor(query_labels).long()
    known = query_labels >= 0
    if not bool(known.any()) or len(bank) == 0:
        raise ValueError("kNN accuracy needs labelled queries and a non-empty bank")
    predicted = knn_predict(bank, bank_labels, torch.as_tensor(queries)[known], num_classes=num_classes, k=k,
                            temperature=temperature, chunk=chunk)
    return float((predicted == query_labels[known]).float().mean())


def few_shot_subset(labels: np.ndarray, share: float, seed: int = 0) -> np.ndarray:
    """Indices of a class-balanced `share` of the labelled rows, at least one per class: the
    labels a user with few annotations would have."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels[labels >= 0]):
        rows = np.flatnonzero(labels == c)
        picked.append(rng.choice(rows, max(1, round(share * len(rows))), replace=False))
    return np.sort(np.concatenate(picked))


def confusion(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Confusion matrix (rows: true class, columns: predicted) and each class's accuracy
    (None for a class with no test images)."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    totals = matrix.sum(axis=1)
    per_class = [round(float(matrix[c, c] / totals[c]), 4) if totals[c] else None for c in range(num_classes)]
    return {"confusion_knn": matrix.tolist(), "per_class_knn_top1": per_class}


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 *, max_iter: int = 1000, seed: int = 0) -> float:
    """Top-1 accuracy of a multinomial logistic regression on standardized frozen features."""
    from sklearn.linear_model import LogisticRegression  # heavy (~0.5 s): scikit-learn is imported only when this runs
    from sklearn.pipeline import make_pipeline  # heavy (~0.5 s): scikit-learn is imported only when this runs
    from sklearn.preprocessing import StandardScaler  # heavy (~0.5 s): scikit-learn is imported only when this runs

    keep_train, keep_test = train_y >= 0, test_y >= 0
    if len(np.unique(train_y[keep_train])) < 2 or not keep_test.any():
        raise ValueError("a linear probe needs at least 2 labelled classes in train and labelled test images")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(train_x[keep_train], train_y[keep_train])
    return float(probe.score(test_x[keep_test], test_y[keep_test]))


# An embedding whose effective rank falls below this share of its dimension is reported as
# collapsing. On the CPU methods benchmark it flags MAE at 150 steps (4 of 192) and nothing that
# learns (the lowest learning row, I-JEPA, is at 11 of 192; random init is 20-128 of its width).
COLLAPSE_RANK_SHARE = 0.05


def effective_rank(vectors: np.ndarray) -> float:
    """RankMe (Garrido et al. 2023; Roy & Vetterli 2007): exp of the entropy of the normalized
    singular values of the centred (N, D) embeddings. 1 for a collapsed embedding, D for one that
    spreads evenly over all D dimensions."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    singular = np.linalg.svd(x, compute_uv=False)
    p = singular / max(singular.sum(), 1e-12)
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def uniformity(vectors: np.ndarray, t: float = 2.0, max_points: int = 2000, seed: int = 0) -> float:
    """log E exp(-t ||u - v||^2) over pairs of L2-normalized embeddings (Wang & Isola 2020):
    0 when all points coincide, lower (more negative) the more evenly they cover the sphere."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) > max_points:
        x = x[np.random.default_rng(seed).choice(len(x), max_points, replace=False)]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sq = np.clip(2 - 2 * x @ x.T, 0, None)[np.triu_indices(len(x), k=1)]
    return float(np.log(np.mean(np.exp(-t * sq))))


def geometry(vectors: np.ndarray, max_points: int = 5000) -> dict[str, Any]:
    """Label-free health of an embedding: effective rank, uniformity, and a collapse warning."""
    x = np.asarray(vectors, dtype=np.float64)[:max_points]
    rank = effective_rank(x)
    out: dict[str, Any] = {"effective_rank": round(rank, 2), "uniformity": round(uniformity(x), 4)}
    if rank < COLLAPSE_RANK_SHARE * x.shape[1]:
        out["collapse_warning"] = (f"effective rank {rank:.1f} of {x.shape[1]} dimensions: the embedding is "
                                   "collapsing onto a few directions; train longer, or check the method's settings")
    return out


# eval.json's note on a run without labels (in its train split, its test split, or both).
NO_LABELS_NOTE = ("no labels: kNN and linear-probe scores need labelled train and test images, which this "
                  "dataset lacks; effective rank and uniformity need no labels")


# Splits larger than these are scored on a seeded sample of their rows. A million imported rows
# (800,000 train, 200,000 test) took minutes of brute-force kNN (200,000 x 800,000 similarities,
# twice) and of the linear probe's fit on 2 CPU cores; a sample of these sizes scores in seconds,
# with a standard error of under 0.5 points on the test accuracy. Runs below them are scored whole.
MAX_SCORED_TRAIN = 100_000
MAX_SCORED_TEST = 10_000


def _scored_rows(n: int, most: int, seed: int) -> np.ndarray:
    """All n rows, or a seeded sample of `most` of them in ascending order."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=most, replace=False))


def evaluate_run(run: Run) -> dict[str, Any]:
    """Score the run's stored embeddings and write eval.json; returns the scores. Splits above
    MAX_SCORED_TRAIN / MAX_SCORED_TEST rows are scored on a sample (`scored_train`, `scored_test`)."""
    train_x, train_y, _ = load_embeddings(run, "train")
    test_x, test_y, _ = load_embeddings(run, "test")
    num_train, num_test = len(train_x), len(test_x)
    seed = run.config.train.seed
    train_rows, test_rows = _scored_rows(num_train, MAX_SCORED_TRAIN, seed), _scored_rows(num_test, MAX_SCORED_TEST, seed)
    if len(train_rows) < num_train or len(test_rows) < num_test:
        train_x, train_y, test_x, test_y = train_x[train_rows], train_y[train_rows], test_x[test_rows], test_y[test_rows]
    labelled = bool((train_y >= 0).any() and (test_y >= 0).any())
    num_classes = int(max(train_y.max(initial=-1), test_y.max(initial=-1))) + 1
    scores: dict[str, Any] = {"run_id": run.id, "method": run.config.method.get("name"),
                              "dataset": run.config.data.dataset, "num_train": num_train,
                              "num_test": num_test, "embedding_dim": int(train_x.shape[1])}
    if len(train_rows) < num_train or len(test_rows) < num_test:
        scores.update(scored_train=len(train_rows), scored_test=len(test_rows))
    if labelled:
        t0 = time.perf_counter()
        known = test_y >= 0
        # k=KNN_K predictions once: they give both top-1 and the confusion matrix.
        predicted = knn_predict(train_x, train_y, test_x[known], num_classes=num_classes, k=KNN_K).numpy()
        knn20 = round(float((predicted == test_y[known]).mean()), 4)
        knn200 = round(weighted_knn(train_x, train_y, test_x, test_y, num_classes=num_classes, k=200), 4)
        scores.update(knn_top1=knn20, knn_top1_k20=knn20, knn_top1_k200=knn200)
        scores.update(confusion(test_y[known], predicted, num_classes))
        scores["linear_top1"] = round(linear_probe(train_x, train_y, test_x, test_y, seed=run.config.train.seed), 4)
        for share in (0.01, 0.1):  # few-shot probes: 1% and 10% of the train labels
            rows = few_shot_subset(train_y, share, seed=run.config.train.seed)
            key = f"linear_top1_{round(share * 100)}pct"
            scores[key] = (round(linear_probe(train_x[rows], train_y[rows], test_x, test_y,
                                              seed=run.config.train.seed), 4)
                           if len(np.unique(train_y[rows])) > 1 else None)
        scores["seconds"] = round(time.perf_counter() - t0, 2)
    else:  # a folder of unlabelled images: the label-free scores below stand in for these
        scores.update(knn_top1=None, linear_top1=None, note=NO_LABELS_NOTE)
    scores["labelled"] = labelled
    scores.update(geometry(test_x))
    atomic_write_json(run.eval_path, scores)
    return scores


def linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear centered kernel alignment of two representations of the same N images (Kornblith
    et al. 2019, "Similarity of Neural Network Representations Revisited", eq. 5).

    a (N, D1), b (N, D2) -> ||B^T A||_F^2 / (||A^T A||_F ||B^T B||_F) on column-centered features:
    1 for representations equal up to rotation and isotropic scaling, 0 for unrelated ones.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
        raise ValueError(f"CKA needs two (N, D) arrays over the same N images; got {a.shape} and {b.shape}")
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    cross = np.linalg.norm(b.T @ a) ** 2
    return float(cross / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))
