"""Data-parallel training under torchrun: two CPU processes over gloo, one run folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssl_core.store import files
from ssl_core.store.run_store import RunStore
from ssl_core.models.checkpoint import load_checkpoint
from tiny_runs import trained_run

# No map snapshots (--map-snapshots 0): a map per check would cost these runs' fresh processes seconds.
TINY = ["--dataset", "shapes", "--backbone", "convnet", "--device", "cpu", "--map-snapshots", "0", "--train-size", "128",
        "--test-size", "64", "--batch-size", "32", "--no-progress"]


def torchrun(*args: str, runs_dir, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSL_EXPLORER_RUNS": str(runs_dir)}
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "ssl_core.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_two_processes_train_one_run_with_the_global_batch(tmp_path):
    out = torchrun("train", "--method", "simclr", "--epochs", "2", "--skip", "project,index", *TINY,
                   runs_dir=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = RunStore(tmp_path).list()
    assert len(runs) == 1, "rank 1 must not make a run of its own"
    run = RunStore(tmp_path).get(runs[0].id)
    assert out.stdout.strip().splitlines()[-1] == run.id, "the id is printed once, last"
    status = run.read_status()
    # --batch-size is the global batch: 128 images / 32 = 4 steps an epoch, as in one process.
    assert status["status"] == "finished" and status["total_steps"] == 8
    assert json.loads(run.config_path.read_text())["processes"] == 2
    logged = [m for m in run.read_metrics() if "loss" in m]
    assert logged[-1]["step"] == 8 and torch.isfinite(torch.tensor([m["loss"] for m in logged])).all()
    assert load_checkpoint(run)["step"] == 8
    assert run.read_eval()["num_train"] == 128


@pytest.mark.slow
def test_a_batch_that_does_not_split_is_refused_on_every_rank(tmp_path):
    out = torchrun("train", "--method", "simclr", "--epochs", "1", *TINY[:-3], "--batch-size", "33",
                   "--no-progress", runs_dir=tmp_path)
    assert out.returncode != 0
    assert "does not split over 2 processes" in out.stderr


@pytest.mark.slow
def test_two_processes_embed_a_run_as_one_does(tmp_path):
    # Odd split sizes: the two shares differ by one row, and the rows must still come back in order.
    run = trained_run(tmp_path, "simclr", train_size=101, test_size=37)
    alone = {split: np.load(run.embeddings_dir / files.vectors(split)) for split in ("train", "test")}
    ids = {split: (run.embeddings_dir / files.ids(split)).read_text() for split in ("train", "test")}
    for path in run.embeddings_dir.iterdir():
        path.unlink()
    out = torchrun("embed", run.id, "--device", "cpu", runs_dir=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for split in ("train", "test"):
        together = np.load(run.embeddings_dir / files.vectors(split))
        assert together.shape == alone[split].shape and together.dtype == np.float16
        np.testing.assert_allclose(together.astype(np.float32), alone[split].astype(np.float32), atol=2e-3)
        assert (run.embeddings_dir / files.ids(split)).read_text() == ids[split]
    assert not list(run.embeddings_dir.glob(".part-*")), "the parts are gone once joined"
    assert run.read_status()["status"] == "finished"
