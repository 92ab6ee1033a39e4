"""One run folder (`Run`): its files (named in `files.py`), its config and status, its metrics
and scores read tolerantly, its kind, its lock, and its display name.

Reading tolerates runs edited or broken by hand: a bad line of metrics.jsonl is skipped and
named, a bad file is a RunFileError that names it (the run list shows that run as broken).

One process at a time trains or post-processes a run (`Run.lock`): resume, the post-training
steps, analyses and delete take the run's lock, and a second one is refused with who holds it.
The lock is an flock, so the kernel drops it when its process dies: no stale lock outlives a
kill -9.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ssl_core.core.config import RunConfig
from ssl_core.store import files
from ssl_core.store.atomic import FILE_MODE, atomic_write_bytes, atomic_write_json
from ssl_core.store.processes import now_iso, owner_alive, process_start_time
from ssl_core.store.reading import NUMERIC_SCORES, RunBusy, RunFileError, is_number, os_error_message, read_json

STATUSES = ("queued", "running", "finished", "failed", "interrupted")
# What made a run (`Run.kind`): a registered method "trained" it; or it is a "baseline" (a
# registered method that never trains: the random init, the pixels); or it was "imported" with
# embeddings made elsewhere; or a user's own network embedded it ("encoder").
RUN_KINDS = ("trained", "baseline", "imported", "encoder")
# config.json's method name of the runs that no registered method made.
IMPORTED_METHOD, ENCODER_METHOD = "imported", "encoder"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get("SSL_EXPLORER_RUNS", "runs")).expanduser()


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it is a safe folder name; ids also arrive from browsers and URLs."""
    # fullmatch: `$` in a plain match would also accept the id followed by a newline.
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return run_id


