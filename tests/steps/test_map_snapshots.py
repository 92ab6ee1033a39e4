"""The map as it learns (ssl_core/steps/map_snapshots.py): stored per kNN check, read back or
refused naming the file, aligned snapshot onto snapshot, the same from the same seed, and taken by
a training run at each check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssl_core.core.config import RunConfig
from ssl_core.steps.map_snapshots import (drop_snapshots_after, read_snapshots, snapshot_layout, start_snapshots,
                                          store_snapshot)
from ssl_core.steps.projection import project_umap
from ssl_core.store import files
from ssl_core.store.reading import RunFileError
from ssl_core.training import knn
from ssl_core.training.loop import train
from tiny_runs import tiny_config


def separating(epochs: int, n: int = 300, classes: int = 6, dim: int = 16, seed: int = 0) -> list[np.ndarray]:
    """Vectors of `n` points whose classes drift apart epoch by epoch, as a network's do."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    centres, noise = rng.normal(size=(classes, dim)), rng.normal(size=(n, dim))
    return [(1.0 + 0.1 * t) * centres[labels] + noise + 0.1 * rng.normal(size=(n, dim)) for t in range(epochs)]


def spread_moved(coords: np.ndarray, previous: np.ndarray) -> float:
    """Mean distance a point moved, over the RMS spread of the previous map."""
    spread = np.sqrt(((previous - previous.mean(axis=0)) ** 2).sum(axis=1).mean())
    return float(np.linalg.norm(coords - previous, axis=1).mean() / spread)


def test_snapshots_are_stored_read_back_and_dropped_after_a_resume_point(store):
    run = store.create(tiny_config())
    assert read_snapshots(run) is None  # a run trained before snapshots existed: no error
    start_snapshots(run, ["test/0", "test/1", "test/2", "test/3"], np.array([0, 1, -1, 1]), ["a", "b"])
    maps = [np.full((4, 2), t, dtype=np.float32) + np.arange(4)[:, None] for t in range(3)]
    for t, coords in enumerate(maps):
        store_snapshot(run, step=3 * (t + 1), epoch=t + 1, coords=coords, seconds=0.5)
    snaps = read_snapshots(run)
    assert snaps.steps == [3, 6, 9] and snaps.epochs == [1.0, 2.0, 3.0]
    np.testing.assert_array_equal(snaps.coords, np.stack(maps))
    assert snaps.ids == ["test/0", "test/1", "test/2", "test/3"] and snaps.class_names == ["a", "b"]
    assert snaps.labels.tolist() == [0, 1, -1, 1]
    assert read_snapshots(run, newest_only=True).steps == [9]
    drop_snapshots_after(run, 6)  # a resume from the checkpoint at step 6 takes step 9 again
    assert read_snapshots(run).steps == [3, 6]
    store_snapshot(run, step=6, epoch=2, coords=maps[0], seconds=0.1)  # the same step again replaces it
    snaps = read_snapshots(run)
    assert snaps.steps == [3, 6] and np.array_equal(snaps.coords[1], maps[0])


def test_a_corrupt_snapshot_is_refused_naming_its_file(store):
    run = store.create(tiny_config())
    start_snapshots(run, ["test/0", "test/1", "test/2", "test/3"], np.zeros(4), ["a"])
    store_snapshot(run, step=3, epoch=1, coords=np.zeros((4, 2)), seconds=0.1)
    path = run.map_snapshots_dir / files.snapshot(3)
    path.write_bytes(b"not an array")
    with pytest.raises(RunFileError, match=f"map_snapshots/{files.snapshot(3)} is not a readable .npy"):
        read_snapshots(run)
    np.save(path, np.zeros((3, 2)))  # a snapshot of other images
    with pytest.raises(RunFileError, match=r"map_snapshots/step_00000003.npy holds .* shape \(3, 2\); expected \(4, 2\)"):
        read_snapshots(run)
    path.unlink()
    with pytest.raises(RunFileError, match="map_snapshots/step_00000003.npy is missing"):
        read_snapshots(run)
    (run.map_snapshots_dir / files.SNAPSHOTS_INDEX).write_text("{")
    with pytest.raises(RunFileError, match="map_snapshots/snapshots.json is not valid JSON"):
        read_snapshots(run)


def test_consecutive_snapshots_stay_aligned_where_independent_maps_jump():
    vectors = separating(3)
    first = snapshot_layout(vectors[0], None, seed=0)
    second = snapshot_layout(vectors[1], first, seed=0)
    third = snapshot_layout(vectors[2], second, seed=0)
    aligned = [spread_moved(second, first), spread_moved(third, second)]
    independent = [project_umap(vectors[1], seed=0), project_umap(vectors[2], seed=0)]
    unaligned = [spread_moved(independent[0], first), spread_moved(independent[1], second)]
    # Points still trade places inside a class's blob (0.25 of the spread on these Gaussian blobs
    # even for the same vectors); whole clusters no longer move. Against an independent UMAP laid
    # on by Procrustes, a real run's snapshots moved less (bench/results/map_snapshots_cpu.md) at a
    # fifth of the time; on blobs the two are alike, so only the unaligned maps are compared here.
    assert max(aligned) < 0.4 * min(unaligned), (aligned, unaligned)
    assert all(np.isfinite(m).all() and m.shape == (300, 2) for m in (first, second, third))


def test_snapshots_are_the_same_from_the_same_seed():
    vectors = separating(2, n=120)
    first = snapshot_layout(vectors[0], None, seed=3)
    np.testing.assert_array_equal(first, snapshot_layout(vectors[0], None, seed=3))
    again = snapshot_layout(vectors[1], first, seed=3)
    np.testing.assert_array_equal(again, snapshot_layout(vectors[1], first, seed=3))
    assert not np.array_equal(again, snapshot_layout(vectors[1], first, seed=4))


def test_training_maps_held_out_images_at_checks_within_their_share_of_the_time(store, monkeypatch):
    monkeypatch.setattr(knn, "MAP_SHARE", 0.0)  # every snapshot after the first is over its share
    run = store.create(tiny_config(epochs=3, test_size=48, knn_max_queries=20, map_snapshots=40))  # 20 embedded anew
    train(run, progress=False)
    checks = [m for m in run.read_metrics() if "knn_top1" in m]
    assert [m["epoch"] for m in checks] == [1.0, 2.0, 3.0]
    assert ["map_snapshot_s" in m for m in checks] == [True, False, True]  # the first and the last, always
    snaps = read_snapshots(run)
    assert snaps.steps == [checks[0]["step"], checks[2]["step"]] and snaps.epochs == [1.0, 3.0]
    assert snaps.coords.shape == (2, 40, 2) and np.isfinite(snaps.coords).all()
    assert snaps.ids == [f"test/{i}" for i in range(40)]
    assert not np.array_equal(snaps.coords[0], snaps.coords[1])  # the network, and so the map, moved


def test_a_config_from_before_snapshots_loads_with_them_on():
    raw = tiny_config().to_dict()
    del raw["train"]["map_snapshots"]
    assert RunConfig.from_dict(json.loads(json.dumps(raw))).train.map_snapshots == 2000
    with pytest.raises(ValueError, match="map_snapshots must be 0"):
        RunConfig.from_dict({"train": {"map_snapshots": -1}})
