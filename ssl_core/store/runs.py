"""The run store: one folder per run, the contract between training and everything that reads it.

    runs/<run_id>/
      config.json     the whole RunConfig plus library versions and device
      status.json     queued | running | finished | failed | interrupted, pid, stage, error
      metrics.jsonl   one JSON object per logged step or check
      checkpoint.pt   latest training state (atomic; loaded with weights_only=True)
      embeddings/     train.npy, test.npy (float16) + <split>_labels.npy + <split>_ids.json
      eval.json       kNN and linear-probe scores
      projection/     pca_2d.npy (written first), umap_2d.npy + params.json (backend, timings)
      index/          faiss.index + params.json (exact or IVF, nlist, nprobe)
      dataset/        imported runs only (`ssl-explorer import`): images.npy (uint8, rows as the
                      embeddings), factors.npz + factor_levels.json (metadata columns)
      .lock           held (flock) by the one process that trains or post-processes the run

Every write goes to a temporary file in the same folder and is renamed over the target, so a
reader sees the old file or the new one, never half of one. Reading tolerates runs edited or
broken by hand: a bad line of metrics.jsonl is skipped and named, a bad file marks that run
broken with the reason, and `RunStore.list()` never fails because of one run.

One process at a time trains or post-processes a run (`Run.lock`): resume, the post-training
steps, analyses and delete take the run's lock, and a second one is refused with who holds it.
The lock is an flock, so the kernel drops it when its process dies: no stale lock outlives a
kill -9.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import math
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ssl_core.core.config import RunConfig
from ssl_core.store import files

STATUSES = ("queued", "running", "finished", "failed", "interrupted")
# What made a run (`Run.kind`): a registered method "trained" it; or it is a "baseline" (a
# registered method that never trains: the random init, the pixels); or it was "imported" with
# embeddings made elsewhere; or a user's own network embedded it ("encoder").
RUN_KINDS = ("trained", "baseline", "imported", "encoder")
# config.json's method name of the runs that no registered method made.
IMPORTED_METHOD, ENCODER_METHOD = "imported", "encoder"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get("SSL_EXPLORER_RUNS", "runs")).expanduser()


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it is a safe folder name; ids also arrive from browsers and URLs."""
    # fullmatch: `$` in a plain match would also accept the id followed by a newline.
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return run_id


class RunFileError(ValueError):
    """A file of a run folder that cannot be used as it is; the message names the file and why."""


class RunBusy(ValueError):
    """Another process holds the run's lock (it trains, post-processes or deletes the run)."""


_CAUSES = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "there is no space left on the disk",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EEXIST: "something else already has that name",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "it does not exist",
    errno.ENAMETOOLONG: "the name is too long",
}


def os_error_message(error: OSError, doing: str = "use") -> str:
    """One sentence for an OS error: what could not be done to which path, and why in plain
    words ('cannot write runs/x/status.json: the file system is read-only')."""
    cause = _CAUSES.get(error.errno or -1, error.strerror or str(error))
    path = error.filename if error.filename is not None else "a file"
    other = f" (and {error.filename2})" if error.filename2 is not None else ""
    return f"cannot {doing} {path}{other}: {cause}"


def read_json(path: Path, what: str) -> Any:
    """The JSON in `path`; RunFileError names `what` (e.g. 'run X: eval.json') and the cause:
    missing, unreadable, a folder, not UTF-8, not JSON. The one reader of a run's JSON files."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{what} is missing") from None
    except IsADirectoryError:
        raise RunFileError(f"{what} is a folder, not a file") from None
    except OSError as e:
        raise RunFileError(f"{what}: {os_error_message(e, 'read')}") from None
    except UnicodeDecodeError as e:
        raise RunFileError(f"{what} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise RunFileError(f"{what} is not valid JSON ({e})") from None


def is_number(value: Any) -> bool:
    """A real, finite number (not a bool, not text that looks like one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# The scores of eval.json that are numbers (or null); text there would break every table.
NUMERIC_SCORES = ("knn_top1", "knn_top1_k20", "knn_top1_k200", "linear_top1", "linear_top1_1pct",
                  "linear_top1_10pct", "effective_rank", "uniformity")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename (atomic on POSIX). The file
    gets the permissions a plain open() would give it (0666 less the umask), not mkstemp's 0600,
    so run folders and exports stay readable by whoever may read their folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_arrays(path: Path, array: Any = None, **arrays: Any) -> None:
    """One array as .npy (`array`), or named arrays as .npz (`**arrays`), written atomically."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array) if array is not None else np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux): [state, ppid, ...]."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), to tell a live run from a reused pid."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def process_alive(pid: int, start_time: str | None = None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _proc_stat(pid)
    if fields is None:
        return Path("/proc").is_dir() is False  # no /proc (macOS): trust kill(0)
    if fields[0] == "Z":
        return False  # exited, not yet reaped by the process that started it
    return start_time is None or fields[19] == start_time


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
        if (status["status"] == "running" or launched) and not self._owner_alive(status):
            status["status"] = "interrupted"
            status["error"] = (f"the training process (pid {status.get('pid')}) ended without a word; "
                               "resume continues from the last checkpoint")
        return status

    def _owner_alive(self, status: dict[str, Any]) -> bool:
        pid = status.get("pid")
        if not isinstance(pid, int):
            return False
        if status.get("host") not in (None, socket.gethostname()):
            return True  # another machine's process: we cannot tell, so believe the file
        return process_alive(pid, status.get("pid_start"))

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
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
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
            fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666 & ~_UMASK)
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
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
            return None
        if holder.get("host") not in (None, socket.gethostname()):
            return holder  # another machine's process: we cannot tell, so believe the file
        return holder if process_alive(holder["pid"], holder.get("pid_start")) else None

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
        if status["status"] in ("running", "queued") and owner != os.getpid() and self._owner_alive(status):
            raise RunBusy(f"run {self.id} is already {status['status']} (process {owner})")
        return status


LOCK_FILE = files.LOCK
_HELD: dict[str, int] = {}  # run folders whose lock this process holds, with the nesting depth


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
            if status.get("status") in ("running", "queued") and run._owner_alive(status):
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
        return (Run(p) for p in entries if _RUN_ID.fullmatch(p.name) and p.is_dir())

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
    if owner.get("host") not in (None, socket.gethostname()):
        return False  # another machine's process: we cannot tell, so leave it
    return not process_alive(owner["pid"], owner.get("pid_start"))


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


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
