"""What a hand, a crash or a second process can do to a run folder, tried as a hostile user would:
malformed files never break the listing, one process at a time has a run, deletes are all or
nothing, and OS errors read as one sentence."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time

import pytest

from tiny_runs import embedded_run, tiny_config
from ssl_core import cli
from ssl_core.workflows import jobs
from ssl_core.store import atomic, run_store
from ssl_core.store import runs as runs_module
from ssl_core.store.reading import RunBusy, os_error_message
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import validate_run_id


def _finished(store, **kwargs):
    run = embedded_run(store, train_size=40, test_size=20, **kwargs)
    run.set_status("finished", stage="done", total_steps=5)
    return run


# -- one reader that tolerates anything ------------------------------------------------------
def test_bad_lines_and_bad_files_never_break_the_listing(store, capsys):
    good = _finished(store)
    lines = _finished(store)
    lines.append_metrics({"step": 3, "loss": 1.5, "knn_top1": 0.4})
    with lines.metrics_path.open("ab") as f:
        f.write(b"[1, 2]\n42\nnull\n\xff\xfe not utf-8\n{\"step\": \"seven\", \"knn_top1\": \"high\"}\n")
    folder = _finished(store)
    folder.metrics_path.mkdir()
    text_score = _finished(store)
    text_score.eval_path.write_text(json.dumps({"knn_top1": "high"}))
    bad_eval = _finished(store)
    bad_eval.eval_path.write_bytes(b"\xff{")
    status_folder = _finished(store)
    (status_folder.path / "status.json").unlink()
    (status_folder.path / "status.json").mkdir()
    (good.path / "label.txt").mkdir()  # a name that is a folder: no name, not a crash

    listed = {r.id: r for r in store.list()}
    assert listed[good.id].status == "finished" and not listed[good.id].broken
    assert listed[lines.id].status == "finished" and listed[lines.id].step == 3
    assert listed[lines.id].knn_top1 == 0.4  # the text score on the last line is not taken
    assert listed[lines.id].warnings == [
        "metrics.jsonl: line 2 is not a JSON object, skipped", "metrics.jsonl: line 3 is not a JSON object, skipped",
        "metrics.jsonl: line 4 is not a JSON object, skipped", "metrics.jsonl: line 5 is not UTF-8 text, skipped"]
    assert "metrics.jsonl is a folder" in listed[folder.id].broken
    assert "knn_top1 is 'high', not a number" in listed[text_score.id].broken
    assert f"ssl-explorer eval {text_score.id} --recompute" in listed[text_score.id].broken
    assert "eval.json is not UTF-8" in listed[bad_eval.id].broken
    assert "status.json is a folder" in listed[status_folder.id].broken

    assert cli.main(["runs", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {lines.id}: metrics.jsonl: line 5 is not UTF-8 text, skipped" in out
    assert f"broken: {folder.id}: run {folder.id}: metrics.jsonl is a folder, not a file" in out
    assert cli.main(["runs", "--runs-dir", str(store.root), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


def test_a_run_id_with_a_trailing_newline_is_refused(store):
    run = _finished(store)
    with pytest.raises(ValueError, match="invalid run id"):
        validate_run_id(run.id + "\n")
    with pytest.raises(ValueError, match="invalid run id"):
        store.get(run.id + "\n")


# -- one process at a time -------------------------------------------------------------------
HOLD = """
import sys, time
from ssl_core.store.run_store import RunStore
with RunStore(sys.argv[1]).get(sys.argv[2]).lock("train"):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold_lock(run):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run.path.parent), run.id], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_process_is_refused_and_a_killed_holder_frees_the_run(store):
    from ssl_core.analyses.runner import run_analyses
    from ssl_core.workflows.pipeline import run_all, run_post_steps

    run = _finished(store)
    run.set_status("interrupted", stage="train", total_steps=5)
    holder = _hold_lock(run)
    files = sorted(p.name for p in run.path.iterdir())
    try:
        assert run.lock_holder()["pid"] == holder.pid and run.lock_holder()["purpose"] == "train"
        for attempt in (lambda: run_all(run, resume=True, progress=False),  # a second `train --resume`
                        lambda: run_post_steps(run, ["project"], progress=False),
                        lambda: run_analyses(run, ["clusters"]),
                        lambda: jobs.resume(store, run.id),
                        lambda: jobs.start_analysis(store, run.id, ["clusters"]),
                        lambda: store.delete(run.id)):
            with pytest.raises(RunBusy, match=f"process {holder.pid} is using it"):
                attempt()
        assert sorted(p.name for p in run.path.iterdir()) == files, "a refused attempt changed the run"
        assert run.read_status()["status"] == "interrupted"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run.lock_holder() is None  # the kernel dropped the dead process's lock: nothing stale
    store.delete(run.id)
    assert not run.path.exists() and store.list() == []


