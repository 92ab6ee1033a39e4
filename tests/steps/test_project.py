"""ssl_core.steps.projection: the backend choice and its record, the PCA map written before UMAP,
large runs mapped as a sample with every other point placed, refused non-finite embeddings, and
numba's compilation cache across processes. GPU backends are faked by importable stand-in
modules (CI has no GPU), as is umap-learn's layout of a sample (a fixed linear map); the real
umap-learn runs in the tests marked slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from ssl_core.steps import projection as project
from ssl_core.core.config import RunConfig
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import build_index
from ssl_core.steps.projection import (SAMPLED, load_map, placed_coords, project_pca, project_run, read_params,
                                       resolve_backend, sample_rows)
from tiny_runs import embedded_run, tiny_config, write_embeddings

ROOT = Path(__file__).resolve().parents[2]


def fake_backend(monkeypatch, name: str, umap_class) -> list[dict]:
    """Make `name` (cuml | torchdr) importable as a stand-in whose UMAP is `umap_class`; returns
    the list that collects the keyword arguments each UMAP was made with."""
    made: list[dict] = []

    class Recording(umap_class):
        def __init__(self, **kwargs):
            made.append(kwargs)

    module = types.ModuleType(name)
    module.__version__ = f"99.0-fake-{name}"
    if name == "cuml":
        module.manifold = types.ModuleType("cuml.manifold")
        module.manifold.UMAP = Recording
        monkeypatch.setitem(sys.modules, "cuml.manifold", module.manifold)
    else:
        module.UMAP = Recording
    monkeypatch.setitem(sys.modules, name, module)
    return made


class FirstTwoColumns:
    def fit_transform(self, x):
        return np.asarray(x)[:, :2] * 10


def not_installed(monkeypatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError


def gpu(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(project, "cuda_available", lambda: present)


# -- the choice -----------------------------------------------------------------------------------
def test_auto_is_umap_learn_without_a_gpu_even_with_gpu_libraries_installed(monkeypatch):
    gpu(monkeypatch, False)
    fake_backend(monkeypatch, "cuml", FirstTwoColumns)
    fake_backend(monkeypatch, "torchdr", FirstTwoColumns)
    assert resolve_backend("auto") == "umap-learn"


def test_auto_on_a_gpu_prefers_cuml_then_torchdr_then_umap_learn(monkeypatch):
    gpu(monkeypatch, True)
    fake_backend(monkeypatch, "cuml", FirstTwoColumns)
    fake_backend(monkeypatch, "torchdr", FirstTwoColumns)
    assert resolve_backend("auto") == "cuml"
    not_installed(monkeypatch, "cuml")
    assert resolve_backend("auto") == "torchdr"
    not_installed(monkeypatch, "torchdr")
    assert resolve_backend("auto") == "umap-learn"


def test_a_backend_asked_for_by_name_must_be_installed_and_known(monkeypatch):
    not_installed(monkeypatch, "cuml", "torchdr")
    assert resolve_backend("umap-learn") == "umap-learn"
    with pytest.raises(ValueError, match=r"'cuml' is not installed \(pip install cuml-cu12"):
        resolve_backend("cuml")
    with pytest.raises(ValueError, match="backend 'rapids'; known: auto, umap-learn, cuml, torchdr"):
        resolve_backend("rapids")


def test_the_config_asks_for_a_backend_and_older_configs_load_with_auto(store):
    old = tiny_config().to_dict()
    del old["project"]  # a run folder from before ProjectConfig
    assert RunConfig.from_dict(old).project.backend == "auto"
    run = store.create(tiny_config())
    run.config_path.write_text(json.dumps(old))
    assert run.config.project.n_neighbors == 15
    with pytest.raises(ValueError, match="unknown projection backend 'umap'; known: auto, umap-learn"):
        RunConfig.from_dict({**old, "project": {"backend": "umap"}})


# -- the run's maps and their record ------------------------------------------------------------
def test_auto_on_a_gpu_with_cuml_records_what_it_used_and_writes_pca_before_umap(store, monkeypatch):
    run = embedded_run(store)
    run.projection_dir.mkdir()
    np.save(run.projection_dir / "umap_2d.npy", np.zeros((3, 2), np.float32))  # an older map
    seen = {}

    class CheckFilesFirst(FirstTwoColumns):
        def fit_transform(self, x):
            seen["pca"] = (run.projection_dir / "pca_2d.npy").exists()
            seen["old umap"] = (run.projection_dir / "umap_2d.npy").exists()
            seen["params"] = read_params(run)
            seen["map"] = load_map(run)[1]
            seen["unit"] = np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
            return super().fit_transform(x)

    gpu(monkeypatch, True)
    made = fake_backend(monkeypatch, "cuml", CheckFilesFirst)
    params = project_run(run)

    assert seen["pca"] and not seen["old umap"] and seen["map"] == "pca" and seen["unit"]
    assert seen["params"]["umap"] is None and seen["params"]["pca"]["file"] == "pca_2d.npy"
    assert made == [{"n_components": 2, "n_neighbors": 15, "min_dist": 0.1, "output_type": "numpy"}]
    assert {k: params["umap"][k] for k in ("backend", "requested", "version", "device")} == {
        "backend": "cuml", "requested": "auto", "version": "99.0-fake-cuml", "device": "cuda"}
    assert read_params(run) == json.loads(json.dumps(params))  # what was returned is what is stored
    assert run.config.project.backend == "auto"  # config.json keeps what was asked for
    coords, kind = load_map(run)
    assert kind == "umap" and coords.shape == (400, 2) and coords.dtype == np.float32


def test_torchdr_by_name_runs_on_the_cpu_when_there_is_no_gpu(store, monkeypatch):
    gpu(monkeypatch, False)
    made = fake_backend(monkeypatch, "torchdr", FirstTwoColumns)
    params = project_run(embedded_run(store), backend="torchdr")
    assert made == [{"n_components": 2, "n_neighbors": 15, "min_dist": 0.1, "random_state": 0, "device": "cpu"}]
    assert (params["umap"]["backend"], params["umap"]["requested"], params["umap"]["device"]) == (
        "torchdr", "torchdr", "cpu")


def test_gpu_backends_map_every_point_above_the_sampling_threshold(store, monkeypatch):
    seen = []

    class AllRows(FirstTwoColumns):
        def fit_transform(self, x):
            seen.append(len(x))
            return super().fit_transform(x)

    gpu(monkeypatch, True)
    fake_backend(monkeypatch, "torchdr", AllRows)
    params = project_run(embedded_run(store), backend="torchdr", sample_above=100, sample_size=50)["umap"]
    assert seen == [400]
    assert (params["method"], params["sample"], params["sample_above"]) == ("umap", None, None)


def test_a_bad_backend_fails_before_any_map_is_touched(store, monkeypatch):
    not_installed(monkeypatch, "cuml")
    run = embedded_run(store)
    with pytest.raises(ValueError, match="'cuml' is not installed"):
        project_run(run, backend="cuml")
    assert not run.projection_dir.exists()


def test_the_pca_map_is_the_normalized_vectors_on_their_two_main_axes(store):
    run = embedded_run(store, dim=16)
    vectors, *_ = load_all_embeddings(run)
    coords = project_pca(vectors, chunk=97)  # chunked sums give the same axes
    assert coords.shape == (400, 2) and coords.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    centred = unit - unit.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    np.testing.assert_allclose(np.abs(coords), np.abs(centred @ top.T), atol=1e-4)
    assert coords[:, 0].var() >= coords[:, 1].var()
    np.testing.assert_array_equal(coords, project_pca(vectors))  # the same map every time
    with pytest.raises(ValueError, match="at least 2 points"):
        project_pca(vectors[:1])


def test_the_neighbours_umap_learn_gets_are_the_exact_cosine_ones():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    rows, distances = project.cosine_knn(x, 5)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    expected = np.argsort(-(unit @ unit.T), axis=1)[:, :5]
    assert (rows[:, 0] == np.arange(300)).all() and np.allclose(distances[:, 0], 0, atol=1e-5)
    assert (rows == expected).mean() > 0.99 and rows.dtype == np.int32 and distances.dtype == np.float32


# -- large runs: UMAP of a sample, every other point placed -------------------------------------
# A stand-in for umap-learn's layout of the sample: the normalized vectors through a fixed linear
# map, so the tests know where every point belongs and take no numba compilation. It sends the
# first six axes to six points on a circle, the others near the middle.
ANGLES = np.arange(6) * np.pi / 3
LAYOUT = np.concatenate([np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1),
                         0.1 * np.random.default_rng(7).normal(size=(26, 2))]).astype(np.float32)


def linear_layout(vectors, **kwargs):
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ LAYOUT * 10


def test_above_the_threshold_umap_learn_maps_a_sample_and_places_every_other_point(store, monkeypatch):
    laid_out = []

    def layout(vectors, **kwargs):
        laid_out.append((vectors.copy(), kwargs))
        return linear_layout(vectors)

    monkeypatch.setattr(project, "project_umap", layout)
    run = embedded_run(store, train_size=1500, test_size=500)
    vectors, *_ = load_all_embeddings(run)
    heard = []
    params = project_run(run, backend="umap-learn", sample_above=1000, sample_size=600, place_k=8,
                         progress=lambda fraction, text: heard.append((fraction, text)))

    sample = sample_rows(2000, 600, seed=0)
    [(mapped, kwargs)] = laid_out
    np.testing.assert_array_equal(mapped, vectors[sample])  # umap-learn saw the sample rows, in order
    assert kwargs == {"backend": "umap-learn", "n_neighbors": 15, "min_dist": 0.1, "seed": 0}
    coords, kind = load_map(run)
    assert kind == "umap" and coords.shape == (2000, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    np.testing.assert_array_equal(coords[sample], linear_layout(vectors[sample]))  # the sample keeps its layout
    assert len(np.unique(coords, axis=0)) == 2000  # no point dropped or stacked on another

    umap = read_params(run)["umap"]
    assert umap == json.loads(json.dumps(params["umap"]))
    assert (umap["method"], umap["sample_above"], umap["random_state"]) == (SAMPLED, 1000, 0)
    assert {k: umap["sample"][k] for k in ("size", "seed")} == {"size": 600, "seed": 0}
    assert umap["sample"]["placement"]["k"] == 8 and umap["sample"]["placement"]["metric"] == "cosine"

    fractions = [fraction for fraction, _ in heard]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(text == "placed 1,400 of 1,400 points" for _, text in heard)

    project_run(run, backend="umap-learn", sample_above=1000, sample_size=600, place_k=8)
    np.testing.assert_array_equal(load_map(run)[0], coords)  # the same run and files: the same map


def test_the_sample_depends_on_the_seed_only():
    np.testing.assert_array_equal(sample_rows(10_000, 500, 3), sample_rows(10_000, 500, 3))
    assert (np.diff(sample_rows(10_000, 500, 3)) > 0).all()
    assert not np.array_equal(sample_rows(10_000, 500, 3), sample_rows(10_000, 500, 4))
    with pytest.raises(ValueError, match="a sample of 20 rows out of 10"):
        sample_rows(10, 20, 0)


def test_placed_points_land_on_their_own_cluster(store, monkeypatch):
    """Six tight clusters on orthogonal directions, which the layout puts in six places: every
    placed point must land nearer its own cluster's centre in the map than any other's."""
    monkeypatch.setattr(project, "project_umap", linear_layout)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 6, size=3000)
    vectors = np.eye(32)[labels] * 5 + 0.3 * rng.normal(size=(3000, 32))
    run = store.create(tiny_config(train_size=2400, test_size=600))
    write_embeddings(run, vectors, labels, n_train=2400)
    project_run(run, backend="umap-learn", sample_above=1000, sample_size=300)

    coords = load_map(run)[0]
    sample = sample_rows(3000, 300, seed=0)
    placed = np.setdiff1d(np.arange(3000), sample)
    centres = np.stack([coords[sample][labels[sample] == c].mean(axis=0) for c in range(6)])
    nearest = np.linalg.norm(coords[placed, None, :] - centres[None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(nearest, labels[placed])


def test_placement_through_an_ivf_index_places_every_point_the_same_way_twice(monkeypatch):
    """Samples above KNN_EXACT_MAX are searched with IVF, whose lists may hold fewer than k
    points (those rows are searched exactly): every row is placed, by its own cluster, and
    again identically."""
    monkeypatch.setattr(project, "KNN_EXACT_MAX", 100)
    built = []

    def recording(x, *, ivf_threshold):
        built.append(ivf_threshold)
        # a low recall target keeps nprobe at 1: one list of ~40 points searched per row
        return build_index(x, ivf_threshold=ivf_threshold, target_recall=0.01)

    monkeypatch.setattr(project, "build_index", recording)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, size=4000)
    vectors = (np.eye(32)[labels] * 5 + 0.3 * rng.normal(size=(4000, 32))).astype(np.float32)
    sample = sample_rows(4000, 800, seed=0)
    # k=150 of 800: 20 lists of ~40 points, of which one is searched, holds fewer
    first = project.place(vectors, sample, linear_layout(vectors[sample]), k=150, chunk=1000)
    assert built == [100, 800]  # the IVF index, then the exact one for the rows it left short
    np.testing.assert_array_equal(project.place(vectors, sample, linear_layout(vectors[sample]), k=150, chunk=1000),
                                  first)
    assert np.isfinite(first).all()
    centres = 10 * LAYOUT[:6] * (5 / np.sqrt(25 + 32 * 0.09))  # where the layout puts each cluster
    nearest = np.linalg.norm(first[:, None, :] - centres[None], axis=2).argmin(axis=1)
    np.testing.assert_array_equal(nearest, labels)


def test_a_point_with_neighbours_on_two_islands_goes_to_the_island_of_most_not_between():
    sample_coords = np.array([[0, 0], [0.2, 0], [0, 0.2], [0.2, 0.2], [0.1, 0.1], [10, 10], [10.2, 10]], np.float32)
    found = np.array([[5, 0, 6, 1, 2, 3, 4]])  # its nearest is on the far island, most are near (0, 0)
    sims = np.array([[0.99, 0.98, 0.97, 0.96, 0.95, 0.94, 0.93]], np.float32)
    where = placed_coords(sims, found, sample_coords)
    # The reference: the four points nearest the coordinate-wise median (0.2, 0.2), weighted by similarity.
    near = [3, 1, 2, 4]
    weights = sims[0, [list(found[0]).index(i) for i in near]]
    np.testing.assert_allclose(where[0], (weights[:, None] * sample_coords[near]).sum(0) / weights.sum(), rtol=1e-6)
    assert np.linalg.norm(where[0]) < 0.3


def test_non_finite_embeddings_are_refused_with_the_run_and_the_count(store, monkeypatch):
    run = embedded_run(store)
    run.projection_dir.mkdir()
    np.save(run.projection_dir / "umap_2d.npy", np.zeros((400, 2), np.float32))  # a map of older embeddings
    test = np.load(run.embeddings_dir / "test.npy")
    test[[3, 40], 5], test[7, 0] = np.nan, np.inf
    np.save(run.embeddings_dir / "test.npy", test)
    with pytest.raises(ValueError, match=rf"run {run.id}: 3 of 400 embeddings hold NaN or infinite values "
                                         r"\(rows 303, 307, 340; ids test/3, test/7, test/40\)"):
        project_run(run, backend="umap-learn")
    assert not any(run.projection_dir.iterdir())  # no map of these, and none of older embeddings


# -- umap-learn itself ---------------------------------------------------------------------------
@pytest.mark.slow
def test_umap_learn_maps_a_run_and_records_its_version(store):
    import umap
    from sklearn.manifold import trustworthiness

    run = embedded_run(store)
    params = project_run(run, backend="umap-learn")["umap"]
    assert (params["backend"], params["version"], params["device"]) == ("umap-learn", umap.__version__, "cpu")
    assert params["numba_cache"] == os.environ["NUMBA_CACHE_DIR"]
    coords, kind = load_map(run)
    vectors, *_ = load_all_embeddings(run)
    assert kind == "umap" and np.isfinite(coords).all()
    assert trustworthiness(vectors, coords, n_neighbors=10, metric="cosine") > 0.9


@pytest.mark.slow
def test_umap_learn_on_a_sample_gives_the_same_map_twice(store):
    from sklearn.manifold import trustworthiness

    run = embedded_run(store, train_size=1500, test_size=500)
    first = project_run(run, backend="umap-learn", sample_above=1000, sample_size=500)["umap"]
    coords = load_map(run)[0]
    second = project_run(run, backend="umap-learn", sample_above=1000, sample_size=500)["umap"]
    np.testing.assert_array_equal(load_map(run)[0], coords)
    assert first["method"] == second["method"] == SAMPLED and first["sample"]["size"] == 500
    vectors, *_ = load_all_embeddings(run)
    assert trustworthiness(vectors, coords, n_neighbors=10, metric="cosine") > 0.85


CACHE_PROBE = textwrap.dedent("""
    import json, numba, numpy as np
    import umap  # compiles two tiny kernels with explicit signatures at import, cache or not
    from numba.core import event
    from ssl_core.steps.projection import project_umap
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    with event.install_recorder("numba:compile") as recorder:
        project_umap(x, n_neighbors=10)
        numba.njit(lambda v: v + 1)(1)  # never cached: shows that the recorder sees a compilation
    compiled = {e.data["dispatcher"].py_func.__module__ for _, e in recorder.buffer if e.is_start}
    print(json.dumps(sorted(m for m in compiled if m.split(".")[0] in ("umap", "pynndescent", "__main__"))))
""")


@pytest.mark.slow
def test_a_second_process_loads_umap_learns_kernels_from_the_cache():
    """Once this process has mapped (compiling umap-learn's kernels into the cache, or loading
    them from it), a fresh process compiles none of them while it maps: the ~25 s a fresh
    process otherwise spends. (The cold compile itself is not repeated here: it is that 25 s.)"""
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    project.project_umap(x, n_neighbors=10)  # the same kernels and types as the probe's
    env = {**os.environ, "NUMBA_CACHE_DIR": str(project.numba_cache_dir()), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True, text=True,
                         timeout=600, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == ["__main__"]
