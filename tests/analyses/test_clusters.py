"""Clusters of a run's embeddings: k-means and HDBSCAN, stored in analysis/ and read back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from ssl_core.analyses.clusters import cluster_run, has_clusters, hdbscan, load_clusters, normalized, purity
from ssl_core.store.runs import Run
from tiny_runs import tiny_config, write_embeddings




def separated_clusters(classes: int = 6, per_class: int = 50, dim: int = 16, noise: float = 0.05, seed: int = 0):
    """Tight groups around `classes` orthogonal directions: (vectors, labels), shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(classes), per_class))
    vectors = np.eye(dim)[labels] + noise * rng.normal(size=(len(labels), dim))
    return vectors, labels


@pytest.fixture
def synthetic_run(store) -> Run:
    run = store.create(tiny_config())
    vectors, labels = separated_clusters()
    write_embeddings(run, vectors, labels, n_train=240)
    return run


def test_kmeans_recovers_well_separated_clusters(synthetic_run):
    summary = cluster_run(synthetic_run)
    km = summary["kmeans"]
    assert summary["settings"]["kmeans"]["k"] == 6 and summary["settings"]["kmeans"]["k_rule"] == "number of classes"
    assert km["ari"] > 0.99 and km["nmi"] > 0.99 and km["purity"] == 1.0, km
    assert sorted(c["size"] for c in km["clusters"]) == [50] * 6
    assert all(c["purity"] == 1.0 and c["dominant_label_name"].startswith("class") for c in km["clusters"])


def test_hdbscan_marks_far_away_points_as_noise(store):
    run = store.create(tiny_config())
    vectors, labels = separated_clusters(classes=4, per_class=60, dim=24, noise=0.03)
    rng = np.random.default_rng(1)
    # Five isolated points, each in a direction of its own, far from the four groups and each other.
    far = np.eye(24)[[10, 13, 16, 19, 22]] + 0.03 * rng.normal(size=(5, 24))
    vectors = np.concatenate([vectors, far])
    labels = np.concatenate([labels, np.full(5, -1)])  # unlabelled rows count in no score
    write_embeddings(run, vectors, labels, n_train=200)
    cluster_run(run, min_cluster_size=10, min_samples=5)
    _, arrays = load_clusters(run)
    hdb = arrays["hdbscan_labels"]
    assert (hdb[-5:] == -1).all(), hdb[-5:]
    assert np.isnan(arrays["hdbscan_distance"][-5:]).all()
    assert (hdb[:-5] >= 0).mean() > 0.95  # the dense groups are clusters, not noise
    assert purity(hdb[:-5], labels[:-5]) == 1.0


def test_hdbscan_on_a_sample_labels_the_other_rows_by_their_nearest_fitted_row():
    vectors, labels = separated_clusters(classes=4, per_class=100, dim=24, noise=0.03)
    found, settings = hdbscan(normalized(vectors), min_cluster_size=10, min_samples=5, max_fit_rows=120)
    assert settings["fit_rows"] == 120 and settings["rows_not_fitted"] == "label of the nearest fitted row"
    assert (found >= 0).mean() > 0.95 and purity(found, labels) == 1.0
    assert len(np.unique(found[found >= 0])) == 4


def test_stored_files_round_trip_and_every_setting_is_recorded(synthetic_run):
    progress = []
    summary = cluster_run(synthetic_run, k=4, seed=3, min_cluster_size=12,
                          progress=lambda fraction, text: progress.append(fraction))
    assert has_clusters(synthetic_run) and progress[-1] == 1.0 and progress == sorted(progress)
    stored, arrays = load_clusters(synthetic_run)
    assert stored == json.loads(json.dumps(summary))  # what was returned is what was stored
    settings = stored["settings"]
    assert settings["seed"] == 3 and settings["kmeans"]["k"] == 4 and settings["kmeans"]["k_rule"] == "given"
    assert {"niter", "nredo", "spherical", "metric"} <= set(settings["kmeans"])
    assert settings["hdbscan"]["min_cluster_size"] == 12
    assert {"pca_dims", "min_samples", "fit_rows", "cluster_selection_method"} <= set(settings["hdbscan"])
    assert len(arrays["kmeans_labels"]) == len(arrays["hdbscan_labels"]) == stored["num_rows"] == 300
    sizes = {c["cluster"]: c["size"] for c in stored["kmeans"]["clusters"]}
    assert sizes == dict(zip(*map(list, np.unique(arrays["kmeans_labels"], return_counts=True))))
    for cluster in stored["kmeans"]["clusters"]:  # central rows first by distance to the centroid
        distances = arrays["kmeans_distance"][cluster["central_rows"]]
        assert list(distances) == sorted(distances)
        assert distances[0] <= arrays["kmeans_distance"][cluster["outlying_rows"][0]]
    # The recorded settings reproduce the assignments exactly.
    again = cluster_run(synthetic_run, k=settings["kmeans"]["k"], seed=settings["seed"],
                        niter=settings["kmeans"]["niter"], nredo=settings["kmeans"]["nredo"],
                        pca_dims=settings["hdbscan"]["pca_dims"], min_cluster_size=12,
                        min_samples=settings["hdbscan"]["min_samples"])
    _, rerun = load_clusters(synthetic_run)
    assert again["kmeans"]["clusters"] == stored["kmeans"]["clusters"]
    assert np.array_equal(rerun["kmeans_labels"], arrays["kmeans_labels"])
    assert np.array_equal(rerun["hdbscan_labels"], arrays["hdbscan_labels"])


def test_unlabelled_run_picks_k_by_rule_and_has_no_purity(store):
    run = store.create(tiny_config())
    vectors, _ = separated_clusters(classes=5, per_class=40)
    write_embeddings(run, vectors, np.full(len(vectors), -1), n_train=150)
    summary = cluster_run(run)
    assert summary["settings"]["kmeans"]["k"] == round((200 / 2) ** 0.5) == 10
    assert summary["labelled"] is False
    assert summary["kmeans"]["purity"] is None and summary["kmeans"]["nmi"] is None
    assert all(c["dominant_label"] is None for c in summary["kmeans"]["clusters"])


def test_a_run_without_embeddings_names_the_command(store):
    run = store.create(tiny_config())
    with pytest.raises(FileNotFoundError, match=f"ssl-explorer embed {run.id}"):
        cluster_run(run)
    with pytest.raises(FileNotFoundError, match=f"ssl-explorer analyze {run.id} --only clusters"):
        load_clusters(run)


def test_a_bad_k_is_refused(synthetic_run):
    with pytest.raises(ValueError, match="k must be between 1 and the number of rows"):
        cluster_run(synthetic_run, k=301)


def test_a_trained_run_clusters_purer_than_the_random_encoder(tmp_path, demo_runs):
    scores = {}
    for name in ("demo-supervised-shapes", "demo-random-shapes"):
        run = Run(shutil.copytree(demo_runs / name, tmp_path / name))
        scores[name] = cluster_run(run)["kmeans"]
    trained, random = scores["demo-supervised-shapes"], scores["demo-random-shapes"]
    assert trained["purity"] > random["purity"] + 0.2 and trained["nmi"] > random["nmi"] + 0.2, (
        f"k-means purity supervised {trained['purity']} vs random {random['purity']}; "
        f"NMI {trained['nmi']} vs {random['nmi']}")
