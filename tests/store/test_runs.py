"""The run store: safe ids, atomic writes, and listing that survives broken or dead runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_runs import tiny_config
from ssl_core.store import runs as runs_module
from ssl_core.models.methods import run_kind
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run, validate_run_id


@pytest.mark.parametrize("bad", ["../etc", "a/b", "a\\b", "..", "", ".hidden", "x" * 200, "a..b", "run id"])
def test_rejects_unsafe_run_ids(bad):
    with pytest.raises(ValueError, match="invalid run id"):
        validate_run_id(bad)


def test_get_refuses_path_traversal(store):
    with pytest.raises(ValueError, match="invalid run id"):
        store.get("../../etc")


def test_create_then_list(store):
    run = store.create(tiny_config())
    [summary] = store.list()
    assert summary.id == run.id and summary.status == "queued"
    assert summary.method == "simclr" and summary.dataset == "shapes" and summary.backbone == "convnet"
    assert store.get(run.id).config.data.train_size == 96


def test_a_runs_kind_is_read_from_its_config(store):
    def made(method: str, **extra) -> Run:
        config = tiny_config()
        config.method = {"name": method}
        return store.create(config, extra=extra)

    assert made("simclr", kind=run_kind("simclr")).kind == "trained"
    assert made("random", kind=run_kind("random")).kind == made("pixels", kind=run_kind("pixels")).kind == "baseline"
    assert made("imported").kind == "imported" and made("encoder").kind == "encoder"
    legacy = made("simclr")
    config = json.loads(legacy.config_path.read_text())
    del config["kind"]  # runs made before config.json recorded a kind
    atomic_write_json(legacy.config_path, config)
    assert legacy.kind == "trained"
    assert Run(Path(__file__).resolve().parents[2] / "pretrained" / "demo-random-shapes").kind == "baseline"
    with pytest.raises(ValueError, match="unknown run kind 'guessed'"):
        made("simclr", kind="guessed")


def test_a_crash_between_temp_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    atomic_write_json(target, {"status": "running"})

    def crash(*args, **kwargs):
        raise OSError("power cut")

    monkeypatch.setattr(runs_module.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        atomic_write_json(target, {"status": "finished"})
    assert json.loads(target.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"], "the temporary file was left behind"


def test_a_leftover_temp_file_does_not_confuse_reading(store):
    run = store.create(tiny_config())
    (run.path / ".status.json.abc.tmp").write_text('{"status": "fini')  # torn write of a dead process
    assert store.list()[0].status == "queued"


@pytest.mark.parametrize("damage,reason", [
    (lambda run: (run.path / "config.json").unlink(), "config.json is missing"),
    (lambda run: (run.path / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda run: (run.path / "config.json").write_text('{"train": {"epoch": 3}}'), "unknown TrainConfig field"),
    (lambda run: (run.path / "status.json").write_text('{"status": "sleeping"}'), "no valid status"),
    (lambda run: (run.path / "status.json").unlink(), "status.json is missing"),
])
def test_hand_edited_runs_are_listed_as_broken_with_the_reason(store, damage, reason):
    good = store.create(tiny_config())
    bad = store.create(tiny_config())
    damage(bad)
    listed = {r.id: r for r in store.list()}
    assert listed[good.id].status == "queued"
    assert listed[bad.id].status == "broken" and reason in listed[bad.id].broken


def test_torn_metrics_line_is_skipped(store):
    run = store.create(tiny_config())
    run.append_metrics({"step": 1, "loss": 2.0})
    with run.metrics_path.open("a") as f:
        f.write('{"step": 2, "lo')
    assert run.read_metrics() == [{"step": 1, "loss": 2.0}]


def test_a_run_whose_process_died_silently_shows_as_interrupted(store):
    run = store.create(tiny_config())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    status = {"status": "running", "pid": child.pid, "pid_start": runs_module.process_start_time(child.pid),
              "host": os.uname().nodename}
    atomic_write_json(run.path / "status.json", status)
    assert store.list()[0].status == "running"
    child.kill()
    child.wait()
    [summary] = store.list()
    assert summary.status == "interrupted"
    assert "ended without a word" in summary.error


def test_reused_pid_is_not_mistaken_for_the_run(store):
    run = store.create(tiny_config())
    status = {"status": "running", "pid": os.getpid(), "pid_start": "1", "host": os.uname().nodename}
    atomic_write_json(run.path / "status.json", status)
    assert store.list()[0].status == "interrupted"


def test_unknown_run_names_the_folder(tmp_path):
    with pytest.raises(KeyError, match="holds no runs"):
        RunStore(tmp_path).get("nope")
