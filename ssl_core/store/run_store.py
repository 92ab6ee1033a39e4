"""The folder that holds the runs: creating them (at once, or atomically for runs made in one
go), finding them, deleting them all or nothing, and listing them so that one broken run never
breaks the list."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ssl_core.core.config import RunConfig
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.processes import now_iso, owner_alive, process_start_time
from ssl_core.store.reading import RunBusy, is_number, os_error_message
from ssl_core.store.runs import (ENCODER_METHOD, IMPORTED_METHOD, RUN_ID_PATTERN, RUN_KINDS, Run, default_runs_dir,
                                 validate_run_id)


@dataclass
class RunSummary:
    """One row of the run list; `broken` carries the reason a run could not be read."""

    id: str
    status: str
    method: str = "?"
    dataset: str = "?"
    backbone: str = "?"
    created: str = ""
    knn_top1: float | None = None
    step: int | None = None
    total_steps: int | None = None
    error: str | None = None
    broken: str | None = None
    warnings: list[str] = field(default_factory=list)  # lines of metrics.jsonl that were skipped

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RunStore:
    """The folder that holds the runs (`--runs-dir`, $SSL_EXPLORER_RUNS, or ./runs)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_runs_dir()

    def create(self, config: RunConfig, extra: dict[str, Any] | None = None) -> Run:
        """A new run folder holding config.json (with `extra`: versions, device) and status queued."""
        self.check_root()
        run = Run(self.root / _new_run_id(config))
        run.path.mkdir(parents=True)
        try:
            _start_run(run, config, extra)
        except BaseException:  # a full or read-only disk: no folder without a config is left behind
            shutil.rmtree(run.path, ignore_errors=True)
            raise
        return run

    @contextmanager
    def create_atomically(self, config: RunConfig, extra: dict[str, Any] | None = None) -> Iterator[Run]:
        """Like `create`, but the run appears in the store only once the `with` block has filled
        it without an error: it is built in a hidden staging folder inside the root (so on the
        same file system) and renamed into place; on an error it is removed. For runs made in
        one go (imports), which must never be seen half-made. The staging folder records the
        process building it, so one left by a kill -9 is removed by the next create or list."""
        self.clear_abandoned_staging()
        run_id = _new_run_id(config)
        staging = self.root / f"{STAGING_PREFIX}{run_id}"  # a leading '.': never listed as a run
        run = Run(staging / run_id)  # the final name already: files that record the id are right
        run.path.mkdir(parents=True)
        try:
            atomic_write_json(staging / STAGING_OWNER, {"pid": os.getpid(), "host": socket.gethostname(),
                                                        "pid_start": process_start_time(os.getpid())})
            _start_run(run, config, extra)
            yield run
            os.rename(run.path, self.root / run_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get(self, run_id: str) -> Run:
        run = Run(self.root / validate_run_id(run_id))
        if not run.path.is_dir():
            known = [r.id for r in self._dirs()]
            hint = f"; known: {', '.join(known[-10:])}" if known else f"; {self.root} holds no runs"
            raise KeyError(f"no run '{run_id}' in {self.root}{hint}")
        return run

    def delete(self, run_id: str) -> None:
        """Remove a run, all or nothing: under the run's lock (refused while a process trains or
        post-processes it, or its status names a live process), the folder is first renamed to a
        hidden name, which takes it out of the list in one step, and only then removed. A removal
        that fails half-way leaves a hidden folder that the next delete clears, never half a run."""
        run = self.get(run_id)
        with run.lock("delete"):
            status = run.read_status() if run.status_path.is_file() else {}
            if status.get("status") in ("running", "queued") and owner_alive(status):
                raise RunBusy(f"cannot delete run {run.id}: it is {status['status']} (process "
                              f"{status.get('pid')}); cancel it first")
            trash = self.root / f".deleted-{run.id}-{secrets.token_hex(3)}"
            os.rename(run.path, trash)
        shutil.rmtree(trash)
        self._clear_deleted()

    def _clear_deleted(self) -> None:
        """Remove what deletes that failed half-way left behind (hidden .deleted-* folders)."""
        for leftover in self.root.glob(".deleted-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def check_root(self) -> None:
        """ValueError when the runs path exists but is not a folder (a file, say)."""
        if self.root.exists() and not self.root.is_dir():
            raise ValueError(f"the runs path {self.root} is a file, not a folder; point --runs-dir or "
                             "SSL_EXPLORER_RUNS at a folder")

    def _dirs(self) -> Iterator[Run]:
        self.check_root()
        if not self.root.is_dir():
            return iter(())
        try:
            entries = sorted(self.root.iterdir())
        except OSError as e:
            raise ValueError(os_error_message(e, "list the runs folder")) from None
        return (Run(p) for p in entries if RUN_ID_PATTERN.fullmatch(p.name) and p.is_dir())

    def list(self) -> list[RunSummary]:
        """Every run, oldest first; a run that cannot be read is listed as broken with why."""
        runs = [summarize(run) for run in self._dirs()]
        self.clear_abandoned_staging()
        return runs

    def clear_abandoned_staging(self) -> None:
        """Remove the staging folders of imports whose process is gone (killed mid-import): only
        a folder whose owner is a dead process on this machine, or that names no owner and is
        older than STAGING_UNOWNED_SECONDS (killed between making it and naming its owner)."""
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):
            if _abandoned(staging):
                shutil.rmtree(staging, ignore_errors=True)


STAGING_PREFIX = ".staging-"  # create_atomically's folders: .staging-<run id>/{owner.json, <run id>/}
STAGING_OWNER = "owner.json"  # {pid, pid_start, host} of the process building the run
STAGING_UNOWNED_SECONDS = 600


def _abandoned(staging: Path) -> bool:
    try:
        owner = json.loads((staging / STAGING_OWNER).read_bytes())
    except (OSError, ValueError):
        owner = None
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        try:
            return time.time() - staging.stat().st_mtime > STAGING_UNOWNED_SECONDS
        except OSError:
            return False
    return not owner_alive(owner)  # another machine's process cannot be checked: left alone


def _new_run_id(config: RunConfig) -> str:
    method = config.method.get("name", "run")
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(config.data.dataset).name or "data").strip("-")[:24]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return validate_run_id(f"{stamp}-{method}-{dataset or 'data'}-{secrets.token_hex(2)}")


