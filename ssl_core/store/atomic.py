"""Crash-safe writes: every file goes to a temporary file in the same folder, is flushed to disk
and renamed over its target (atomic on POSIX), so a reader sees the old file or the new one,
never half of one."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it
FILE_MODE = 0o666 & ~_UMASK  # what a plain open() gives a new file


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename (atomic on POSIX). The file
    gets the permissions a plain open() would give it (0666 less the umask), not mkstemp's 0600,
    so run folders and exports stay readable by whoever may read their folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
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
    buffer = io.BytesIO()
    np.save(buffer, array) if array is not None else np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_write_json(path: Path, obj: Any, *, compact: bool = False) -> None:
    """`obj` as JSON, indented for people to read, or `compact` (no spaces) for large records."""
    text = json.dumps(obj, separators=(",", ":"), default=str) if compact else json.dumps(obj, indent=2, default=str)
    atomic_write_bytes(path, (text + "\n").encode())
