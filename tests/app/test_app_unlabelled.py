"""Every page on runs of a folder without labels: each says "no labels" where a label score or
colouring would stand, and shows what needs none (maps, neighbours, clusters, CKA, the label-free
scores) instead of failing or drawing empty charts."""

from __future__ import annotations

import pytest

from app_driver import open_page, texts
from ssl_core.analyses.clusters import cluster_run
from ssl_core.workflows.pipeline import run_all
from ssl_core.store.run_store import RunStore
from tiny_runs import unlabelled_config, write_unlabelled_digits


@pytest.fixture(scope="module")
def unlabelled_runs(tmp_path_factory) -> tuple[RunStore, list[str]]:
    """Two finished runs on one flat folder of 160 unlabelled digits: random-init encoders (no
    training steps, so the kNN check skipped is the one at the end), seeds 0 and 1, with
    embeddings, scores, maps and indexes; the first also with its clusters. The pages only read
    them, so the module shares them."""
    root = tmp_path_factory.mktemp("unlabelled_app")
    write_unlabelled_digits(root / "digits", 160)
    store = RunStore(root / "runs")
    ids = []
    for seed in (0, 1):
        run = store.create(unlabelled_config(root / "digits", "random", seed=seed))
        run_all(run, progress=False, log=lambda message: None)
        ids.append(run.id)
    cluster_run(store.get(ids[0]), seed=0)
    return store, ids


@pytest.fixture
def runs(unlabelled_runs, monkeypatch) -> list[str]:
    store, ids = unlabelled_runs
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(store.root))
    return ids


def test_train_page_says_why_there_is_no_knn_curve(runs):
    at = open_page("train", {"run": runs[0]})
    assert any(t.startswith("No kNN check (no labels:") for t in texts(at.info)), texts(at.info)
    assert next(m.value for m in at.metric if m.label.startswith("kNN top-1")) == "skipped"
    assert not at.error


def test_explore_shows_the_map_and_neighbours_and_says_no_labels(runs):
    at = open_page("explore", {"run": runs[0]})
    assert any(t.startswith("No labels:") and "k-means cluster" in t for t in texts(at.info)), texts(at.info)
    assert at.get("component_instance"), "the map is drawn"
    neighbours = next(c for c in texts(at.caption) if "by cosine distance" in c)
    assert "unlabelled" in neighbours and "share its label" not in neighbours
    assert not at.error


def test_evaluate_shows_the_label_free_scores_and_names_what_needs_labels(runs):
    at = open_page("evaluate", {"run": runs[0]})
    assert any(t.startswith("no labels:") for t in texts(at.info)), texts(at.info)
    assert next(m.value for m in at.metric if m.label == "effective rank").endswith("of 256")
    assert not any(m.label.startswith("kNN") for m in at.metric)
    captions = texts(at.caption)
    assert "No layer-wise probe: no labels" in " ".join(captions) and "No fine-tuning: no labels" in " ".join(captions)
    assert not at.error


def test_clusters_stand_without_purity(runs):
    at = open_page("clusters", {"run": runs[0]})
    assert any("no labels: purity, NMI and ARI need labels" in c for c in texts(at.caption)), texts(at.caption)
    table = at.dataframe[0].value
    assert "purity" not in table and "dominant label" not in table and table["images"].sum() == 160
    assert not at.error


def test_compare_gives_cka_and_overlap_and_says_no_labels(runs):
    at = open_page("compare", {"runs": ",".join(runs)})
    infos = texts(at.info)
    assert any(t.startswith(f"No labels for {runs[0]}, {runs[1]}") for t in infos), infos
    assert sum(t.startswith("No per-class scores for") and "no labels:" in t for t in infos) == 2
    assert sum(c.startswith("No kNN curve for") and "no labels:" in c for c in texts(at.caption)) == 2
    keys = [chart.proto.id for chart in at.get("plotly_chart")]
    assert any("compare_cka" in key for key in keys) and any("compare_overlap" in key for key in keys)
    assert not at.error
