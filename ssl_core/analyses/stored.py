"""The analysis/ folder of a run: each analysis stores <name>.json (its summary, written last:
its presence means the analysis is done) and, when it has arrays, <name>.npz. Every analysis
and every reader of their results goes through these functions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ssl_core.store.atomic import atomic_write_arrays, atomic_write_json
from ssl_core.store.reading import RunFileError, read_json
from ssl_core.store.runs import Run


def result_path(run: Run, name: str) -> Path:
    return run.analysis_dir / f"{name}.json"


def store_result(run: Run, name: str, summary: dict[str, Any], **arrays: Any) -> None:
    """Store analysis `name`: its arrays as <name>.npz when it has any, then its summary as
    <name>.json, written last because its presence means the analysis is done."""
    if arrays:
        atomic_write_arrays(run.analysis_dir / f"{name}.npz", **arrays)
    # Compact: an outlier summary with its 2,000 near-duplicate pairs is 0.5 MB indented, 0.3 MB not.
    atomic_write_json(result_path(run, name), summary, compact=True)


def has_stored(run: Run, name: str) -> bool:
    """Whether analysis `name` stored both its summary and its arrays (<name>.json, <name>.npz)."""
    return result_path(run, name).exists() and (run.analysis_dir / f"{name}.npz").exists()


def load_stored(run: Run, name: str, what: str, *, per_row: tuple[str, ...]) -> tuple[dict[str, Any], dict]:
    """(<name>.json, the arrays of <name>.npz) of an analysis that stores both; the arrays named in
    `per_row` must have the summary's num_rows rows. Errors name the command that computes it."""
    command = f"ssl-explorer analyze {run.id} --only {name}"
    if not has_stored(run, name):
        raise FileNotFoundError(f"run {run.id} has no {what} yet; run `{command}`")
    try:
        summary = json.loads(result_path(run, name).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"run {run.id}: analysis/{name}.json is not valid JSON ({e}); run `{command}` again") from None
    with np.load(run.analysis_dir / f"{name}.npz", allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    if {len(arrays.get(key, ())) for key in per_row} != {summary.get("num_rows")}:
        raise ValueError(f"run {run.id}: analysis/{name}.npz and {name}.json disagree on the number of rows; "
                         f"run `{command}` again")
    return summary, arrays


def read_result(run: Run, name: str) -> dict[str, Any] | None:
    """The stored summary of analysis `name`, or None when it is missing or unreadable."""
    try:
        result = read_json(result_path(run, name), f"analysis/{name}.json")
    except RunFileError:  # missing, a folder, not UTF-8, not JSON: the analysis page says which
        return None
    return result if isinstance(result, dict) else None
