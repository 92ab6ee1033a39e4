"""A finished run whose checkpoint is corrupted afterwards: a re-embed fails, but the run stays
finished and its map, neighbours and index, which are intact, stay on the Explore page."""

from __future__ import annotations

import io

from PIL import Image

from app_driver import open_page, texts
from ssl_core.cli import main
from ssl_core.steps.browsing import run_images
from ssl_core.steps.readiness import missing_steps


def test_a_failed_re_embed_leaves_a_finished_run_explorable(run, runs_dir, capsys):
    data = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(data[: len(data) // 3])
    assert main(["embed", run.id, "--runs-dir", str(runs_dir), "--device", "cpu"]) == 2
    assert "checkpoint.pt is corrupt or incomplete" in capsys.readouterr().err
    status = run.read_status()
    assert status["status"] == "finished" and status["stage"] == "done", status
    assert "embed failed" in status["last_error"] and "checkpoint.pt is corrupt" in status["last_error"]
    assert missing_steps(run) == []

    at = open_page("explore", {"run": run.id})
    assert at.get("component_instance"), texts(at.warning) + texts(at.error)
    assert any("failed" in w and "checkpoint.pt is corrupt" in w for w in texts(at.warning)), texts(at.warning)
    assert "Nearest neighbours" in texts(at.subheader)
    # Search by upload needs the model: it says why it cannot, instead of a traceback.
    buffer = io.BytesIO()
    Image.fromarray(run_images(run)[0]).save(buffer, format="PNG")
    at.file_uploader(key="explore_upload").upload("mine.png", buffer.getvalue(), "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("checkpoint.pt is corrupt or incomplete" in e for e in texts(at.error)), texts(at.error)