def _start_run(run: Run, config: RunConfig, extra: dict[str, Any] | None) -> None:
    """Write config.json (with `extra`: versions, command, and "kind" for a run of a method that
    never trains) and a queued status."""
    record = {**config.to_dict(), **(extra or {}), "created": now_iso()}
    name = config.method.get("name")
    record["kind"] = name if name in (IMPORTED_METHOD, ENCODER_METHOD) else record.get("kind", "trained")
    if record["kind"] not in RUN_KINDS:
        raise ValueError(f"unknown run kind {record['kind']!r}; known: {', '.join(RUN_KINDS)}")
    atomic_write_json(run.config_path, record)
    run.set_status("queued")


def summarize(run: Run) -> RunSummary:
    """The run's row of the list. Whatever a hand or a crash left in its folder, this returns:
    a file that cannot be used makes the row broken with the reason; skipped metric lines are
    named in `warnings`."""
    try:
        raw = run.read_config_dict()
        config = run.config
        status = run.read_status()
        metrics, skipped = run.read_metrics_checked()
        scores = run.read_eval() or {}
    except (OSError, ValueError) as e:
        return RunSummary(id=run.id, status="broken", broken=str(e))
    steps = [m["step"] for m in metrics if isinstance(m.get("step"), int) and not isinstance(m["step"], bool)]
    knn = [m["knn_top1"] for m in metrics if is_number(m.get("knn_top1"))]
    step = steps[-1] if steps else None
    if status["status"] in ("interrupted", "failed") and isinstance(status.get("checkpoint_step"), int):
        step = status["checkpoint_step"]  # where a resume continues, not the last step logged
    total = status.get("total_steps")
    error = status.get("error") or status.get("last_error")  # last_error: a finished run's later failure
    return RunSummary(
        id=run.id,
        status=status["status"],
        method=str(config.method.get("name", "?")),
        dataset=config.data.dataset,
        backbone=config.backbone.name,
        created=str(raw.get("created", "")),
        knn_top1=scores.get("knn_top1", knn[-1] if knn else None),
        step=step,
        total_steps=total if isinstance(total, int) and not isinstance(total, bool) else None,
        error=error if isinstance(error, str) else None if error is None else str(error),
        warnings=[f"metrics.jsonl: {note}, skipped" for note in skipped],
    )
