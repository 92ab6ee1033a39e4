"""Fixtures for the app's tests: one tiny finished run, trained once per session, and a fresh
copy of it for each test to point the app at (tests rename and delete runs)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ssl_core.workflows.pipeline import run_all
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from tiny_runs import tiny_config

# The app's modules import each other as top-level modules (`widgets.map_figure`, `loaders`), as
# they do under `streamlit run app/streamlit_app.py`; tests that import them directly need the same.
APP_DIR = Path(__file__).resolve().parents[2] / "app"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> tuple[Path, str]:
    """(runs folder, run id) of a finished shapes run: 160 train + 64 test images, one epoch, with
    embeddings, scores, map and index. The first UMAP in a process costs ~20 s; paid once here."""
    store = RunStore(tmp_path_factory.mktemp("trained") / "runs")
    run = store.create(tiny_config(train_size=160, test_size=64, epochs=1, batch_size=32))
    run_all(run, progress=False, log=lambda message: None)
    return store.root, run.id


@pytest.fixture
def runs_dir(trained_runs, tmp_path, monkeypatch) -> Path:
    """A copy of the trained runs folder that the app under test uses ($SSL_EXPLORER_RUNS)."""
    root = tmp_path / "runs"
    shutil.copytree(trained_runs[0], root)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(root))
    return root


@pytest.fixture
def run(runs_dir, trained_runs) -> Run:
    return RunStore(runs_dir).get(trained_runs[1])




@pytest.fixture(scope="session")
def bundled_copy(tmp_path_factory, demo_runs) -> Path:
    """The bundled runs of pretrained/, whichever they are, as the demo installs them but without
    their weights and search indexes (what the Overview and the pages' defaults read). Tests only
    read it."""
    root = tmp_path_factory.mktemp("bundled") / "runs"
    for folder in sorted(p for p in demo_runs.iterdir() if (p / "config.json").exists()):
        shutil.copytree(folder, root / folder.name, ignore=shutil.ignore_patterns("checkpoint.pt", "index", ".job.lock"))
    return root


@pytest.fixture
def bundled_runs(bundled_copy, monkeypatch) -> Path:
    """The app under test reads the copy of the bundled runs ($SSL_EXPLORER_RUNS)."""
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(bundled_copy))
    return bundled_copy
