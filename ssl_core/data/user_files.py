"""The files a person brings to `ssl-explorer import`, read and checked: images, tables (and what the
embeddings reader shares: `InvalidImport`, `shortlist`).

  embeddings  .npy (N, D), or .parquet/.csv with one vector column (parquet: a list column;
              CSV: "[0.1, 0.2, ...]" text) and optionally an id column (id, filename, ...).
              Read by `user_embeddings`, a chunk of rows at a time.
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


def is_vector(value: Any) -> bool:
    """A table cell holding a vector: a list or array, or text like "[0.1, 0.2]"."""
    return isinstance(value, (list, tuple, np.ndarray)) or (
        isinstance(value, str) and value.lstrip().startswith("["))


def check_regular(path: Path, what: str) -> None:
    """InvalidImport unless `path` is a regular file; a FIFO or device is refused unopened."""
    if not path.exists():
        raise InvalidImport(f"{what} {path} does not exist")
    if why := not_regular(path):
        raise InvalidImport(f"{what} {path} is {why}")


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
