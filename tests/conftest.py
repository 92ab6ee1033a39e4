"""Shared fixtures."""

from __future__ import annotations

import pytest

from ssl_core.runs import RunStore


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")
