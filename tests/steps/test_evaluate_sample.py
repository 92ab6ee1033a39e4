"""Scoring a large run: splits above evaluate.MAX_SCORED_* are scored on a seeded sample (said in
eval.json), smaller ones whole, so a million imported rows are scored in seconds."""

from __future__ import annotations

import numpy as np

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.steps import evaluate
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.importer import write_rows


def labelled_run(tmp_path, n_train: int, n_test: int):
    """A run of two well separated classes, stored as an import stores it (no images)."""
    config = RunConfig(data=DataConfig(dataset="blobs", resolution=8), backbone=BackboneConfig(name="none"),
                       method={"name": "imported"}, train=TrainConfig(epochs=0, device="cpu"))
    run = RunStore(tmp_path / "runs").create(config)
    n = n_train + n_test
    labels = np.arange(n) % 2
    vectors = (np.where(labels[:, None] == 1, 5.0, -5.0) + np.random.default_rng(0).normal(size=(n, 4))).astype(np.float32)
    write_rows(run, vectors, [str(i) for i in range(n)], labels, ["a", "b"], n_train, None, {}, {})
    return run


def test_large_splits_are_scored_on_a_sample_and_small_ones_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate, "MAX_SCORED_TRAIN", 120)
    monkeypatch.setattr(evaluate, "MAX_SCORED_TEST", 40)
    big = evaluate.evaluate_run(labelled_run(tmp_path / "big", 300, 100))
    assert (big["num_train"], big["num_test"]) == (300, 100)  # the run's own counts
    assert (big["scored_train"], big["scored_test"]) == (120, 40)
    assert big["knn_top1"] == 1.0 and big["linear_top1"] == 1.0  # the classes are far apart

    small = evaluate.evaluate_run(labelled_run(tmp_path / "small", 100, 30))
    assert small["num_test"] == 30 and "scored_test" not in small and small["knn_top1"] == 1.0
