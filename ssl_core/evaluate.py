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

from ssl_core.runs import Run, atomic_write_json


def weighted_knn(bank: torch.Tensor | np.ndarray, bank_labels: torch.Tensor | np.ndarray,
                 queries: torch.Tensor | np.ndarray, query_labels: torch.Tensor | np.ndarray, *,
                 num_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Top-1 accuracy of the weighted kNN classifier of InstDisc (Wu et al. 2018) and DINO.

    bank (N, D) with bank_labels (N,); queries (M, D) with query_labels (M,). Cosine similarity;
    each of the k nearest bank vectors votes for its label with weight exp(sim / temperature).
    Queries whose label is negative (unknown) are not scored.
    """
    bank = F.normalize(torch.as_tensor(bank).float(), dim=1)
    queries = F.normalize(torch.as_tensor(queries).float(), dim=1)
    bank_labels = torch.as_tensor(bank_labels).long()
    query_labels = torch.as_tensor(query_labels).long()
    known = query_labels >= 0
    queries, query_labels = queries[known], query_labels[known]
    if len(queries) == 0 or len(bank) == 0:
        raise ValueError("kNN accuracy needs labelled queries and a non-empty bank")
    k = min(k, len(bank))
    correct = 0
    for start in range(0, len(queries), chunk):
        sims, nearest = (queries[start:start + chunk] @ bank.T).topk(k, dim=1)
        weights = (sims / temperature).exp()
        votes = torch.zeros(len(sims), num_classes)
        votes.scatter_add_(1, bank_labels[nearest].clamp_min(0), weights * (bank_labels[nearest] >= 0))
        correct += int((votes.argmax(1) == query_labels[start:start + chunk]).sum())
    return correct / len(queries)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 *, max_iter: int = 1000, seed: int = 0) -> float:
    """Top-1 accuracy of a multinomial logistic regression on standardized frozen features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    keep_train, keep_test = train_y >= 0, test_y >= 0
    if len(np.unique(train_y[keep_train])) < 2 or not keep_test.any():
        raise ValueError("a linear probe needs at least 2 labelled classes in train and labelled test images")
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
    probe.fit(train_x[keep_train], train_y[keep_train])
    return float(probe.score(test_x[keep_test], test_y[keep_test]))


def evaluate_run(run: Run) -> dict[str, Any]:
    """Score the run's stored embeddings and write eval.json; returns the scores."""
    from ssl_core.embed import load_embeddings

    train_x, train_y, _ = load_embeddings(run, "train")
    test_x, test_y, _ = load_embeddings(run, "test")
    labelled = bool((train_y >= 0).any() and (test_y >= 0).any())
    num_classes = int(max(train_y.max(initial=-1), test_y.max(initial=-1))) + 1
    scores: dict[str, Any] = {"run_id": run.id, "method": run.config.method.get("name"),
                              "dataset": run.config.data.dataset, "num_train": len(train_x),
                              "num_test": len(test_x), "embedding_dim": int(train_x.shape[1])}
    if labelled:
        t0 = time.perf_counter()
        knn = {k: weighted_knn(train_x, train_y, test_x, test_y, num_classes=num_classes, k=k) for k in (20, 200)}
        scores.update(knn_top1=knn[20], knn_top1_k20=knn[20], knn_top1_k200=knn[200])
        scores["linear_top1"] = linear_probe(train_x, train_y, test_x, test_y, seed=run.config.train.seed)
        scores["seconds"] = round(time.perf_counter() - t0, 2)
    else:
        scores.update(knn_top1=None, linear_top1=None, note="the dataset has no labels to score against")
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
