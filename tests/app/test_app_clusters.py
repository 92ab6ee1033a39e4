"""The Clusters page: its map coloured by cluster or outlier score (a click opens the point's
cluster), the clusters table, a cluster's central and outlying images, the outlier
gallery, the near-duplicate pairs, and what it says when nothing is stored yet; and colouring the
Explore page's map by cluster."""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np

from streamlit.testing.v1 import AppTest

from app_driver import map_args, map_block, open_page, rendered, select_on_map, texts
from ssl_core.cli import main
from ssl_core.steps.readiness import embedded
from ssl_core.workflows import jobs
from ssl_core.analyses.clusters import HDBSCAN_FACTOR, KMEANS_FACTOR, cluster_run, load_clusters
from ssl_core.analyses.outliers import load_outliers, outlier_run, pairs_above
from widgets.scatter_map.payload import decode


def open_clusters(run_id: str) -> AppTest:
    return open_page("clusters", {"run": run_id})


def captions(at: AppTest, marker: str) -> list[str]:
    return [rendered(c) for image in at.get("image") for c in image.captions if marker in rendered(c)]


def test_with_nothing_stored_the_page_names_the_commands(run):
    at = open_clusters(run.id)
    infos = texts(at.info)
    assert any(f"`ssl-explorer analyze {run.id} --only clusters`" in i for i in infos), infos
    assert any(f"`ssl-explorer analyze {run.id} --only outliers`" in i for i in infos), infos
    assert any(f"`ssl-explorer analyze {run.id} --only label_issues`" in i for i in infos), infos
    assert not at.get("image") and not at.dataframe
    assert not (run.analysis_dir / "clusters.json").exists()  # a visit computes nothing
    # clusters, outliers, near-duplicates, label issues, subgroup gaps
    assert len(at.button) == 5, [b.label for b in at.button]


def test_a_run_without_embeddings_is_refused_with_the_reason_the_cli_gives(run, capsys):
    shutil.rmtree(run.embeddings_dir)
    reason = embedded(run)
    assert reason == f"run {run.id} has no embeddings yet: run `ssl-explorer embed {run.id}`"
    at = open_clusters(run.id)
    assert texts(at.warning) == [reason[:1].upper() + reason[1:]] and not at.button
    assert main(["compare", run.id, run.id, "--runs-dir", str(run.path.parent)]) == 2
    assert capsys.readouterr().err == f"error: {reason}\n"


def test_the_compute_button_starts_a_background_job(run, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "start_analysis", lambda store, run_id, names: started.append((run_id, names)))
    at = open_clusters(run.id)
    next(b for b in at.button if b.label == "Compute the clusters").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert started == [(run.id, ["clusters"])]
    assert any("Computing the clusters in the background" in s for s in texts(at.success)), texts(at.success)


def test_the_table_and_a_chosen_clusters_images(run):
    cluster_run(run)
    summary, arrays = load_clusters(run)
    at = open_clusters(run.id)
    records = summary["kmeans"]["clusters"]
    table = at.dataframe[0].value
    assert list(table["cluster"]) == [r["cluster"] for r in records]
    assert list(table["images"]) == [r["size"] for r in records] and sum(table["images"]) == 224
    assert list(table["purity"]) == [r["purity"] for r in records]
    # The largest cluster is shown first: its most central images, then its most outlying.
    shown = [c.split(" · ")[0] for c in captions(at, " · d=")]
    assert shown == records[0]["central_ids"] + records[0]["outlying_ids"]
    other = records[-1]
    at.selectbox(key="clusters_cluster").select(other["cluster"]).run()
    assert [c.split(" · ")[0] for c in captions(at, " · d=")] == other["central_ids"] + other["outlying_ids"]
    row = other["central_rows"][0]
    label = summary["class_names"][arrays["labels"][row]]
    distance = arrays["kmeans_distance"][row]
    assert captions(at, " · d=")[0] == f"{other['central_ids'][0]} · d={distance:.3f} · {label}"
    assert f"Cluster {other['cluster']}: most outlying images" in texts(at.subheader)

    at.radio(key="clusters_algorithm").set_value("hdbscan").run()
    assert not at.exception
    hdbscan = summary["hdbscan"]
    assert list(at.dataframe[0].value["images"]) == [r["size"] for r in hdbscan["clusters"]]
    assert any(f"{hdbscan['noise_rows']:,} images" in c and "noise" in c for c in texts(at.caption))


