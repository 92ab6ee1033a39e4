"""The status of a run from training through the steps after it: every write of status.json in
order, so a page that reads it at any moment sees the truth (no finished or idle moment between
training and the steps that follow it)."""

from __future__ import annotations

import json

import pytest

from ssl_core.store import atomic
from ssl_core.workflows.pipeline import run_all
from tiny_runs import tiny_config


@pytest.fixture
def status_writes(monkeypatch) -> list[tuple[str, str | None]]:
    """(status, stage) of every status.json written from now on, in order."""
    writes = []
    real_write = atomic.atomic_write_bytes

    def recording_write(path, data):
        if path.name == "status.json":
            record = json.loads(data)
            writes.append((record["status"], record.get("stage")))
        real_write(path, data)

    monkeypatch.setattr(atomic, "atomic_write_bytes", recording_write)
    return writes


def test_training_hands_over_to_the_steps_after_it_without_a_finished_moment(store, status_writes):
    run = store.create(tiny_config(train_size=64, test_size=32, epochs=1))
    del status_writes[:]  # the queued status of a new run
    run_all(run, skip=["project"], progress=False, log=lambda message: None)  # UMAP costs ~15 s: not needed here

    assert status_writes[-1] == ("finished", "done")
    assert {status for status, _ in status_writes[:-1]} == {"running"}, status_writes
    stages = [stage for _, stage in status_writes]
    assert stages[0] == "load" and "train" in stages
    after_training = stages[len(stages) - stages[::-1].index("train"):]
    assert after_training[0] == "embed", "training hands the status over to the first step"
    assert list(dict.fromkeys(after_training)) == ["embed", "eval", "index", "done"]


def test_with_every_step_skipped_training_ends_finished(store, status_writes):
    run = store.create(tiny_config(train_size=64, test_size=32, epochs=1))
    run_all(run, skip=["embed", "eval", "project", "index"], progress=False, log=lambda message: None)
    assert status_writes[-1] == ("finished", "train")
    assert {status for status, _ in status_writes[1:-1]} == {"running"}, status_writes
