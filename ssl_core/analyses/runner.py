"""On-request analyses of a finished run, stored under its analysis/ folder.

Each analysis is a function `fn(run, *, device="cpu", progress=None) -> dict` that writes
analysis/<name>.json (plus optional arrays) and returns the summary. `ANALYSES` maps names to
the functions' import paths; modules are imported only when their analysis runs, so a missing
or broken one does not stop the others.

    ssl-explorer analyze RUN_ID                    # every analysis not stored yet
    ssl-explorer analyze RUN_ID --only layers,factors --recompute
    ssl-explorer analyze RUN_ID --only robustness,label_issues

While `run_analyses` works it keeps analysis/job.json up to date:
    {"status": "running" | "finished" | "failed", "names": [...], "current": name | null,
     "done": [...], "fraction": 0..1, "error": text | null, "pid": int, "updated": iso time}
so a page can follow it. Each analysis writes its own file when it finishes: a later failure
never removes what an earlier one stored.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from ssl_core.analyses.label_issues import label_issues_unavailable
from ssl_core.analyses.probes import factors_unavailable, layers_unavailable
from ssl_core.analyses.robustness import robustness_unavailable
from ssl_core.analyses.stored import result_path
from ssl_core.steps.readiness import viewable
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.processes import now_iso, owner_alive, process_start_time
from ssl_core.store.runs import Run
from ssl_core.core.runtime import resolve_device

# name -> "module:function"; order is the order `run_analyses` runs them in.
ANALYSES: dict[str, str] = {
    "layers": "ssl_core.analyses.probes:layer_probe_run",
    "factors": "ssl_core.analyses.probes:factor_probe_run",
    "finetune": "ssl_core.analyses.finetune:finetune_run",
    "clusters": "ssl_core.analyses.clusters:cluster_run",
    "outliers": "ssl_core.analyses.outliers:outlier_run",
    "robustness": "ssl_core.analyses.robustness:robustness_run",
    "label_issues": "ssl_core.analyses.label_issues:label_issue_run",
}
JOB_FILE = "job.json"
LOG_FILE = "job.log"

Progress = Callable[[float, str], None]


def analysis_function(name: str) -> Callable[..., dict[str, Any]]:
    """The function of analysis `name`, imported now."""
    if name not in ANALYSES:
        raise KeyError(f"unknown analysis '{name}'; known: {', '.join(ANALYSES)}")
    module, _, function = ANALYSES[name].partition(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"analysis '{name}' is not available in this installation ({module}.{function}: {e})") from None


def not_applicable(run: Run) -> dict[str, str]:
    """{name: why it cannot run on this run} for analyses that do not apply (no encoder, no labels...)."""
    reasons = {}
    layers = layers_unavailable(run)
    if layers:
        reasons["layers"] = reasons["finetune"] = layers
    factors = factors_unavailable(run)
    if factors:
        reasons["factors"] = factors
    elif no_images := viewable(run):  # the factor probe reads the run's dataset, which such a run has not
        reasons["factors"] = no_images
    for name, unavailable in (("robustness", robustness_unavailable), ("label_issues", label_issues_unavailable)):
        reason = unavailable(run)
        if reason:
            reasons[name] = reason
    return reasons


def missing_analyses(run: Run, names: list[str] | None = None) -> dict[str, Any]:
    """{"missing": names not stored yet that can run, "stored": names stored,
    "not_applicable": {name: reason}} over `names` (default: all)."""
    names = list(ANALYSES) if names is None else check_names(names)
    skip = not_applicable(run)
    stored = [n for n in names if result_path(run, n).exists()]
    return {"missing": [n for n in names if n not in stored and n not in skip], "stored": stored,
            "not_applicable": {n: r for n, r in skip.items() if n in names and n not in stored}}


def check_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise KeyError(f"unknown analysis {', '.join(repr(n) for n in unknown)}; known: {', '.join(ANALYSES)}")
    return list(dict.fromkeys(names))


# -- the job file --------------------------------------------------------------------------------
def read_job(run: Run) -> dict[str, Any] | None:
    """analysis/job.json, with a 'running' job whose process is gone reported as failed."""
    try:
        job = json.loads((run.analysis_dir / JOB_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(job, dict):
        return None
    if job.get("status") in ("running", "queued"):
        pid = job.get("pid")
        if not owner_alive(job):
            job["status"] = "failed"
            job["error"] = (f"the analysis process (pid {pid}) ended without finishing"
                            f"{' ' + repr(job['current']) if job.get('current') else ''}; "
                            f"run `ssl-explorer analyze {run.id}` to continue")
    return job


def job_running(run: Run) -> bool:
    job = read_job(run)
    return bool(job and job.get("status") in ("running", "queued"))


@contextmanager
def job_lock(run: Run) -> Iterator[None]:
    """Exclusive access to job.json: the app's "queued" record and the job's own records never
    overwrite each other out of order."""
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    with (run.analysis_dir / ".job.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def job_record(**fields: Any) -> dict[str, Any]:
    pid = fields.pop("pid", os.getpid())
    return {"status": "running", "names": [], "current": None, "done": [], "fraction": 0.0, "error": None,
            **fields, "pid": pid, "pid_start": process_start_time(pid), "updated": now_iso()}


def write_job(run: Run, **fields: Any) -> dict[str, Any]:
    record = job_record(**fields)
    with job_lock(run):
        atomic_write_json(run.analysis_dir / JOB_FILE, record)
    return record


# -- the runner ----------------------------------------------------------------------------------
def run_analyses(run: Run, names: list[str] | None = None, *, recompute: bool = False, device: str = "auto",
                 progress: Progress | None = None) -> dict[str, Any]:
    """Run the analyses in `names` (default: all that apply) that are not stored yet, or all of
    them with `recompute`; returns {"run_id", "ran", "skipped", "not_applicable", "seconds",
    "results": {name: summary}}. On a failure job.json says which analysis failed and why, the
    results stored before it stay, and the error is raised again (ValueError) for the caller.
    Holds the run's lock (RunBusy when another process trains or post-processes the run)."""
    with run.lock("analyze"):
        return _run_analyses(run, names, recompute=recompute, device=device, progress=progress)


