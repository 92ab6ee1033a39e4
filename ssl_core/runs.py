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

Every write goes to a temporary file in the same folder and is renamed over the target, so a
reader sees the old file or the new one, never half of one. Reading tolerates runs edited or
broken by hand: `RunStore.list()` reports them as broken with the reason instead of failing.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ssl_core.config import RunConfig

STATUSES = ("queued", "running", "finished", "failed", "interrupted")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path:
    return Path(os.environ.get("SSL_EXPLORER_RUNS", "runs")).expanduser()


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it is a safe folder name; ids also arrive from browsers and URLs."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only "
            "(no path separators, no '..', at most 128 characters)"
        )
    return run_id


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
        return self.path / "config.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def embeddings_dir(self) -> Path:
        return self.path / "embeddings"

    @property
    def eval_path(self) -> Path:
        return self.path / "eval.json"

    @property
    def projection_dir(self) -> Path:
        return self.path / "projection"

    @property
    def index_path(self) -> Path:
        return self.path / "index" / "faiss.index"

    @property
    def analysis_dir(self) -> Path:
        """Results computed on request after the pipeline: layer and factor probes, fine-tuning,
        clusters, outliers. One file (or a few) per analysis, each rewritten only when asked."""
        return self.path / "analysis"

    # -- config ----------------------------------------------------------------------------
    def read_config_dict(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"run {self.id}: config.json is missing") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"run {self.id}: config.json is not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"run {self.id}: config.json must hold a JSON object")
        return raw

    @property
    def config(self) -> RunConfig:
        try:
            return RunConfig.from_dict(self.read_config_dict())
        except (TypeError, ValueError) as e:
            raise ValueError(f"run {self.id}: config.json does not describe a run: {e}") from None

    # -- status ----------------------------------------------------------------------------
    def read_status(self) -> dict[str, Any]:
        """status.json as written, with `status` corrected to 'interrupted' when the process
        that claimed to be running it is gone (killed -9, machine rebooted)."""
        try:
            status = json.loads((self.path / "status.json").read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"run {self.id}: status.json is missing") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"run {self.id}: status.json is not valid JSON ({e})") from None
        if not isinstance(status, dict) or status.get("status") not in STATUSES:
            raise ValueError(f"run {self.id}: status.json has no valid status (one of {', '.join(STATUSES)})")
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
        record: dict[str, Any] = {"status": status, "updated": now_iso()}
        if status == "running" or "pid" in fields:
            pid = fields.pop("pid", os.getpid())
            record.update(pid=pid, pid_start=process_start_time(pid), host=socket.gethostname())
        record.update(fields)
        atomic_write_json(self.path / "status.json", record)

    # -- metrics ---------------------------------------------------------------------------
    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete line of metrics.jsonl; a torn last line (a crash mid-write) is skipped."""
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged past `after_step` (work lost since the checkpoint being
        resumed), so a resumed run's curve has no duplicated steps."""
        kept = [r for r in self.read_metrics() if r.get("step", 0) <= after_step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def read_eval(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.eval_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RunStore:
    """The folder that holds the runs (`--runs-dir`, $SSL_EXPLORER_RUNS, or ./runs)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).expanduser() if root is not None else default_runs_dir()

    def create(self, config: RunConfig, extra: dict[str, Any] | None = None) -> Run:
        """A new run folder holding config.json (with `extra`: versions, device) and status queued."""
        run = Run(self.root / _new_run_id(config))
        run.path.mkdir(parents=True)
        _start_run(run, config, extra)
        return run

    @contextmanager
    def create_atomically(self, config: RunConfig, extra: dict[str, Any] | None = None) -> Iterator[Run]:
        """Like `create`, but the run appears in the store only once the `with` block has filled
        it without an error: it is built in a hidden staging folder inside the root (so on the
        same file system) and renamed into place; on an error it is removed. For runs made in
        one go (imports), which must never be seen half-made."""
        run_id = _new_run_id(config)
        staging = self.root / f".staging-{run_id}"  # a leading '.': never listed as a run
        run = Run(staging / run_id)  # the final name already: files that record the id are right
        run.path.mkdir(parents=True)
        try:
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
        shutil.rmtree(self.get(run_id).path)

    def _dirs(self) -> Iterator[Run]:
        if not self.root.is_dir():
            return iter(())
        return (Run(p) for p in sorted(self.root.iterdir()) if p.is_dir() and _RUN_ID.match(p.name))

    def list(self) -> list[RunSummary]:
        """Every run, oldest first; a run that cannot be read is listed as broken with why."""
        return [summarize(run) for run in self._dirs()]


def _new_run_id(config: RunConfig) -> str:
    method = config.method.get("name", "run")
    dataset = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(config.data.dataset).name or "data").strip("-")[:24]
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return validate_run_id(f"{stamp}-{method}-{dataset or 'data'}-{secrets.token_hex(2)}")


def _start_run(run: Run, config: RunConfig, extra: dict[str, Any] | None) -> None:
    atomic_write_json(run.config_path, {**config.to_dict(), **(extra or {}), "created": now_iso()})
    run.set_status("queued")


def summarize(run: Run) -> RunSummary:
    try:
        raw = run.read_config_dict()
        config = run.config
        status = run.read_status()
    except (OSError, ValueError) as e:
        return RunSummary(id=run.id, status="broken", broken=str(e))
    metrics = run.read_metrics()
    steps = [m for m in metrics if "step" in m]
    knn = [m["knn_top1"] for m in metrics if m.get("knn_top1") is not None]
    scores = run.read_eval() or {}
    return RunSummary(
        id=run.id,
        status=status["status"],
        method=config.method.get("name", "?"),
        dataset=config.data.dataset,
        backbone=config.backbone.name,
        created=str(raw.get("created", "")),
        knn_top1=scores.get("knn_top1", knn[-1] if knn else None),
        step=steps[-1]["step"] if steps else None,
        total_steps=status.get("total_steps"),
        error=status.get("error"),
    )


# -- display names ----------------------------------------------------------------------------
# A short text a person gives a run ("baseline, lr 1e-3"), stored in the run folder as label.txt
# (written atomically) so that every browser session and the CLI see the same name and the name
# travels with the folder. Run ids stay the keys everywhere; the name is only shown.
NAME_FILE = "label.txt"
MAX_NAME_LENGTH = 80


def get_display_name(run: Run) -> str | None:
    try:
        name = (run.path / NAME_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return name[:MAX_NAME_LENGTH] or None


def set_display_name(run: Run, name: str) -> str | None:
    """Store `name` (one line, trimmed to MAX_NAME_LENGTH); an empty name removes it. Returns
    the name as stored."""
    name = " ".join(name.split())[:MAX_NAME_LENGTH]
    path = run.path / NAME_FILE
    if not name:
        path.unlink(missing_ok=True)
        return None
    atomic_write_bytes(path, (name + "\n").encode("utf-8"))
    return name


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
