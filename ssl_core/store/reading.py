"""Reading what a hand or a crash may have left in a run folder: one JSON reader whose errors
name the file and the cause, errors of the store (RunFileError, RunBusy), and OS errors as one
sentence naming the path."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path
from typing import Any


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