def _run_analyses(run: Run, names: list[str] | None, *, recompute: bool, device: str,
                  progress: Progress | None) -> dict[str, Any]:
    state = missing_analyses(run, names)
    wanted = list(ANALYSES) if names is None else check_names(names)
    todo = [n for n in wanted if n not in state["not_applicable"] and (recompute or n in state["missing"])]
    if names is not None:  # asked by name: say why one cannot run instead of skipping it quietly
        for n in wanted:
            if n in state["not_applicable"]:
                raise ValueError(f"run {run.id}: '{n}' does not apply: {state['not_applicable'][n]}")
    device_name = str(resolve_device(device))
    report = progress or (lambda fraction, text: None)
    done: list[str] = []
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    run.analysis_dir.mkdir(parents=True, exist_ok=True)
    write_job(run, names=todo, fraction=0.0)
    last_write = [0.0]

    for i, name in enumerate(todo):
        def step(fraction: float, text: str, i=i, name=name) -> None:
            overall = (i + min(max(fraction, 0.0), 1.0)) / len(todo)
            report(overall, f"{name}: {text}")
            if time.monotonic() - last_write[0] > 0.5:  # job.json at most twice a second
                last_write[0] = time.monotonic()
                write_job(run, names=todo, current=name, done=done, fraction=round(overall, 4), message=text)

        step(0.0, "starting")
        try:
            results[name] = analysis_function(name)(run, device=device_name, progress=step)
        except Exception as e:
            retry = f"ssl-explorer analyze {run.id} --only {name}"
            error = f"analysis '{name}' failed: {type(e).__name__}: {e}. Retry with `{retry}`"
            with (run.analysis_dir / LOG_FILE).open("a") as log:
                log.write(traceback.format_exc())
            write_job(run, status="failed", names=todo, current=name, done=done,
                      fraction=round(i / len(todo), 4), error=error)
            raise ValueError(error) from e
        done.append(name)
    write_job(run, status="finished", names=todo, done=done, fraction=1.0)
    report(1.0, "done")
    return {"run_id": run.id, "ran": done, "skipped": [n for n in wanted if n not in todo and n in state["stored"]],
            "not_applicable": state["not_applicable"], "seconds": round(time.perf_counter() - t0, 2),
            "results": results}
