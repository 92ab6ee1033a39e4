"""Training as a separate process: start, cancel, resume.

The app never trains in its own script thread: a rerun or a closed tab must neither stop nor
duplicate a job. A job is `ssl-explorer train --resume RUN_ID` started in its own session, with
its output in the run folder's train.log. The run folder is the only shared state: the job writes
status.json and metrics.jsonl, the app reads them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ssl_core.store import files
from ssl_core.store.processes import owner_alive
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from ssl_core.analyses.runner import JOB_FILE, LOG_FILE, check_names, job_lock, job_record, job_running
from ssl_core.workflows.train_request import TrainRequest, create_training_run
from ssl_core.store.atomic import atomic_write_json


def _spawn(store: RunStore, run: Run, skip: tuple[str, ...] = ()) -> int:
    args = [sys.executable, "-m", "ssl_core.cli", "train", "--resume", run.id,
            "--runs-dir", str(store.root), "--no-progress"]
    if skip:
        args += ["--skip", ",".join(skip)]
    log = (run.path / files.TRAIN_LOG).open("ab")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A session of its own: the job outlives the app's process and its Ctrl-C.
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env=env, cwd=Path.cwd())
    log.close()
    run.set_status("queued", pid=process.pid, launched_by=os.getpid())
    return process.pid


def start(store: RunStore, request: TrainRequest) -> Run:
    """Create a run for `request` and train it in the background; returns at once. ValueError
    with `request.problems()` (the CLI's `train` refuses the same) before any folder exists."""
    config = request.config()
    run = create_training_run(store, config, ["app"])
    _spawn(store, run, request.skip)
    return run


def resume(store: RunStore, run_id: str, *, skip: tuple[str, ...] = ()) -> Run:
    """Continue an interrupted or failed run from its last checkpoint, in the background."""
    run = store.get(run_id)
    run.check_not_busy("resume")
    run.check_resumable()  # the job checks both again under the run's lock
    _spawn(store, run, skip)
    return run


def cancel(store: RunStore, run_id: str) -> bool:
    """Ask a running job to stop: it checkpoints and marks itself interrupted. False if none ran."""
    run = store.get(run_id)
    status = run.read_status()
    if status["status"] not in ("running", "queued") or not owner_alive(status):
        return False
    os.kill(status["pid"], signal.SIGTERM)
    return True



def start_analysis(store: RunStore, run_id: str, names: list[str] | None = None, *, recompute: bool = False,
                   device: str = "auto") -> int:
    """Run `ssl-explorer analyze RUN_ID` in the background (its output in analysis/job.log);
    returns its pid at once. Refuses while an analysis job of this run is running."""
    run = store.get(run_id)
    run.check_not_busy("analyse")
    args = [sys.executable, "-m", "ssl_core.cli", "analyze", run.id, "--runs-dir", str(store.root),
            "--device", device, "--no-progress"]
    if names:
        args += ["--only", ",".join(check_names(list(names)))]
    if recompute:
        args.append("--recompute")
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Under the lock until "queued" is written: the job's first record comes after it, never before.
    with job_lock(run), (run.analysis_dir / LOG_FILE).open("ab") as log:
        if job_running(run):
            raise ValueError(f"run {run_id} already has an analysis job running "
                             f"(see {run.analysis_dir / JOB_FILE}); wait for it to end")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env=env, cwd=Path.cwd())
        atomic_write_json(run.analysis_dir / JOB_FILE,
                          job_record(status="queued", names=list(names or []), pid=process.pid))
    return process.pid
