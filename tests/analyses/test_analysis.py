"""The analysis runner: runs what is missing, keeps what is stored, records progress and
failures in analysis/job.json; the `analyze` command and the background job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ssl_core.analyses import runner as analysis
from ssl_core.workflows import jobs
from ssl_core.store.atomic import atomic_write_json
from tiny_runs import embedded_run

CALLS: list[str] = []


def _first(run, *, device="cpu", progress=None):
    CALLS.append("first")
    progress(0.5, "halfway")
    summary = {"value": 1, "device": device}
    atomic_write_json(run.analysis_dir / "first.json", summary)
    return summary


def _second(run, *, device="cpu", progress=None):
    CALLS.append("second")
    summary = {"value": 2}
    atomic_write_json(run.analysis_dir / "second.json", summary)
    return summary


def _broken(run, *, device="cpu", progress=None):
    CALLS.append("broken")
    raise RuntimeError("the probe ran out of rows")


@pytest.fixture
def own_analyses(monkeypatch):
    """The registry replaced by this module's analyses (functions, imported by path)."""
    CALLS.clear()
    monkeypatch.setattr(analysis, "ANALYSES", {"first": "test_analysis:_first", "second": "test_analysis:_second",
                                               "broken": "test_analysis:_broken"})


def test_missing_then_run_then_stored_and_not_run_again(store, own_analyses):
    run = embedded_run(store, train_size=60, test_size=20)
    assert analysis.missing_analyses(run, ["first", "second"])["missing"] == ["first", "second"]
    fractions = []
    result = analysis.run_analyses(run, ["first", "second"], device="cpu",
                                   progress=lambda fraction, text: fractions.append(fraction))
    assert result["ran"] == ["first", "second"] and CALLS == ["first", "second"]
    assert result["results"]["first"] == {"value": 1, "device": "cpu"}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0.2 < fractions[1] < 0.3  # first at half
    state = analysis.missing_analyses(run, ["first", "second"])
    assert state["missing"] == [] and state["stored"] == ["first", "second"]
    job = analysis.read_job(run)
    assert job["status"] == "finished" and job["done"] == ["first", "second"] and job["fraction"] == 1.0

    again = analysis.run_analyses(run, ["first", "second"], device="cpu")
    assert again["ran"] == [] and again["skipped"] == ["first", "second"] and CALLS == ["first", "second"]
    analysis.run_analyses(run, ["second"], recompute=True, device="cpu")
    assert CALLS == ["first", "second", "second"]


def test_a_failure_keeps_earlier_results_and_records_the_error(store, own_analyses):
    run = embedded_run(store, train_size=60, test_size=20)
    with pytest.raises(ValueError, match="analysis 'broken' failed: RuntimeError: the probe ran out of rows"):
        analysis.run_analyses(run, ["first", "broken", "second"], device="cpu")
    assert CALLS == ["first", "broken"]
    assert json.loads((run.analysis_dir / "first.json").read_text())["value"] == 1
    job = analysis.read_job(run)
    assert job["status"] == "failed" and job["current"] == "broken" and job["done"] == ["first"]
    assert f"ssl-explorer analyze {run.id} --only broken" in job["error"]
    assert "RuntimeError" in (run.analysis_dir / analysis.LOG_FILE).read_text()
    # The next run does only what is still missing.
    analysis.run_analyses(run, ["first", "second"], device="cpu")
    assert CALLS == ["first", "broken", "second"]


def test_unknown_names_and_analyses_that_do_not_apply(store):
    run = embedded_run(store, train_size=60, test_size=20)
    with pytest.raises(KeyError, match="unknown analysis 'layer'; known: layers, factors, finetune"):
        analysis.run_analyses(run, ["layer"])
    config = json.loads(run.config_path.read_text())
    config["method"] = {"name": "pixels"}
    run.config_path.write_text(json.dumps(config))
    state = analysis.missing_analyses(run, ["layers", "finetune", "factors"])
    assert state["missing"] == ["factors"]
    assert "no layers" in state["not_applicable"]["layers"]
    with pytest.raises(ValueError, match="'layers' does not apply: the pixels baseline has no layers"):
        analysis.run_analyses(run, ["layers"])


def test_a_dead_job_reads_as_failed(store):
    run = embedded_run(store, train_size=60, test_size=20)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    analysis.write_job(run, names=["factors"], current="factors", pid=child.pid)
    job = analysis.read_job(run)
    assert job["status"] == "failed" and f"ssl-explorer analyze {run.id}" in job["error"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssl_core.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_the_analyze_command_prints_json(store):
    run = embedded_run(store, train_size=120, test_size=40)
    result = _cli("analyze", run.id, "--only", "factors", "--runs-dir", str(store.root), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ran"] == ["factors"] and summary["run_id"] == run.id
    names = [f["name"] for f in summary["results"]["factors"]["factors"]]
    assert names == ["color_hue", "scale", "rotation", "pos_x", "pos_y", "background"]
    assert "analyze" in result.stderr  # the progress bar
    bad = _cli("analyze", run.id, "--only", "nope", "--runs-dir", str(store.root))
    assert bad.returncode == 2 and "unknown analysis 'nope'" in bad.stderr


def test_start_analysis_runs_in_the_background_and_refuses_a_second_job(store):
    run = embedded_run(store, train_size=120, test_size=40)
    analysis.write_job(run, names=["factors"], current="factors")  # this process: alive
    with pytest.raises(ValueError, match="already has an analysis job running"):
        jobs.start_analysis(store, run.id, ["factors"])
    analysis.write_job(run, status="finished", names=["factors"])

    pid = jobs.start_analysis(store, run.id, ["factors"], device="cpu")
    assert pid != os.getpid() and analysis.read_job(run)["status"] in ("queued", "running", "finished")
    deadline = time.time() + 240
    while analysis.job_running(run) and time.time() < deadline:
        time.sleep(0.3)
    job = analysis.read_job(run)
    log = (run.analysis_dir / analysis.LOG_FILE).read_text()
    assert job["status"] == "finished", (job, log[-2000:])
    assert job["done"] == ["factors"] and (run.analysis_dir / "factors.json").exists()
    assert json.loads(log[log.index("{"):])["ran"] == ["factors"]
