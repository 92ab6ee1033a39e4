"""Label issues (confident learning's self-confidence from the k nearest neighbours' votes) and
subgroup gaps (kNN top-1 per factor level against the rest): the votes against a naive loop,
flipped labels found at the top of the list, a degraded factor level flagged first."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_core.analyses.label_issues import (confident_issues, factor_codes, issue_ranking, label_issue_run,
                                            load_label_issues, neighbour_votes, self_confidence)
from ssl_core.analyses.runner import ANALYSES, not_applicable, run_analyses
from ssl_core.data import load_dataset
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import weighted_knn
from tiny_runs import embedded_run

FLIPPED_SHARE = 0.05
# Precision at the number flipped that the ranking must reach. On embedded_run's clusters a
# flipped row's neighbours vote for its true class, so its self-confidence is near 0 while a
# clean row's is near 1: measured 1.0 (20 of 20). 0.9 leaves room for one or two clean rows at a
# class boundary; a random ranking gets 0.05, a reversed one 0.
MIN_PRECISION = 0.9


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_neighbour_votes_match_a_naive_loop():
    rng = np.random.default_rng(0)
    x = unit(rng.normal(size=(60, 8)))
    labels = rng.integers(0, 3, size=60)
    labels[:5] = -1  # unlabelled rows are neighbours but cast no vote
    shares, neighbours = neighbour_votes(x, labels, 6, temperature=0.1)
    for i in range(60):
        similarity = x @ x[i]
        similarity[i] = -np.inf  # never its own neighbour
        nearest = np.argsort(-similarity)[:6]
        assert set(neighbours[i]) == set(nearest)
        votes = np.zeros(3)
        for j in nearest:
            if labels[j] >= 0:
                votes[labels[j]] += np.exp(similarity[j] / 0.1)
        np.testing.assert_allclose(shares[i], votes / votes.sum(), atol=1e-5)
    score = self_confidence(shares, labels)
    assert np.isnan(score[:5]).all() and np.allclose(score[5:], shares[np.arange(5, 60), labels[5:]])


def test_ranking_and_confident_counting_on_hand_made_shares():
    shares = np.array([[0.9, 0.1], [0.2, 0.8], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    # row 1 (label 0, 20%) before row 3 (label 1, 40%); confident rows 0 and 2 last
    assert issue_ranking(shares, labels).tolist() == [1, 3, 2, 0]
    flagged, thresholds = confident_issues(shares, labels)
    np.testing.assert_allclose(thresholds, [0.55, 0.6])
    # row 1: class 1 holds 0.8 >= 0.6 and class 0 only 0.2 < 0.55; row 3: class 0 holds 0.6 >= 0.55
    assert flagged.tolist() == [False, True, False, True]


def test_flipped_labels_fill_the_top_of_the_list(store):
    run = embedded_run(store, train_size=300, test_size=100)
    folder = run.embeddings_dir
    labels = np.concatenate([np.load(folder / f"{split}_labels.npy") for split in ("train", "test")])
    rng = np.random.default_rng(1)
    flipped = rng.choice(len(labels), round(FLIPPED_SHARE * len(labels)), replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 10, size=len(flipped))) % 10  # always another class
    np.save(folder / "train_labels.npy", labels[:300])
    np.save(folder / "test_labels.npy", labels[300:])

    assert "label_issues" in ANALYSES and "label_issues" not in not_applicable(run)
    summary = run_analyses(run, ["label_issues"], device="cpu")["results"]["label_issues"]
    top = [entry["row"] for entry in summary["top_issues"][:len(flipped)]]
    precision = len(set(top) & set(flipped.tolist())) / len(flipped)
    assert precision >= MIN_PRECISION, f"precision at {len(flipped)}: {precision:.2f}"
    first = summary["top_issues"][0]
    assert first["label"] != first["majority"] and first["label_name"] == f"class{first['label']}"
    assert first["split"] == ("train" if first["row"] < 300 else "test") and len(first["neighbours"]) == 10
    # Confident learning counts about as many issues as were made, most of them the flipped rows.
    stored, arrays = load_label_issues(run)
    assert stored == summary
    assert arrays["flagged"][flipped].mean() >= MIN_PRECISION
    assert len(flipped) <= summary["issues"]["flagged"] <= 2 * len(flipped)
    assert arrays["self_confidence"].shape == (400,) and arrays["rank"][:len(top)].tolist() == top


def test_a_degraded_factor_level_is_flagged_with_the_largest_gap(store):
    run = embedded_run(store, train_size=300, test_size=200)
    background = load_dataset(run.config.data).factors["background"]  # rows train then test, as stored
    levels = load_dataset(run.config.data).factor_levels["background"]
    worse = levels.index("noise")
    folder = run.embeddings_dir
    rng = np.random.default_rng(2)
    for split, rows in (("train", slice(0, 300)), ("test", slice(300, None))):
        vectors = np.load(folder / f"{split}.npy").astype(np.float32)
        at_level = background[rows] == worse
        vectors[at_level] += 6.0 * rng.normal(size=(int(at_level.sum()), vectors.shape[1]))  # lost in noise
        np.save(folder / f"{split}.npy", vectors.astype(np.float16))

    groups = label_issue_run(run)["subgroups"]
    first = groups["levels"][0]
    assert (first["factor"], first["level"]) == ("background", "noise") and first["flagged"]
    assert first["gap"] == min(e["gap"] for e in groups["levels"]) < -0.3
    assert {e["factor"] for e in groups["levels"]} == {"color_hue", "scale", "rotation", "pos_x", "pos_y", "background"}
    # The levels split the same test rows eval.json scores: together they give its kNN top-1.
    train_x, train_y, _ = load_embeddings(run, "train")
    test_x, test_y, _ = load_embeddings(run, "test")
    assert groups["knn_top1"] == round(weighted_knn(train_x, train_y, test_x, test_y, num_classes=10, k=20), 4)
    backgrounds = [e for e in groups["levels"] if e["factor"] == "background"]
    assert sum(e["n_test"] for e in backgrounds) == 200
    assert sum(e["top1"] * e["n_test"] for e in backgrounds) / 200 == pytest.approx(groups["knn_top1"], abs=1e-3)


def test_factor_levels_quartiles_and_few_values():
    values = np.arange(100, dtype=np.float64)
    values[7] = np.nan
    codes, names = factor_codes(values, None)
    assert codes[7] == -1 and sorted(np.bincount(codes[codes >= 0]).tolist()) == [24, 25, 25, 25]
    assert names[0].startswith("q1 [0, ") and names[-1].endswith("99]")
    codes, names = factor_codes(np.array([3.0, 1.0, 3.0, 2.0]), None)
    assert names == ["1", "2", "3"] and codes.tolist() == [2, 0, 2, 1]
    codes, names = factor_codes(np.array([0, 2, -1, 5]), ("a", "b", "c"))
    assert codes.tolist() == [0, 2, -1, -1] and names == ["a", "b", "c"]


def test_a_run_without_labels_is_not_applicable(store):
    run = embedded_run(store, train_size=40, test_size=10)
    for split in ("train", "test"):
        path = run.embeddings_dir / f"{split}_labels.npy"
        np.save(path, np.full_like(np.load(path), -1))
    assert not_applicable(run)["label_issues"].startswith("no labels:")
    with pytest.raises(ValueError, match="'label_issues' does not apply: no labels"):
        run_analyses(run, ["label_issues"], device="cpu")
