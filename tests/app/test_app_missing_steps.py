"""ssl_core.steps.readiness.missing_steps: which stored outputs a run lacks (added for the Explore page)."""

from __future__ import annotations

import shutil

from ssl_core.steps.readiness import missing_steps
from ssl_core.store.run_store import RunStore
from tiny_runs import tiny_config


def test_a_finished_run_lacks_nothing_and_removed_outputs_are_named_in_pipeline_order(run):
    assert missing_steps(run) == []
    run.index_path.unlink()
    shutil.rmtree(run.projection_dir)
    assert missing_steps(run) == ["project", "index"]
    (run.embeddings_dir / "test_ids.json").unlink()
    assert missing_steps(run) == ["embed", "project", "index"]


def test_a_new_run_lacks_every_step(tmp_path):
    run = RunStore(tmp_path).create(tiny_config())
    assert missing_steps(run) == ["embed", "eval", "project", "index"]