class Run:
    """One run folder. Cheap to create; every property reads from disk."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name

    # -- files -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / files.CONFIG

    @property
    def status_path(self) -> Path:
        return self.path / files.STATUS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / files.CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / files.METRICS

    @property
    def embeddings_dir(self) -> Path:
        return self.path / files.EMBEDDINGS_DIR

    @property
    def eval_path(self) -> Path:
        return self.path / files.EVAL

    @property
    def projection_dir(self) -> Path:
        return self.path / files.PROJECTION_DIR

    @property
    def index_path(self) -> Path:
        return self.path / files.INDEX_DIR / files.INDEX

    @property
    def map_snapshots_dir(self) -> Path:
        """The map of a few held-out images at each kNN check during training (steps/map_snapshots.py)."""
        return self.path / files.MAP_SNAPSHOTS_DIR

    @property
    def dataset_dir(self) -> Path:
        """Imported runs only: images.npy, factors.npz, factor_levels.json (their own images)."""
        return self.path / files.DATASET_DIR

    @property
    def analysis_dir(self) -> Path:
        """Results computed on request after the pipeline: layer and factor probes, fine-tuning,
        clusters, outliers. One file (or a few) per analysis, each rewritten only when asked."""
        return self.path / files.ANALYSIS_DIR

    # -- config ----------------------------------------------------------------------------
    def read_config_dict(self) -> dict[str, Any]:
        raw = read_json(self.config_path, f"run {self.id}: config.json")
        if not isinstance(raw, dict):
            raise RunFileError(f"run {self.id}: config.json must hold a JSON object")
        return raw

    def store_method_settings(self, method: dict[str, Any]) -> None:
        """Replace config.json's method entry (its name and overrides) with every setting the
        method trains with, as the run starts: a default changed later leaves this run as it was."""
        raw = self.read_config_dict()
        if raw.get("method") != method:
            atomic_write_json(self.config_path, {**raw, "method": method})

    @property
    def config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(self.read_config_dict())
        except (TypeError, ValueError) as e:
            raise ValueError(f"run {self.id}: config.json does not describe a run: {e}") from None

    @property
    def kind(self) -> str:
        """What made the run, one of RUN_KINDS, as config.json says: its method name for an
        imported or encoder run, else the kind recorded when the run was created ("baseline" or
        "trained"; runs made before config.json recorded a kind read as "trained")."""
        raw = self.read_config_dict()
        method = raw.get("method")
        name = method.get("name") if isinstance(method, dict) else None
        if name in (IMPORTED_METHOD, ENCODER_METHOD):
            return name
        return "baseline" if raw.get("kind") == "baseline" else "trained"

    # -- status ----------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        """status.json as written, with `status` corrected to 'interrupted' when the process
        that claimed to be running it is gone (killed -9, machine rebooted)."""
        status = read_json(self.status_path, f"run {self.id}: status.json")
        if not isinstance(status, dict) or status.get("status") not in STATUSES:
            raise RunFileError(f"run {self.id}: status.json has no valid status (one of {', '.join(STATUSES)})")
        launched = status["status"] == "queued" and "pid" in status  # a job that never started
        if (status["status"] == "running" or launched) and not owner_alive(status):
            status["status"] = "interrupted"
            status["error"] = (f"the training process (pid {status.get('pid')}) ended without a word; "
                               "resume continues from the last checkpoint")
        return status

    def set_status(self, status: str, **fields: Any) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status '{status}'; known: {', '.join(STATUSES)}")
        self._check_exists()  # a job must not bring back a folder deleted under it
        record: dict[str, Any] = {"status": status, "updated": now_iso()}
        if status == "running" or "pid" in fields:
            pid = fields.pop("pid", os.getpid())
            record.update(pid=pid, pid_start=process_start_time(pid), host=socket.gethostname())
        record.update(fields)
        atomic_write_json(self.status_path, record)

    def set_failed(self, before: dict[str, Any] | None, error: str, **fields: Any) -> None:
        """Status failed with `error`, unless the run had finished its pipeline before this
        command (`before`: its status then, stage done): a failed resume or re-run step leaves
        its stored results intact, so the run stays finished and shows them, with the failure as
        `last_error` (the next step that succeeds writes a status without it)."""
        if before is not None and before.get("status") == "finished" and before.get("stage") == "done":
            kept = {k: v for k, v in before.items()
                    if k not in ("status", "updated", "last_error", "error", "pid", "pid_start", "host")}
            self.set_status("finished", **kept, last_error=error)
        else:
            self.set_status("failed", error=error, **fields)

    def _check_exists(self) -> None:
        if not self.config_path.is_file():
            raise RunFileError(f"run {self.id} no longer exists at {self.path} (deleted or moved)")

    # -- metrics ---------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics_checked(self) -> tuple[list[dict[str, Any]], list[str]]:
        """(every line of metrics.jsonl that is a JSON object, one note per line skipped). A line
        torn by a crash, hand-edited into something else, or not UTF-8 is skipped and named; a
        metrics.jsonl that cannot be read at all (a folder, no permission) is a RunFileError."""
        try:
            data = self.metrics_path.read_bytes()
        except FileNotFoundError:
            return [], []
        except IsADirectoryError:
            raise RunFileError(f"run {self.id}: metrics.jsonl is a folder, not a file") from None
        except OSError as e:
            raise RunFileError(f"run {self.id}: metrics.jsonl: {os_error_message(e, 'read')}") from None
        records, skipped = [], []
        for number, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                skipped.append(f"line {number} is not UTF-8 text")
                continue
            except json.JSONDecodeError:
                skipped.append(f"line {number} is not JSON")
                continue
            if not isinstance(record, dict):
                skipped.append(f"line {number} is not a JSON object")
                continue
            records.append(record)
        return records, skipped

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every readable record of metrics.jsonl (see `read_metrics_checked`)."""
        return self.read_metrics_checked()[0]

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged past `after_step` (work lost since the checkpoint being
        resumed), so a resumed run's curve has no duplicated steps."""
        kept = [r for r in self.read_metrics() if not is_number(r.get("step")) or r["step"] <= after_step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def read_eval(self) -> dict[str, Any] | None:
        """eval.json, or None while the run has none; a RunFileError when it is not a JSON
        object whose scores are numbers (`ssl-explorer eval RUN_ID --recompute` rewrites it)."""
        if not self.eval_path.exists():
            return None
        scores = read_json(self.eval_path, f"run {self.id}: eval.json")
        if not isinstance(scores, dict):
            raise RunFileError(f"run {self.id}: eval.json must hold a JSON object; "
                               f"run `ssl-explorer eval {self.id} --recompute`")
        for key in NUMERIC_SCORES:
            if scores.get(key) is not None and not is_number(scores[key]):
                raise RunFileError(f"run {self.id}: eval.json's {key} is {scores[key]!r}, not a number; "
                                   f"run `ssl-explorer eval {self.id} --recompute`")
        return scores

    def read_class_names(self) -> list[str]:
        """The class names of the run's labels (embeddings/class_names.json), or [] while the run
        has none or the file cannot be used: names are only shown, never needed to read a run."""
        try:
            names = read_json(self.embeddings_dir / files.CLASS_NAMES, "class_names.json")
        except RunFileError:
            return []
        return [str(name) for name in names] if isinstance(names, list) else []

    # -- the run's lock ------------------------------------------------------------------
    @contextmanager
    def lock(self, purpose: str) -> Iterator[None]:
        """Hold this run for `purpose` ('train', 'embed', 'analyze', 'delete' ...) for the `with`
        block; RunBusy at once (no waiting) when another process holds it. Re-entrant within a
        process (training holds it while it runs the post-training steps, which take it too)."""
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key] += 1
            try:
                yield
            finally:
                _HELD[key] -= 1
            return
        try:
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except FileNotFoundError:
            raise RunFileError(f"run {self.id} no longer exists at {self.path} (deleted or moved)") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunBusy(self._busy_message(purpose)) from None
            self._check_exists()  # deleted between our open and our lock: nothing to hold
            holder = {"pid": os.getpid(), "pid_start": process_start_time(os.getpid()), "purpose": purpose,
                      "since": now_iso(), "host": socket.gethostname()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
            _HELD[key] = 1
            try:
                yield
            finally:
                del _HELD[key]
                try:
                    os.ftruncate(fd, 0)  # nobody holds it now (a kill -9 leaves a dead pid instead)
                except OSError:
                    pass  # the pid in it is dead soon, which reads the same
        finally:
            os.close(fd)  # closing the last descriptor releases the flock

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds the run's lock ({pid, purpose, since}), or None when nobody does. Read from
        what the holder wrote into the lock file (emptied when it lets go) and checked against
        the living processes, without touching the lock itself."""
        if str(self.path.resolve()) in _HELD:
            return {"pid": os.getpid(), "purpose": "this process"}
        try:
            holder = json.loads((self.path / LOCK_FILE).read_bytes().decode() or "null")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return holder if isinstance(holder, dict) and owner_alive(holder) else None

    def check_not_busy(self, purpose: str) -> None:
        """RunBusy when another process holds the run's lock: for asking before starting a job
        that would take it, so the refusal comes at the click, not in the job's log."""
        if self.lock_holder() is not None:
            raise RunBusy(self._busy_message(purpose))

    def _busy_message(self, purpose: str) -> str:
        holder = self.lock_holder() or {}
        who = f"process {holder['pid']}" if "pid" in holder else "another process"
        doing = f" ({holder['purpose']} since {holder.get('since', '?')})" if "purpose" in holder else ""
        return (f"cannot {purpose} run {self.id}: {who} is using it{doing}; wait for it to end, "
                f"or cancel it first")

    def check_resumable(self) -> dict[str, Any]:
        """The run's status when training may continue it; ValueError says why not (finished, or
        another live process claims it). The CLI and the app ask this one question."""
        status = self.read_status()
        if status["status"] == "finished":
            raise ValueError(f"run {self.id} has finished; there is nothing to resume "
                             "(start a new run to train longer)")
        owner = status.get("pid")
        if status["status"] in ("running", "queued") and owner != os.getpid() and owner_alive(status):
            raise RunBusy(f"run {self.id} is already {status['status']} (process {owner})")
        return status


LOCK_FILE = files.LOCK
_HELD: dict[str, int] = {}  # run folders whose lock this process holds, with the nesting depth


# -- display names ----------------------------------------------------------------------------
# A short text a person gives a run ("baseline, lr 1e-3"), stored in the run folder as label.txt
# (written atomically) so that every browser session and the CLI see the same name and the name
# travels with the folder. Run ids stay the keys everywhere; the name is only shown.
NAME_FILE = files.NAME
MAX_NAME_LENGTH = 80


def get_display_name(run: Run) -> str | None:
    try:
        name = (run.path / NAME_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):  # none, a folder, unreadable: no name to show
        return None
    return name[:MAX_NAME_LENGTH] or None


def set_display_name(run: Run, name: str) -> str | None:
    """Store `name` (one line, trimmed to MAX_NAME_LENGTH); an empty name removes it. Returns
    the name as stored. Only label.txt changes, which no job writes, so a run may be renamed
    while it trains; a run deleted meanwhile is not brought back as a folder holding a name."""
    name = " ".join(name.split())[:MAX_NAME_LENGTH]
    path = run.path / NAME_FILE
    run._check_exists()
    if not name:
        path.unlink(missing_ok=True)
        return None
    atomic_write_bytes(path, (name + "\n").encode("utf-8"))
    return name


