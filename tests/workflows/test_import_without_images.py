"""Importing vectors without images: a run of vectors, ids, labels and metadata alone, from a .npy
or a parquet table and from the CLI, that maps, searches and scores like any run and says it has
no images wherever images would be shown; a labels file of the wrong length is still refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssl_core.analyses.runner import run_analyses
from ssl_core.steps.browsing import load_explore_data, run_dataset, run_images
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import neighbors
from ssl_core.steps.readiness import explorable, searchable, viewable
from ssl_core.store import files
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.importer import InvalidImport, import_embeddings

N, DIM = 60, 8


def clustered(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(float32 vectors (n, DIM) in three well separated clusters, the cluster of each row)."""
    rng = np.random.default_rng(seed)
    clusters = np.arange(n) % 3
    centres = rng.normal(size=(3, DIM)) * 10
    return (centres[clusters] + rng.normal(size=(n, DIM))).astype(np.float32), clusters


@pytest.fixture(scope="module")
def npy_run(tmp_path_factory):
    """A run from vectors.npy and labels.csv (row order, a label and a metadata column), no images."""
    root = tmp_path_factory.mktemp("no-images")
    vectors, clusters = clustered()
    np.save(root / "vectors.npy", vectors)
    pd.DataFrame({"label": np.array(["ant", "bee", "cat"])[clusters],
                  "source": np.where(np.arange(N) < 30, "lab", "field")}).to_csv(root / "labels.csv", index=False)
    result = import_embeddings(RunStore(root / "runs"), images=None, embeddings=root / "vectors.npy",
                               labels=root / "labels.csv")
    return result, vectors, clusters, root


def test_npy_without_images_is_a_run_of_vectors_ids_and_labels(npy_run):
    result, vectors, clusters, _ = npy_run
    run = result.run
    assert "no images: 60 rows of vectors.npy, named by row number (0, 1, ...)" in result.notes
    assert not (run.dataset_dir / files.DATASET_IMAGES).exists()
    assert run.read_config_dict()["method"]["images"] is None
    stored, labels, ids, _ = load_all_embeddings(run)
    rows = np.array([int(i) for i in ids])  # ids are the row numbers of the file
    assert sorted(rows) == list(range(N))
    np.testing.assert_allclose(stored, vectors[rows], rtol=1e-3, atol=1e-2)  # float16 storage
    assert [run.read_class_names()[label] for label in labels] == [["ant", "bee", "cat"][c] for c in clusters[rows]]
    assert explorable(run) is None and searchable(run) is None
    assert (run.projection_dir / files.UMAP_MAP).exists() and run.read_status()["status"] == "finished"

    data = load_explore_data(run)  # the map data needs no images
    assert data.ids == ids and data.coords.shape == (N, 2) and data.labelled
    assert data.factor_levels["source"] == ("field", "lab")
    found = neighbors(run, 0, 5)  # the clusters are far apart: every neighbour shares the label
    assert found["same_label"] == 5 and {h["id"] for h in found["neighbors"]} <= set(ids)


def test_what_shows_images_says_the_run_has_none(npy_run):
    run = npy_run[0].run
    why = viewable(run)
    assert why is not None and "imported without images" in why and "--images" in why
    for read in (run_dataset, run_images):
        with pytest.raises(ValueError, match="imported without images"):
            read(run)


def test_parquet_without_images_uses_its_ids_and_columns(tmp_path):
    vectors, clusters = clustered(40, seed=1)
    ids = [f"doc-{i:03d}" for i in range(40)]
    pd.DataFrame({"id": ids, "vector": list(vectors), "label": np.array(["x", "y", "z"])[clusters],
                  "split": ["test" if i % 4 == 0 else "train" for i in range(40)]}).to_parquet(tmp_path / "v.parquet")
    result = import_embeddings(RunStore(tmp_path / "runs"), images=None, embeddings=tmp_path / "v.parquet")
    run = result.run
    assert "no images: 40 rows of v.parquet, named by its id column" in result.notes
    _, labels, stored_ids, splits = load_all_embeddings(run)
    assert sorted(stored_ids) == ids
    assert {i for i, s in zip(stored_ids, splits) if s == "test"} == {ids[i] for i in range(0, 40, 4)}
    by_id = dict(zip(ids, clusters))
    assert [run.read_class_names()[label] for label in labels] == [["x", "y", "z"][by_id[i]] for i in stored_ids]
    assert viewable(run) is not None and not (run.dataset_dir / files.DATASET_IMAGES).exists()


def test_labels_of_the_wrong_length_are_refused_and_make_no_run(tmp_path):
    np.save(tmp_path / "v.npy", clustered()[0])
    pd.DataFrame({"label": ["a"] * (N - 1)}).to_csv(tmp_path / "labels.csv", index=False)
    store = RunStore(tmp_path / "runs")
    with pytest.raises(InvalidImport, match="has 59 rows for 60 embeddings and no id column"):
        import_embeddings(store, images=None, embeddings=tmp_path / "v.npy", labels=tmp_path / "labels.csv")
    with pytest.raises(InvalidImport, match="without --images there is nothing to match"):
        import_embeddings(store, images=None, embeddings=tmp_path / "v.npy", match="name")
    assert not store.root.exists() or not any(store.root.iterdir())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssl_core.cli", *args], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2])


def test_cli_imports_without_images_and_searches_by_id(npy_run, tmp_path):
    root = npy_run[3]
    runs = str(tmp_path / "runs")
    done = cli("import", "--embeddings", str(root / "vectors.npy"), "--labels", str(root / "labels.csv"),
               "--runs-dir", runs)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    assert "no images: 60 rows of vectors.npy" in done.stderr
    assert not (tmp_path / "runs" / run_id / "dataset" / files.DATASET_IMAGES).exists()
    found = cli("neighbors", run_id, "--index", "0", "-k", "3", "--json", "--runs-dir", runs)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["same_label"] == 3
    refused = cli("export", run_id, "--out", str(tmp_path / "map.html"), "--runs-dir", runs)
    assert refused.returncode == 2 and "imported without images" in refused.stderr


def test_analyses_run_without_images_and_say_which_need_them(npy_run):
    run = npy_run[0].run
    result = run_analyses(run, device="cpu")
    assert "imported without images" in result["not_applicable"]["factors"]
    assert {"clusters", "outliers", "label_issues"} <= set(result["ran"])
