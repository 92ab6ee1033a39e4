"""Which process holds what: a process's kernel start time (to tell a live owner from a reused
pid), whether it is alive, and the time stamps written beside them."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path


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


def owner_alive(record: dict) -> bool:
    """Whether the process a record names ({pid, pid_start, host}: a status, a lock, a job, a
    staging folder) is alive. Another machine's process cannot be checked, so its record is
    believed; a record without a pid names nobody."""
    pid = record.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if record.get("host") not in (None, socket.gethostname()):
        return True
    return process_alive(pid, record.get("pid_start"))


def now_iso() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")
