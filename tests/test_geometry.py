"""Label-free health of an embedding: effective rank (RankMe), uniformity, collapse warning."""

from __future__ import annotations

import numpy as np
import pytest

from ssl_core.evaluate import effective_rank, evaluate_run, geometry, uniformity
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
