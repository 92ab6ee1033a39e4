"""ssl_core.steps.projection: the backend choice and its record, the PCA map written before UMAP, and
numba's compilation cache across processes. GPU backends are faked by importable stand-in
modules (CI has no GPU); the real umap-learn runs in the tests marked slow."""

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
from ssl_core.steps.projection import load_map, project_pca, project_run, read_params, resolve_backend
from tiny_runs import embedded_run, tiny_config

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


CACHE_PROBE = textwrap.dedent("""
    import json, numpy as np
    import umap  # compiles two tiny kernels with explicit signatures at import, cache or not
    from numba.core import event
    from ssl_core.steps.projection import project_umap
    x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
    with event.install_recorder("numba:compile") as recorder:
        project_umap(x, n_neighbors=10)
    compiled = {e.data["dispatcher"].py_func.__module__ for _, e in recorder.buffer if e.is_start}
    print(json.dumps(sorted(m for m in compiled if m.split(".")[0] in ("umap", "pynndescent"))))
""")


@pytest.mark.slow
def test_a_second_process_loads_umap_learns_kernels_from_the_cache(tmp_path):
    """The first process compiles umap-learn's kernels into NUMBA_CACHE_DIR; the next compiles
    none of them while it maps (the ~25 s a fresh process otherwise spends)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "PYTHONPATH": str(ROOT)}

    def compiled_modules() -> list[str]:
        out = subprocess.run([sys.executable, "-c", CACHE_PROBE], env=env, capture_output=True, text=True,
                             timeout=600, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    assert "umap.layouts" in compiled_modules()  # a cold cache: compiled here, and saved
    assert compiled_modules() == []
