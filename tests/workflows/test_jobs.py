"""Training jobs in their own process: start, cancel (checkpoint kept), resume."""

from __future__ import annotations

import time

import pytest

from ssl_core.workflows import jobs
from ssl_core.models.checkpoint import load_checkpoint
from tiny_runs import tiny_request


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
def test_start_cancel_resume(store):
    run = jobs.start(store, tiny_request(epochs=10, checkpoint_every=2, skip=("project", "index")))
    assert run.read_status()["status"] in ("queued", "running"), "start returns at once"
    wait_for(lambda: run.checkpoint_path.exists(), what="a first checkpoint")

    assert jobs.cancel(store, run.id)
    wait_for(lambda: run.read_status()["status"] == "interrupted", what="status interrupted")
    stopped_at = load_checkpoint(run)["step"]
    assert 0 < stopped_at < 30
    assert not jobs.cancel(store, run.id), "nothing left to cancel"

    with pytest.raises(ValueError, match="nothing to resume"):
        (run.path / "status.json").write_text('{"status": "finished"}')
        jobs.resume(store, run.id)
    run.set_status("interrupted")
    jobs.resume(store, run.id, skip=("project", "index"))
    with pytest.raises(ValueError, match="already"):
        jobs.resume(store, run.id)
    wait_for(lambda: run.read_status()["status"] in ("finished", "failed"), timeout=240, what="the resumed job")
    assert run.read_status()["status"] == "finished", (run.path / "train.log").read_text()[-2000:]
    assert load_checkpoint(run)["step"] == 30
    steps = [m["step"] for m in run.read_metrics() if "loss" in m]
    assert steps == sorted(set(steps)), "a resumed run logs each step once"
    assert "resuming run" in (run.path / "train.log").read_text()
