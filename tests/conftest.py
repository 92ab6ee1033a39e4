"""Shared fixtures."""

from __future__ import annotations

import pytest

from app_server import served_app
from hostile_runs import hostile_run
from ssl_core.steps.index import index_run
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


@pytest.fixture(scope="session")
def hostile_app(tmp_path_factory) -> tuple[int, Run]:
    """(port, run): `ssl-explorer app` as users start it, over a runs folder holding one hostile
    run (hostile_runs) with its search index; started once for the session's browser tests."""
    run = hostile_run(RunStore(tmp_path_factory.mktemp("hostile") / "runs"))
    index_run(run)
    with served_app(run.path.parent) as port:
        yield port, run
