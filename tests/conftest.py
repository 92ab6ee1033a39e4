"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_server import served_app
from hostile_runs import hostile_run
from ssl_core.steps.index import index_run
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> Path:
    """The bundled runs of pretrained/ as `ssl-explorer demo` installs them (an untrained run's
    embeddings and every search index computed), once per session: tests read or copy them."""
    from ssl_core.cli.demo import install_demo_runs

    root = tmp_path_factory.mktemp("demo") / "runs"
    install_demo_runs(RunStore(root), PRETRAINED)
    return root


@pytest.fixture(scope="session")
def hostile_app(tmp_path_factory) -> tuple[int, Run]:
    """(port, run): `ssl-explorer app` as users start it, over a runs folder holding one hostile
    run (hostile_runs) with its search index; started once for the session's browser tests."""
    run = hostile_run(RunStore(tmp_path_factory.mktemp("hostile") / "runs"))
    index_run(run)
    with served_app(run.path.parent) as port:
        yield port, run
