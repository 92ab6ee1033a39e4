"""Labels, train/test split and the columns a map can colour by, from the user's tables: the
embeddings table's other columns and a labels file matched to the images by id or by order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ssl_core.data.row_matching import duplicates, match_names
from ssl_core.data.user_files import (ID_COLUMNS, InvalidImport, check_regular, find_id_column, image_bytes,
                                      is_vector, read_table, shortlist)

MAX_LEVELS = 256  # a text column with more distinct values than this is not a colouring


@dataclass
class Metadata:
    """What the user's tables say of each row of the run."""

    labelled: bool  # a label column was found
    labels: np.ndarray  # (N,) int64, -1 where unknown
    class_names: list[str]
    factors: dict[str, np.ndarray]
    factor_levels: dict[str, tuple[str, ...]]
    split: np.ndarray | None  # (N,) bool is_train, or None: draw a split


def _categorical(values) -> tuple[np.ndarray, list[str]]:
    """(codes with -1 where missing, sorted level names); numbers sort as numbers."""
    import pandas as pd  # heavy to import (~0.4 s): only imports with tables of metadata come here

    present = [v for v in values if not pd.isna(v)]
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in present)
    levels = sorted(set(present)) if numeric else sorted({str(v) for v in present})
    names = [(str(int(v)) if float(v).is_integer() else str(v)) if numeric else v for v in levels]
    code = {level: i for i, level in enumerate(levels)}
    return np.array([-1 if pd.isna(v) else code[v if numeric else str(v)] for v in values], dtype=np.int64), names


def _split_values(values, path: Path) -> np.ndarray:
    mapping = {"train": True, "training": True, "test": False, "val": False, "valid": False, "validation": False}
    text = [str(v).strip().lower() for v in values]
    bad = sorted({t for t in text if t not in mapping})
    if bad:
        raise InvalidImport(f"{path}: column 'split' holds {shortlist(bad)}; use train or test")
    return np.array([mapping[t] for t in text], dtype=bool)


def metadata_from(frame, path: Path, rows: np.ndarray, n: int, label_column: str | None,
                  warn: Callable[[str], None]) -> Metadata:
    """Labels, split and colourable columns of `frame`; row r of the run is frame row rows[r]
    (-1: no row, so unknown label and missing values)."""
    import pandas as pd  # heavy to import (~0.4 s): only imports with tables of metadata come here

    have = rows >= 0
    meta = Metadata(False, np.full(n, -1, dtype=np.int64), [], {}, {}, None)
    label_column = label_column or ("label" if "label" in frame.columns else None)
    if label_column is not None and label_column not in frame.columns:
        raise InvalidImport(f"{path} has no column '{label_column}'; its columns: {shortlist(list(frame.columns), 20)}")
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=object)
        if len(values) and (is_vector(values[0]) or image_bytes(values[0]) is not None):
            continue  # vectors and images are not colourings
        picked = np.empty(n, dtype=object)
        picked[:] = None
        picked[have] = values[rows[have]]
        if column == label_column:
            meta.labels, meta.class_names = _categorical(picked)
            meta.labelled = True
        elif column == "split":
            if not have.all():
                raise InvalidImport(f"{path}: column 'split' has no row for {int((~have).sum())} images")
            meta.split = _split_values(picked, path)
        elif pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            meta.factors[column] = np.array([np.nan if v is None or pd.isna(v) else float(v) for v in picked])
        else:
            codes, levels = _categorical(picked)
            if len(levels) > MAX_LEVELS:
                warn(f"column '{column}' of {path.name} has {len(levels):,} distinct values: not used to "
                     "colour the map")
                continue
            meta.factors[column], meta.factor_levels[column] = codes, tuple(levels)
    return meta


def read_metadata(labels: str | Path | None, extra, embeddings_path: Path, row_ids: list[str],
                  label_column: str | None, notes: list[str], warnings: list[str]) -> Metadata:
    """Labels, split and colourings of the rows: the embeddings table's other columns, then the
    labels file's (which win)."""
    n = len(row_ids)
    frames = []
    if extra is not None and len(extra.columns):
        frames.append((extra, embeddings_path, np.arange(n)))
    if labels is not None:
        labels_path = Path(labels).expanduser()
        check_regular(labels_path, "labels file")
        table = read_table(labels_path)
        id_column = find_id_column(table)
        if id_column:
            keys = [str(v) for v in table[id_column]]
            if dup := duplicates(keys):
                raise InvalidImport(f"{labels_path}: duplicate ids {shortlist(dup)} in column '{id_column}'")
            rows, form, missing = match_names(row_ids, keys)
            if len(missing) == n:
                raise InvalidImport(f"no id in column '{id_column}' of {labels_path} matches an image "
                                    f"(ids look like {shortlist(row_ids, 3)}; the file has {shortlist(keys, 3)})")
            if missing:
                warnings.append(f"{len(missing):,} images have no row in {labels_path.name} and no label: "
                                f"{shortlist(missing)}")
            notes.append(f"matched {labels_path.name} to images by {form} of '{id_column}'")
            table = table.drop(columns=[id_column])
        elif len(table) != n:
            raise InvalidImport(f"{labels_path} has {len(table):,} rows for {n:,} embeddings and no id column "
                                f"({', '.join(ID_COLUMNS)}) to match them by: the counts must be equal")
        else:
            rows = np.arange(n)
            notes.append(f"matched {labels_path.name} to embeddings by row order")
        frames.append((table, labels_path, rows))
    meta = Metadata(False, np.full(n, -1, dtype=np.int64), [], {}, {}, None)
    for frame, path, rows in frames:
        # --label-column names a column of the labels file, or of the embeddings table without one.
        column = label_column if (path != embeddings_path) == (labels is not None) else None
        part = metadata_from(frame, path, rows, n, column, warnings.append)
        if part.labelled:
            meta.labelled, meta.labels, meta.class_names = True, part.labels, part.class_names
        meta.split = part.split if part.split is not None else meta.split
        meta.factors.update(part.factors)
        meta.factor_levels = {**{k: v for k, v in meta.factor_levels.items() if k not in part.factors},
                              **part.factor_levels}
    return meta
