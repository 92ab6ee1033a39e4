"""Similarity of two runs on the same images: linear CKA and k-NN overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssl_core.cli import main
from ssl_core.analyses.compare import compare_runs, knn_overlap
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import linear_cka
from tiny_runs import embedded_run


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    return centres[rng.integers(0, 8, 400)] + 0.3 * rng.normal(size=(400, 16))


def test_cka_is_one_for_itself_and_a_rotation_and_near_zero_for_a_shuffle(features):
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
    shuffled = features[np.random.default_rng(2).permutation(len(features))]
    assert linear_cka(features, features) == pytest.approx(1.0)
    assert linear_cka(features, 3.0 * features @ rotation) == pytest.approx(1.0)
    low = linear_cka(features, shuffled)
    assert low < 0.1, f"CKA of a shuffled copy is {low:.3f}; unrelated rows should be near 0"


def test_knn_overlap_is_one_for_itself_and_near_chance_for_a_shuffle(features):
    assert knn_overlap(features, features, k=10) == pytest.approx(1.0)
    shuffled = features[np.random.default_rng(2).permutation(len(features))]
    # A shuffle keeps the clusters, so chance is the share of a neighbour list inside one's cluster.
    chance = knn_overlap(features, shuffled, k=10)
    assert chance < 0.2, chance
    with pytest.raises(ValueError, match="k must be"):
        knn_overlap(features, features, k=400)


def test_compare_cli_prints_one_json_object(store, capsys):
    a = embedded_run(store, seed=0)
    b = embedded_run(store, seed=0)
    assert main(["compare", a.id, b.id, "--runs-dir", str(store.root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cka"] == pytest.approx(1.0) and result["knn_overlap"] == pytest.approx(1.0)
    assert result["images"] == len(load_embeddings(a, "test")[0])


def test_runs_over_other_images_are_refused(store):
    a = embedded_run(store, test_size=100)
    b = embedded_run(store, test_size=90)
    with pytest.raises(ValueError, match="same test images"):
        compare_runs(a, b)