def test_the_outlier_gallery_and_the_near_duplicate_pairs(run):
    outlier_run(run, threshold=0.9, top=50)
    summary, _ = load_outliers(run)
    at = open_clusters(run.id)
    gallery = captions(at, " · score=")
    assert len(gallery) == 32  # the slider's default
    top = summary["top_outliers"][:32]
    assert gallery == [f"{o['id']} · score={o['score']:.3f} · {o['label_name']}" for o in top]
    at.slider(key="clusters_outliers_shown").set_value(5).run()
    assert len(captions(at, " · score=")) == 5

    stored = summary["duplicates"]["pairs"]
    assert stored, "the tiny run should have pairs above 0.9"
    middle = sorted(p["similarity"] for p in stored)[len(stored) // 2]
    at.slider(key="clusters_pair_threshold").set_value(round(middle, 3)).run()
    expected = pairs_above(summary, round(middle, 3))
    assert 0 < len(expected) < len(stored)
    assert any(c.startswith(f"{len(expected):,} pairs at similarity {round(middle, 3):.3f}") for c in texts(at.caption))
    first = expected[0]
    shown = [rendered(c) for image in at.get("image") for c in image.captions]
    assert f"{first['id_a']} · {first['label_name_a']}" in shown
    assert f"{first['id_b']} · {first['label_name_b']}" in shown


def test_the_map_is_coloured_by_the_chosen_clusters_or_by_outlier_score_and_a_click_opens_a_cluster(run):
    cluster_run(run)
    outlier_run(run, threshold=0.9, top=50)
    summary, arrays = load_clusters(run)
    _, scores = load_outliers(run)
    at = open_clusters(run.id)
    block, legend = decode(map_block(at)), map_args(at)["legend"]
    assert sorted(block.rows.tolist()) == list(range(224)) and legend["name"] == KMEANS_FACTOR
    assert [legend["names"][c] for c in block.colour] == [f"cluster {c}" for c in arrays["kmeans_labels"][block.rows]]

    row = int(next(r for r in range(224) if arrays["kmeans_labels"][r] != summary["kmeans"]["clusters"][0]["cluster"]))
    cluster = int(arrays["kmeans_labels"][row])
    select_on_map(at, [row])  # a click: the point's facts beside the map, its cluster in the tab
    assert at.selectbox(key="clusters_cluster").value == cluster
    assert f"Cluster {cluster}: most central images" in texts(at.subheader)
    facts = [rendered(m.value) for m in at.markdown if f"k-means cluster {cluster}" in rendered(m.value)]
    assert facts and f"outlier score {scores['score'][row]:.3f}" in facts[0], [m.value for m in at.markdown]

    at.radio(key="clusters_algorithm").set_value("hdbscan").run()
    block, legend = decode(map_block(at)), map_args(at)["legend"]
    assert legend["name"] == HDBSCAN_FACTOR
    names = ["noise" if c < 0 else f"cluster {c}" for c in arrays["hdbscan_labels"][block.rows]]
    assert [legend["names"][c] for c in block.colour] == names
    at.radio(key="clusters_colour").set_value("outlier score").run()
    block = decode(map_block(at))
    assert block.continuous and map_args(at)["legend"]["name"] == "outlier score"
    np.testing.assert_array_equal(block.colour, scores["score"][block.rows].astype(np.float32))
    select_on_map(at, list(range(40)))  # a box: its images counted per cluster
    assert any(c.startswith("40 images selected, in ") for c in texts(at.caption)), texts(at.caption)


def test_the_explore_map_can_be_coloured_by_cluster(run):
    cluster_run(run)
    summary, arrays = load_clusters(run)
    at = open_page("explore", {"run": run.id})
    at.selectbox(key="explore_colour").select(KMEANS_FACTOR).run()
    assert not at.exception
    block, legend = decode(map_block(at)), map_args(at)["legend"]
    sizes = Counter(legend["names"][c] for c in block.colour)
    assert sizes == {f"cluster {r['cluster']}": r["size"] for r in summary["kmeans"]["clusters"]}
