"""The files a person brings to `ssl-explorer import`, read and checked: embeddings, images, tables.

  embeddings  .npy (N, D), or .parquet/.csv with one vector column (parquet: a list column;
              CSV: "[0.1, 0.2, ...]" text) and optionally an id column (id, filename, ...).
  images      a folder (every image file below it, by relative path), or a .parquet with a
              column of encoded image bytes (or Hugging Face's {"bytes", "path"} structs).
  tables      .csv/.parquet, read with pandas (labels and metadata: `user_metadata`).

Every refusal is an `InvalidImport` that names the file, the rows and the fix. Nothing here
decodes an image or writes anything: `ssl_core.workflows.importer` makes the run.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ssl_core.data.decode import not_regular

ID_COLUMNS = ("id", "filename", "file_name", "file", "path", "image_id", "name")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
TABLE_SUFFIXES = (".parquet", ".csv")


class InvalidImport(ValueError):
    """An input that cannot become a run; the message names the file, the rows and the fix."""


def shortlist(names: Sequence[Any], most: int = 8) -> str:
    """Up to `most` of `names`, comma-separated, and how many more there are."""
    shown = ", ".join(str(n) for n in list(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# -- reading tables ---------------------------------------------------------------------------
def read_table(path: Path):
    import pandas as pd  # heavy to import (~0.4 s): loaded only when a .parquet/.csv input is read

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, encoding="utf-8-sig")
    raise InvalidImport(f"{path}: unknown table format '{path.suffix}'; use .csv or .parquet")


def find_id_column(frame) -> str | None:
    found = [c for c in ID_COLUMNS if c in frame.columns]
    return found[0] if found else None


def check_regular(path: Path, what: str) -> None:
    """InvalidImport unless `path` is a regular file; a FIFO or device is refused unopened."""
    if not path.exists():
        raise InvalidImport(f"{what} {path} does not exist")
    if why := not_regular(path):
        raise InvalidImport(f"{what} {path} is {why}")


# -- reading embeddings -----------------------------------------------------------------------
def is_vector(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (
        isinstance(value, str) and value.lstrip().startswith("["))


def _parse_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # "[0.1, 0.2]" (lists) or "[0.1 0.2]" (numpy arrays), as pandas writes them
        return np.array(value.strip().strip("[]").replace(",", " ").split(), dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def read_embeddings(path: str | Path, column: str | None = None) -> tuple[np.ndarray, list[str] | None, Any]:
    """An embeddings file -> (vectors float32 (N, D), ids or None, the table's other columns or None)."""
    path = Path(path).expanduser()
    check_regular(path, "embeddings file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = _load_npy(path)
        if array.ndim != 2 or array.shape[1] == 0:
            raise InvalidImport(f"{path} has shape {array.shape}; embeddings must be (N, D): one row of D "
                                "numbers per image")
        if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
            raise InvalidImport(f"{path} holds {array.dtype}, not real numbers")
        return array.astype(np.float32), None, None
    if suffix not in TABLE_SUFFIXES:
        raise InvalidImport(f"{path}: unknown embeddings format '{path.suffix}'; use .npy, .parquet or .csv")
    frame = read_table(path)
    if len(frame) == 0:
        raise InvalidImport(f"{path} has no rows")
    if column is None:
        vector_columns = [c for c in frame.columns
                          if is_vector(frame[c].dropna().iloc[0] if frame[c].notna().any() else None)]
        if len(vector_columns) != 1:
            what = "no column" if not vector_columns else f"{len(vector_columns)} columns ({shortlist(vector_columns)})"
            raise InvalidImport(f"{path}: {what} of vectors; there must be exactly one (columns: "
                                f"{shortlist(list(frame.columns), 20)}), or name it with --vector-column")
        column = vector_columns[0]
    elif column not in frame.columns:
        raise InvalidImport(f"{path} has no column '{column}'; its columns: {shortlist(list(frame.columns), 20)}")
    id_column = find_id_column(frame)
    ids = [str(v) for v in frame[id_column]] if id_column else None
    names = ids or [f"row {i}" for i in range(len(frame))]
    rows = []
    for name, value in zip(names, frame[column]):
        try:
            rows.append(_parse_vector(value).ravel() if value is not None else np.zeros(0))
        except (TypeError, ValueError) as e:
            raise InvalidImport(f"{path}: the vector of {name} is not a list of numbers ({e})") from None
    lengths = np.array([len(r) for r in rows])
    dim = int(np.bincount(lengths).argmax())
    wrong = [f"{n} ({length})" for n, length in zip(names, lengths) if length != dim]
    if dim == 0 or wrong:
        raise InvalidImport(f"{path}: vectors must all have the same length; most have {dim} numbers, "
                            f"but {len(wrong)} differ: {shortlist(wrong)}")
    extra = frame.drop(columns=[column] + ([id_column] if id_column else []))
    return np.stack(rows).astype(np.float32), ids, extra


def _load_npy(path: Path) -> np.ndarray:
    """The one array of a .npy file; InvalidImport names the file and what it holds instead."""
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle: a file from elsewhere is data, not code
    except (ValueError, EOFError) as e:
        what = ("pickled Python objects, or bytes that are no .npy array at all" if "pickle" in str(e)
                else "nothing" if isinstance(e, EOFError) else f"an incomplete array ({e})")
        raise InvalidImport(f"{path} is not a plain numeric .npy array: it holds {what}; save the embeddings "
                            "with np.save(path, array) of an (N, D) float array") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:  # np.load opens any zip file as an .npz archive, whatever its name
        names = list(loaded.files)
    raise InvalidImport(f"{path} is an .npz archive of {len(names)} arrays ({shortlist(names) or 'none'}), not one "
                        f".npy array; save the embeddings alone with np.save, e.g. np.save('embeddings.npy', "
                        f"np.load('{path.name}')['{names[0] if names else 'NAME'}'])")


# -- reading images ---------------------------------------------------------------------------
@dataclass
class ImageSource:
    """Where the images come from: names (row keys) and a way to read image i's bytes or path."""

    path: Path
    names: list[str]
    kind: str  # "folder" | "parquet"
    blobs: list[bytes] | None = None
    skipped: list[str] = field(default_factory=list)  # image names that are no regular file (FIFOs ...)

    def source(self, i: int):
        return io.BytesIO(self.blobs[i]) if self.blobs is not None else self.path / self.names[i]


def image_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict) and isinstance(value.get("bytes"), (bytes, bytearray)):
        return bytes(value["bytes"])  # Hugging Face datasets' Image feature
    return None


def read_images(path: str | Path, column: str | None = None) -> ImageSource:
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(p.relative_to(path).as_posix() for p in path.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        # A FIFO, socket or device is never opened (a FIFO's open waits for a writer forever).
        odd = {name: why for name in found if (why := not_regular(path / name))}
        names = [name for name in found if name not in odd]
        if not names:
            raise InvalidImport(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        return ImageSource(path, names, "folder", skipped=[f"{name} ({why})" for name, why in odd.items()])
    if path.is_file() and path.suffix.lower() == ".parquet":
        frame = read_table(path)
        if column is None:
            found = [c for c in frame.columns if len(frame) and image_bytes(frame[c].iloc[0]) is not None]
            if len(found) != 1:
                raise InvalidImport(f"{path}: {'no column' if not found else 'several columns'} of encoded image "
                                    f"bytes ({shortlist(found) or 'columns: ' + shortlist(list(frame.columns), 20)}); "
                                    "name it with --image-column")
            column = found[0]
        elif column not in frame.columns:
            raise InvalidImport(f"{path} has no column '{column}'; its columns: {shortlist(list(frame.columns), 20)}")
        blobs = [image_bytes(v) or b"" for v in frame[column]]
        id_column = find_id_column(frame)
        if id_column:
            names = [str(v) for v in frame[id_column]]
        elif all(isinstance(v, dict) and v.get("path") for v in frame[column]):
            names = [str(v["path"]) for v in frame[column]]
        else:
            names = [str(i) for i in range(len(frame))]
        return ImageSource(path, names, "parquet", blobs)
    if not path.exists():
        raise InvalidImport(f"images {path} do not exist: give a folder of images or a .parquet file")
    raise InvalidImport(f"images {path}: give a folder of images or a .parquet file with a column of image bytes")
