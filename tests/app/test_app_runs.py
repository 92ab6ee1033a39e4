"""The Runs page: the table of runs, renaming, deleting with a confirmation, broken runs."""

from __future__ import annotations


from app_driver import open_page, rendered, texts
from ssl_core.steps.readiness import resumable


def table(at):
    return at.dataframe[0].value


def test_lists_the_run_with_its_status_scores_and_the_runs_folder(run, runs_dir):
    at = open_page("runs")
    rows = table(at)
    assert list(rows["run"]) == [run.id]
    row = rows.iloc[0]
    assert (row["status"], row["method"], row["dataset"], row["backbone"]) == ("finished", "simclr", "shapes", "convnet")
    assert row["progress"] == "5/5"  # 160 images / batch 32, one epoch
    assert abs(row["kNN top-1"] - run.read_eval()["knn_top1"]) < 1e-9
    assert any(str(runs_dir.resolve()) in c for c in texts(at.caption))


def test_rename_stores_a_display_name_shown_in_the_table(run):
    at = open_page("runs")
    at.text_input(key=f"runs_name_{run.id}").input("baseline, one epoch")
    at.button(key="runs_rename").click().run()
    assert (run.path / "label.txt").read_text().strip() == "baseline, one epoch"
    assert table(at).iloc[0]["name"] == "baseline, one epoch"
    assert any("baseline, one epoch" in s for s in texts(at.success))


def test_delete_asks_first_and_keep_it_keeps_it(run):
    at = open_page("runs")
    at.button(key="runs_delete").click().run()
    assert run.path.is_dir()
    assert any("cannot be undone" in w for w in texts(at.warning))
    at.button(key="runs_delete_cancel").click().run()
    assert run.path.is_dir()
    assert not any("cannot be undone" in w for w in texts(at.warning))

    at.button(key="runs_delete").click().run()
    at.button(key="runs_delete_confirm").click().run()
    assert not run.path.exists()
    assert any(f"Deleted run {run.id}" in s for s in texts(at.success))
    assert any("No runs yet" in i for i in texts(at.info))


def test_broken_runs_are_listed_with_the_reason(run, runs_dir):
    (runs_dir / "hand-edited").mkdir()
    (runs_dir / "hand-edited" / "config.json").write_text("{not json")
    at = open_page("runs")
    rows = table(at).set_index("run")
    assert rows.loc["hand-edited", "status"] == "broken"
    assert "not valid JSON" in rows.loc["hand-edited", "note"]
    assert any("hand-edited" in w and "not valid JSON" in w for w in texts(at.warning))
    assert rows.loc[run.id, "status"] == "finished"  # the others still read fine


def test_resume_is_offered_for_an_interrupted_run_only(run):
    at = open_page("runs")
    assert at.button(key="runs_resume").disabled  # finished: nothing to resume, as the CLI would say
    assert rendered(at.button(key="runs_resume").help) == resumable(run) and "nothing to resume" in resumable(run)
    run.set_status("interrupted", stage="train", step=3, total_steps=5, error="stopped at step 3 of 5")
    at = open_page("runs")
    assert not at.button(key="runs_resume").disabled
    assert table(at).iloc[0]["note"] == "stopped at step 3 of 5"


def test_open_in_explore_switches_to_the_run_on_the_explore_page(run):
    at = open_page("runs")
    at.button(key="runs_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.title) == ["Explore"]
    assert at.selectbox(key="explore_run_picker").value == run.id
    assert at.query_params.get("run") == run.id


def test_a_confirmation_opened_before_a_job_started_does_not_delete_the_running_run(run):
    import subprocess
    import sys

    at = open_page("runs")
    at.button(key="runs_delete").click().run()
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run.set_status("running", stage="train", pid=job.pid)  # resumed elsewhere meanwhile
        at.button(key="runs_delete_confirm").click().run()
        assert run.config_path.exists() and run.eval_path.exists(), "the running run was deleted"
        assert any("cancel it first" in e for e in texts(at.error))
    finally:
        job.kill()
        job.wait()


def test_a_runs_path_that_is_a_file_is_said_once_plainly(tmp_path, monkeypatch):
    a_file = tmp_path / "runs.txt"
    a_file.write_text("")
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(a_file))
    at = open_page("runs")
    assert any("is a file, not a folder" in e for e in texts(at.error))


def test_renaming_on_a_read_only_disk_says_so_and_keeps_the_old_name(run, monkeypatch):
    import errno

    from ssl_core.store import runs as runs_module

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    at = open_page("runs")
    monkeypatch.setattr(runs_module, "atomic_write_bytes", read_only)
    at.text_input(key=f"runs_name_{run.id}").input("new name")
    at.button(key="runs_rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("the file system is read-only" in e and "label.txt" in e for e in texts(at.error))
    assert not (run.path / "label.txt").exists()
