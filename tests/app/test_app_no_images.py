"""Explore on a run imported without images: the map is drawn, a click lists the neighbours by
id, label and distance, a selection lists its rows, and the page says there are no images; the
Clusters page lists its clusters, outliers and label issues by id."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from app_driver import map_block, open_page, select_on_map, texts
from ssl_core.analyses.runner import run_analyses
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.importer import import_embeddings
from widgets.scatter_map.payload import decode

N = 45


@pytest.fixture(scope="module")
def vectors_only(tmp_path_factory) -> tuple[str, str]:
    """(runs folder, run id) of 45 vectors in three clusters, labelled, imported without images."""
    root = tmp_path_factory.mktemp("vectors-only")
    rng = np.random.default_rng(0)
    clusters = np.arange(N) % 3
    vectors = (rng.normal(size=(3, 6))[clusters] * 10 + rng.normal(size=(N, 6))).astype(np.float32)
    ids = [f"item-{i}" for i in range(N)]
    pd.DataFrame({"id": ids, "vector": list(vectors)}).to_parquet(root / "v.parquet")
    # Labels matched to the vectors by id, in another order than the vectors'.
    pd.DataFrame({"id": ids, "label": np.array(["red", "green", "blue"])[clusters]}).iloc[::-1].to_csv(
        root / "labels.csv", index=False)
    result = import_embeddings(RunStore(root / "runs"), images=None, embeddings=root / "v.parquet",
                               labels=root / "labels.csv")
    return str(root / "runs"), result.run.id


def test_explore_draws_the_map_and_lists_neighbours_without_images(vectors_only, monkeypatch):
    runs, run_id = vectors_only
    monkeypatch.setenv("SSL_EXPLORER_RUNS", runs)
    at = open_page("explore", {"run": run_id})
    assert len(decode(map_block(at)).rows) == N
    assert any("imported without images" in i for i in texts(at.info))
    assert any(f"{N} rows" in c and "no images" in c for c in texts(at.caption))
    assert not at.get("imgs")  # no picture anywhere on the page
    neighbours = at.dataframe[0].value  # of row 0, by id, label and distance
    assert list(neighbours.columns) == ["row", "id", "label", "split", "d"] and len(neighbours) == 8
    assert neighbours["id"].str.startswith("item-").all() and (neighbours["d"] >= 0).all()
    assert neighbours["label"].nunique() == 1  # three far-apart clusters: the nearest share one label

    select_on_map(at, [1, 2, 3, 4])
    assert any("Selection: 4 images" in s for s in texts(at.subheader))
    listed = at.dataframe[-1].value
    assert list(listed["row"]) == [1, 2, 3, 4] and list(listed.columns) == ["row", "id", "label", "split"]


@pytest.mark.parametrize("page", ["clusters", "attention"])
def test_other_pages_open_on_a_run_without_images(vectors_only, monkeypatch, page):
    runs, run_id = vectors_only
    monkeypatch.setenv("SSL_EXPLORER_RUNS", runs)
    open_page(page, {"run": run_id})  # asserts that no exception reached the page


def test_clusters_lists_its_analyses_by_id_without_images(vectors_only, monkeypatch, tmp_path):
    runs, run_id = vectors_only
    runs = shutil.copytree(runs, tmp_path / "runs")  # analysed here, not in the module's runs folder
    run = RunStore(runs).get(run_id)
    run_analyses(run, ["clusters", "outliers", "label_issues"], device="cpu")
    ids = load_all_embeddings(run)[2]  # of each map row
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(runs))
    at = open_page("clusters", {"run": run_id})
    assert any("imported without images" in i for i in texts(at.info))
    assert not at.get("imgs")  # no picture anywhere on the page
    assert len(decode(map_block(at)).rows) == N
    listed = [d.value for d in at.dataframe if "id · value · label" in d.value.columns]
    assert len(listed) >= 4  # a cluster's central and outlying members, the outliers, a label issue's neighbours
    for table in listed:
        assert table["id · value · label"].str.startswith("item-").all()
        assert [ids[r] for r in table["row"]] == [c.split(" · ")[0] for c in table["id · value · label"]]