def test_delete_checks_at_the_click_and_is_all_or_nothing(store, monkeypatch):
    run = _finished(store)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # A job started after the confirmation was opened: its status names a live process.
        run.set_status("running", stage="train", pid=sleeper.pid)
        with pytest.raises(RunBusy, match="cancel it first"):
            store.delete(run.id)
        assert [r.id for r in store.list()] == [run.id] and run.config_path.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    run.append_metrics({"step": 1, "loss": 2.0})

    def refuse(*args):
        raise PermissionError(errno.EACCES, "Permission denied", str(run.path))

    monkeypatch.setattr(run_store.os, "rename", refuse)
    with pytest.raises(PermissionError):
        store.delete(run.id)
    assert run.metrics_path.exists() and run.config_path.exists(), "a failed delete removed files"
    monkeypatch.undo()

    def fail_half_way(path, *args, **kwargs):
        (path / "metrics.jsonl").unlink()
        raise OSError(errno.EIO, "Input/output error", str(path / "embeddings"))

    monkeypatch.setattr(run_store.shutil, "rmtree", fail_half_way)
    with pytest.raises(OSError):
        store.delete(run.id)
    assert store.list() == [], "half a run is listed"
    monkeypatch.undo()
    assert [p.name.startswith(".deleted-") for p in store.root.iterdir()] == [True]
    other = _finished(store)
    store.delete(other.id)
    assert list(store.root.iterdir()) == [], "the leftover of the failed delete was not cleared"


def test_a_job_never_brings_back_a_deleted_run(store):
    run = _finished(store)
    store.delete(run.id)
    with pytest.raises(ValueError, match="no longer exists"):
        run.set_status("running", stage="train")
    with pytest.raises(ValueError, match="no longer exists"):
        runs_module.set_display_name(run, "x")
    assert not run.path.exists()


# -- resume asks the run, not the flags -------------------------------------------------------
def test_resume_refuses_new_settings_and_finished_runs(store, capsys):
    run = _finished(store)
    assert cli.main(["train", "--resume", run.id, "--lr", "0.1", "--epochs", "9", "--runs-dir", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert "--epochs, --lr cannot change it" in err and err.count("\n") == 1
    assert cli.main(["train", "--resume", run.id, "--runs-dir", str(store.root)]) == 2
    assert "has finished; there is nothing to resume" in capsys.readouterr().err
    with pytest.raises(ValueError, match="has finished"):
        jobs.resume(store, run.id)  # the app asks the same question


def test_after_kill_9_the_list_shows_where_resume_continues(tmp_path):
    """A training process killed with SIGKILL between checkpoints: the list shows the step of the
    last checkpoint (where a resume continues), not the later step the metrics had logged."""
    store = RunStore(tmp_path / "runs")
    config = tiny_config(epochs=400, checkpoint_every=3)
    config.train.checkpoint_min_seconds = 3600  # only the first due checkpoint is written
    run = store.create(config)
    job = subprocess.Popen([sys.executable, "-m", "ssl_core.cli", "train", "--resume", run.id, "--runs-dir",
                            str(store.root), "--no-progress", "--skip", "embed,eval,project,index"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and max([m.get("step", 0) for m in run.read_metrics()] or [0]) < 8:
            time.sleep(0.2)
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    [summary] = store.list()
    assert summary.status == "interrupted"
    logged = max(m["step"] for m in run.read_metrics())
    assert logged >= 8 and summary.step == 3, (logged, summary.step)
    from ssl_core.models.checkpoint import load_checkpoint

    assert load_checkpoint(run)["step"] == summary.step


# -- OS errors: one sentence with the path and the cause -------------------------------------
def test_os_errors_read_as_one_sentence(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert cli.main(["train", "--runs-dir", str(a_file), "--epochs", "1"]) == 2
    assert "the runs path" in capsys.readouterr().err
    assert cli.main(["runs", "--runs-dir", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert cli.main(["train", "--runs-dir", str(a_file / "runs"), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot use {a_file}/runs/") and "a file stands where a folder should be" in err
    assert err.count("\n") == 1, err

    store = RunStore(tmp_path / "runs")
    run = _finished(store)

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic, "atomic_write_bytes", read_only)
    assert cli.main(["eval", run.id, "--recompute", "--runs-dir", str(store.root)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: cannot use {run.eval_path}: the file system is read-only\n"
    full = OSError(errno.ENOSPC, "No space left on device", "/x/checkpoint.pt")
    assert os_error_message(full, "write") == "cannot write /x/checkpoint.pt: there is no space left on the disk"
