"""Outlier scores (mean cosine distance to the k nearest other rows) and near-duplicate pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssl_core.analyses.outliers import knn_scores, load_outliers, near_duplicates, outlier_run, pairs_above
from tiny_runs import tiny_config, write_embeddings



def blobs(n: int = 200, dim: int = 32, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Loose class groups: same-class cosine similarity around 0.9, far below 0.98."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres = rng.normal(size=(classes, dim))
    return centres[labels] + 0.5 * rng.normal(size=(n, dim)), labels


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_knn_scores_match_a_naive_reference():
    x = unit(blobs(120)[0]).astype(np.float32)
    scores, rows = knn_scores(x, 7)
    distances = 1.0 - x @ x.T
    np.fill_diagonal(distances, np.inf)
    expected = np.sort(distances, axis=1)[:, :7].mean(axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert not (rows == np.arange(120)[:, None]).any()  # a row is never its own neighbour


def test_an_injected_far_away_vector_ranks_first(store):
    run = store.create(tiny_config())
    vectors, labels = blobs()
    vectors[137] = -vectors[:137].mean(axis=0) * 10  # opposite to where everything else lies
    write_embeddings(run, vectors, labels, n_train=150)
    summary = outlier_run(run, k=10)
    _, arrays = load_outliers(run)
    assert arrays["rank"][0] == 137 and summary["top_outliers"][0]["row"] == 137
    first = summary["top_outliers"][0]
    assert first["id"] == "train/137" and first["split"] == "train" and first["label"] == labels[137]
    assert first["score"] == pytest.approx(float(arrays["score"].max()), abs=1e-6)
    assert list(arrays["score"][arrays["rank"]]) == sorted(arrays["score"], reverse=True)


def test_an_exact_duplicate_pair_is_found_and_a_distinct_pair_is_not(store):
    run = store.create(tiny_config())
    vectors, labels = blobs()
    vectors[170] = vectors[12]  # a test row that repeats a train row exactly
    write_embeddings(run, vectors, labels, n_train=150)
    summary = outlier_run(run, threshold=0.98)
    pairs = {(p["a"], p["b"]): p for p in summary["duplicates"]["pairs"]}
    assert list(pairs) == [(12, 170)] and summary["duplicates"]["pairs_found"] == 1
    assert pairs[(12, 170)]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert pairs[(12, 170)]["id_a"] == "train/12" and pairs[(12, 170)]["id_b"] == "test/20"
    similarity = (unit(vectors[[3]]) @ unit(vectors).T)[0]
    similarity[3] = -1
    nearest = int(similarity.argmax())  # row 3's closest image: a neighbour, yet a distinct image
    assert labels[nearest] == labels[3] and 0.5 < similarity[nearest] < 0.98
    assert tuple(sorted((3, nearest))) not in pairs
    _, arrays = load_outliers(run)
    assert arrays["score"][12] < np.median(arrays["score"])  # its duplicate is a neighbour at 0


def test_pairs_are_capped_to_the_most_similar_and_filtered_by_a_higher_threshold():
    rng = np.random.default_rng(0)
    base = unit(rng.normal(size=(30, 16)))
    noise = np.array([0.0, 0.01, 0.02, 0.05, 0.08])[:, None, None] * rng.normal(size=(5, 30, 16))
    x = unit((base[None] + noise).reshape(-1, 16)).astype(np.float32)  # 5 near-copies of 30 vectors
    all_pairs, all_sims, total = near_duplicates(x, 0.95, max_pairs=100_000)
    capped, sims, found = near_duplicates(x, 0.95, max_pairs=25)
    assert found == total == len(all_pairs) > 25 and len(capped) == 25
    assert np.allclose(sims, all_sims[:25]) and list(sims) == sorted(sims, reverse=True)
    assert (all_pairs[:, 0] < all_pairs[:, 1]).all() and len({tuple(p) for p in all_pairs.tolist()}) == total
    naive = np.triu(x @ x.T, k=1)
    assert total == int((naive >= 0.95).sum())
    summary = {"duplicates": {"pairs": [{"similarity": float(s)} for s in all_sims]}}
    assert len(pairs_above(summary, 0.99)) == int((all_sims >= 0.99).sum()) < total


def test_stored_files_round_trip_with_their_settings(store):
    run = store.create(tiny_config())
    vectors, labels = blobs()
    write_embeddings(run, vectors, labels, n_train=150)
    seen = []
    summary = outlier_run(run, k=5, threshold=0.9, max_pairs=50, top=20,
                          progress=lambda fraction, text: seen.append(fraction))
    stored, arrays = load_outliers(run)
    assert stored == json.loads(json.dumps(summary)) and seen[-1] == 1.0
    recorded = {name: stored["settings"][name] for name in ("k", "threshold", "max_pairs", "top")}
    assert recorded == {"k": 5, "threshold": 0.9, "max_pairs": 50, "top": 20}
    assert stored["duplicates"]["threshold"] == 0.9 and "cosine" in stored["settings"]["score"]
    assert len(stored["top_outliers"]) == 20 and len(arrays["score"]) == len(arrays["rank"]) == 200
    assert sorted(arrays["rank"].tolist()) == list(range(200))
    assert arrays["pairs"].shape == (len(stored["duplicates"]["pairs"]), 2)


def test_bad_input_is_refused_with_the_reason(store):
    run = store.create(tiny_config())
    with pytest.raises(FileNotFoundError, match=f"ssl-explorer embed {run.id}"):
        outlier_run(run)
    with pytest.raises(FileNotFoundError, match=f"ssl-explorer analyze {run.id} --only outliers"):
        load_outliers(run)
    with pytest.raises(ValueError, match="threshold is a cosine similarity"):
        outlier_run(run, threshold=1.5)
