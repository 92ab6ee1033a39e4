"""Faults a user brings, and how training and the run store come through them: Ctrl-C (twice, or
while loading), a corrupt checkpoint, an import killed half-way, an .npz renamed .npy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from ssl_core.cli import main
from ssl_core.workflows.importer import InvalidImport, import_embeddings
from ssl_core.store.run_store import STAGING_OWNER, STAGING_PREFIX, STAGING_UNOWNED_SECONDS
from ssl_core.models.checkpoint import CorruptCheckpoint, load_checkpoint
from ssl_core.training.loop import TrainingInterrupted, train
from tiny_runs import tiny_config

# A training process whose step (or loading) takes a minute: long enough that only a signal ends it.
SLOW_TRAINING = """
import sys, time
from ssl_core.training import loop as training
from ssl_core.store.run_store import RunStore

root, run_id, stage = sys.argv[1:]
if stage == "step":
    forward = training.TrainingStep.forward

    def slow_step(self, *args):
        print("stepping", flush=True)
        time.sleep(60)
        return forward(self, *args)

    training.TrainingStep.forward = slow_step
else:
    def slow_load(cfg):
        print("loading", flush=True)
        time.sleep(60)

    training.load_dataset = slow_load
try:
    training.train(RunStore(root).get(run_id), progress=False)
except training.TrainingInterrupted as e:
    print(f"interrupted: {e}", flush=True)
    sys.exit(130)
"""


def start_slow_training(store, stage: str) -> tuple[subprocess.Popen, object]:
    run = store.create(tiny_config(train_size=32, test_size=16, batch_size=16, epochs=20))
    process = subprocess.Popen([sys.executable, "-c", SLOW_TRAINING, str(store.root), run.id, stage],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout.readline().strip() == ("stepping" if stage == "step" else "loading")
    return process, run


@pytest.mark.timeout(90)
def test_a_second_ctrl_c_stops_training_at_once(store):
    process, run = start_slow_training(store, "step")
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1)
        assert process.poll() is None, "the first Ctrl-C waits for the step to end, then checkpoints"
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 130, process.stdout.read()
        assert time.monotonic() - started < 20  # not the minute the step would have taken
    finally:
        process.kill()
    status = run.read_status()
    assert status["status"] == "interrupted" and "stopped at once at step 0" in status["error"], status


@pytest.mark.timeout(90)
def test_a_signal_while_loading_stops_at_once_with_nothing_lost(store):
    process, run = start_slow_training(store, "load")
    try:
        process.send_signal(signal.SIGTERM)  # what cancelling a job from the app sends
        assert process.wait(timeout=20) == 130, process.stdout.read()
    finally:
        process.kill()
    status = run.read_status()
    assert status["status"] == "interrupted" and status["stage"] == "load", status
    assert "stopped while loading" in status["error"]


@pytest.fixture
def interrupted_run(store):
    """A tiny run stopped after its first step, with that step's checkpoint."""
    stop = threading.Event()
    run = store.create(tiny_config(train_size=32, test_size=16, batch_size=16, epochs=2))
    with pytest.raises(TrainingInterrupted):
        train(run, progress=False, stop=stop, callbacks=(lambda step, record: stop.set(),))
    assert load_checkpoint(run)["step"] == 1
    return run


def test_a_truncated_checkpoint_is_named_corrupt_by_the_cli(store, interrupted_run, capsys):
    run = interrupted_run
    data = run.checkpoint_path.read_bytes()
    run.checkpoint_path.write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", run.id, "--runs-dir", str(store.root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: run {run.id}: checkpoint.pt is corrupt or incomplete ("), err
    assert line.endswith("; retrain, or restore an earlier copy") and line == err.strip().splitlines()[-1]
    assert "Traceback" not in err and "weights_only" not in err
    status = run.read_status()
    assert status["status"] == "failed" and "checkpoint.pt is corrupt" in status["error"]
    # Garbage, an empty file, and a dict without the weights read the same.
    for content in (os.urandom(2048), b"", None):
        if content is None:
            import torch

            torch.save({"step": 1}, run.checkpoint_path)
        else:
            run.checkpoint_path.write_bytes(content)
        with pytest.raises(CorruptCheckpoint, match="corrupt or incomplete") as caught:
            load_checkpoint(run)
        assert "weights_only" not in str(caught.value)


def test_a_staging_folder_left_by_a_killed_import_is_cleared(store):
    killed = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from ssl_core.store.run_store import RunStore
from tiny_runs import tiny_config
with RunStore(sys.argv[1]).create_atomically(tiny_config()) as run:
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 half-way through an import
"""
    tests = os.path.dirname(os.path.dirname(__file__))  # where tiny_runs.py is
    assert subprocess.run([sys.executable, "-c", killed, str(store.root), tests], timeout=60).returncode == -9
    (left,) = store.root.glob(f"{STAGING_PREFIX}*")
    # One of an older version (no owner) stays while it may still be filling, then goes too.
    unowned = store.root / f"{STAGING_PREFIX}old"
    (unowned / "run").mkdir(parents=True)
    with store.create_atomically(tiny_config()) as run:  # a live one: this process is filling it
        assert not left.exists()  # cleared by the create
        store.list()
        assert (run.path.parent / STAGING_OWNER).exists() and unowned.exists()
    old = time.time() - STAGING_UNOWNED_SECONDS - 60
    os.utime(unowned, (old, old))
    assert [s.id for s in store.list()] == [run.id]
    assert not list(store.root.glob(f"{STAGING_PREFIX}*"))


def test_an_npz_renamed_npy_is_refused_naming_what_it_holds(store, tmp_path, capsys):
    np.savez(tmp_path / "vectors.npz", embeddings=np.ones((10, 4)), ids=np.arange(10))
    renamed = tmp_path / "vectors.npy"
    (tmp_path / "vectors.npz").rename(renamed)
    (tmp_path / "images").mkdir()
    with pytest.raises(InvalidImport, match=r"vectors.npy is an .npz archive of 2 arrays \(embeddings, ids\), "
                                            r"not one .npy array"):
        import_embeddings(store, images=tmp_path / "images", embeddings=renamed)
    assert main(["import", "--images", str(tmp_path / "images"), "--embeddings", str(renamed),
                 "--runs-dir", str(store.root)]) == 2
    assert capsys.readouterr().err.count("error:") == 1
    # Pickled objects are refused, never unpickled.
    np.save(renamed, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidImport, match="not a plain numeric .npy array: it holds pickled Python objects"):
        import_embeddings(store, images=tmp_path / "images", embeddings=renamed)
    assert not list(store.root.glob("*"))  # nothing was made
