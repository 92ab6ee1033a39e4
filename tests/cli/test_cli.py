"""The command line, end to end, as a user types it (each command a fresh process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# No map snapshots (--map-snapshots 0): a map per check would cost these runs' fresh processes seconds.
TINY = ["--dataset", "shapes", "--backbone", "convnet", "--device", "cpu", "--map-snapshots", "0", "--train-size", "256",
        "--test-size", "128", "--batch-size", "64", "--no-progress"]


def cli(*args: str, runs_dir=None, env_runs=None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SSL_EXPLORER_RUNS", None)
    if env_runs is not None:
        env["SSL_EXPLORER_RUNS"] = str(env_runs)
    extra = ["--runs-dir", str(runs_dir)] if runs_dir is not None else []
    result = subprocess.run([sys.executable, "-m", "ssl_core.cli", *args, *extra], env=env,
                            capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"ssl-explorer {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.mark.slow
def test_train_runs_eval_neighbors(tmp_path):
    runs_dir = tmp_path / "runs"
    # The map is left to the `project` command below (a UMAP per process costs seconds).
    trained = cli("train", "--method", "simclr", "--epochs", "2", "--skip", "project", *TINY, env_runs=runs_dir)
    run_id = trained.stdout.strip().splitlines()[-1]
    assert (runs_dir / run_id / "index" / "faiss.index").exists(), "--runs-dir via $SSL_EXPLORER_RUNS"

    listing = cli("runs", runs_dir=runs_dir).stdout
    assert run_id in listing and "finished" in listing and "simclr" in listing and "shapes" in listing

    scores = json.loads(cli("eval", run_id, runs_dir=runs_dir).stdout)
    assert 0.0 <= scores["knn_top1"] <= 1.0 and 0.0 <= scores["linear_top1"] <= 1.0
    assert scores["num_train"] == 256 and scores["num_test"] == 128

    result = json.loads(cli("neighbors", run_id, "--index", "17", "-k", "8", "--json", runs_dir=runs_dir).stdout)
    hits = result["neighbors"]
    assert len(hits) == 8 and all(h["row"] != 17 for h in hits)
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances)
    assert {"id", "label", "label_name", "split"} <= set(hits[0])
    table = cli("neighbors", run_id, "--index", "17", "-k", "8", runs_dir=runs_dir).stdout
    assert hits[0]["id"] in table and "share the query's label" in table

    projection = runs_dir / run_id / "projection" / "umap_2d.npy"
    assert not projection.exists()
    cli("project", run_id, runs_dir=runs_dir)
    assert projection.exists(), "a skipped step can be run on its own"


def test_unknown_names_list_the_valid_ones(tmp_path):
    bad_method = cli("train", "--method", "simclrr", *TINY, runs_dir=tmp_path, check=False)
    assert bad_method.returncode == 2
    assert "unknown method 'simclrr'; known:" in bad_method.stderr and "supervised" in bad_method.stderr
    bad_data = cli("train", "--dataset", "shapez", "--device", "cpu", runs_dir=tmp_path, check=False)
    assert bad_data.returncode == 2 and "unknown dataset 'shapez'" in bad_data.stderr and "digits" in bad_data.stderr
    bad_backbone = cli("train", "--backbone", "resnet19", "--device", "cpu", runs_dir=tmp_path, check=False)
    assert "unknown backbone 'resnet19'" in bad_backbone.stderr and "vit_tiny" in bad_backbone.stderr
    assert not any(tmp_path.iterdir()), "a refused command must not leave a run folder"
    bad_id = cli("eval", "../x", runs_dir=tmp_path, check=False)
    assert bad_id.returncode == 2 and "invalid run id" in bad_id.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_stopped_or_killed_run_is_interrupted_and_resumes(tmp_path, how):
    runs_dir = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # No held-out kNN check per epoch (--knn-every 0): six of them cost these two processes ~5 s.
    args = [sys.executable, "-m", "ssl_core.cli", "train", "--method", "simclr", "--epochs", "6",
            "--checkpoint-every", "2", "--knn-every", "0", *TINY, "--runs-dir", str(runs_dir), "--skip", "project,index"]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        runs = list(runs_dir.glob("*/checkpoint.pt")) if runs_dir.exists() else []
        if runs:
            break
        time.sleep(0.2)
    assert runs, f"no checkpoint within 300 s: {process.stderr.read() if process.poll() is not None else ''}"
    process.send_signal(getattr(signal, how))
    process.wait(timeout=60)
    run_id = runs[0].parent.name

    listing = json.loads(cli("runs", "--json", runs_dir=runs_dir).stdout)
    assert listing[0]["status"] == "interrupted", listing
    if how == "SIGTERM":
        assert process.returncode == 130 and "--resume" in process.stderr.read()

    resumed = cli("train", "--resume", run_id, "--no-progress", "--skip", "project,index", runs_dir=runs_dir)
    assert resumed.stdout.strip().splitlines()[-1] == run_id
    finished = json.loads(cli("runs", "--json", runs_dir=runs_dir).stdout)[0]
    assert finished["status"] == "finished" and finished["step"] == finished["total_steps"] == 24
