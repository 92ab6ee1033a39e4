"""Beyond top-1: effective rank (RankMe), uniformity, collapse warning, per-class accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_core.steps.evaluate import effective_rank, evaluate_run, geometry, uniformity
from tiny_runs import embedded_run


def test_effective_rank_counts_the_directions_used():
    rng = np.random.default_rng(0)
    isotropic = rng.normal(size=(4000, 16))
    assert 14 < effective_rank(isotropic) <= 16
    line = np.outer(rng.normal(size=500), rng.normal(size=16))
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    two_directions = rng.normal(size=(500, 2)) @ rng.normal(size=(2, 16))
    assert 1.3 < effective_rank(two_directions) <= 2.0


def test_uniformity_is_zero_for_one_point_and_lower_for_a_spread():
    rng = np.random.default_rng(0)
    assert uniformity(np.ones((50, 8))) == pytest.approx(0.0)
    spread = uniformity(rng.normal(size=(500, 8)))
    clumped = uniformity(rng.normal(size=(500, 8)) * 0.05 + 1.0)
    assert spread < clumped < 0, (spread, clumped)


def test_a_collapsed_embedding_is_warned_about_and_a_healthy_one_is_not():
    rng = np.random.default_rng(0)
    collapsed = np.outer(rng.normal(size=300), rng.normal(size=64)) + 1e-3 * rng.normal(size=(300, 64))
    assert "collapsing" in geometry(collapsed)["collapse_warning"]
    assert "collapse_warning" not in geometry(rng.normal(size=(300, 64)))


def test_evaluate_run_stores_the_geometry(store):
    run = embedded_run(store)
    scores = evaluate_run(run)
    assert scores["effective_rank"] > 1 and scores["uniformity"] < 0
    assert run.read_eval()["effective_rank"] == scores["effective_rank"]


def test_confusion_rows_are_true_classes_and_per_class_accuracy_reads_the_diagonal():
    from ssl_core.steps.evaluate import confusion

    out = confusion(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), num_classes=3)
    assert out["confusion_knn"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert out["per_class_knn_top1"] == [0.5, 0.6667, None]


def test_evaluate_run_stores_a_confusion_matrix_that_agrees_with_knn_top1(store):
    scores = evaluate_run(embedded_run(store, classes=10))
    matrix = np.array(scores["confusion_knn"])
    assert matrix.shape == (10, 10) and matrix.sum() == scores["num_test"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(scores["knn_top1"], abs=5e-5)  # stored to 4 decimals


def test_few_shot_subsets_are_class_balanced_and_probed(store):
    from ssl_core.steps.evaluate import few_shot_subset

    labels = np.repeat(np.arange(4), [100, 200, 50, 3])
    rows = few_shot_subset(labels, 0.1)
    assert np.bincount(labels[rows]).tolist() == [10, 20, 5, 1], "10% of each class, at least one"
    scores = evaluate_run(embedded_run(store, train_size=500, classes=5))
    assert 0 < scores["linear_top1_1pct"] <= scores["linear_top1_10pct"] + 0.1
    assert scores["linear_top1_10pct"] <= scores["linear_top1"] + 0.1
