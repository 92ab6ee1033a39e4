"""The vectors a person brings to `ssl-explorer import`, read and checked a chunk of rows at a time.

  .npy      (N, D) of real numbers, memory-mapped: its header gives the shape and type, and its
            rows are read from the file a chunk at a time.
  .parquet  one column of vectors, a list of numbers per row (read a batch of rows at a time)
            or "[0.1, 0.2, ...]" text, and optionally an id column (id, filename, ...); the
            other columns are metadata.
  .csv      as a parquet's text column; parsed whole.

A million vectors of 64 numbers then cost the import a chunk of CHUNK_BYTES at a time, not a
float32 copy of the file: `Embeddings` reads them on each pass (checking, writing the run).
Every refusal is an `InvalidImport` naming the file, the rows and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ssl_core.data.user_files import (TABLE_SUFFIXES, InvalidImport, check_regular, find_id_column, is_vector,
                                      read_table, shortlist)

# What an import holds of the vectors at a time, as float32: 64k rows of 64 numbers. A million
# rows then cost a chunk of memory, not a copy of the file (a .npy or a parquet list column is
# read a chunk at a time; only a CSV or a parquet column of text is parsed whole).
CHUNK_BYTES = 16 << 20


def chunk_rows(dim: int) -> int:
    """Rows of `dim` float32 numbers in one chunk of CHUNK_BYTES (at least one)."""
    return max(1, CHUNK_BYTES // (4 * max(1, dim)))


@dataclass
class RowCheck:
    """What one pass over the vectors found, per row."""

    finite: np.ndarray  # (N,) bool: every number finite
    zero: np.ndarray  # (N,) bool: finite and all zeros (no direction for cosine similarity)


@dataclass
class Embeddings:
    """The (N, D) vectors of an embeddings file, read as float32 a chunk of rows at a time.

    `take(rows)` selects rows without reading them; a selection is read in the file's order, so
    its rows must ascend (the import keeps the file's order within each split)."""

    path: Path
    dim: int
    rows_in_file: int
    batches: Callable[[int], Iterator[np.ndarray]]  # rows per batch -> the file's rows in order
    selection: np.ndarray | None = None  # rows of the file, None: all of them

    @classmethod
    def from_array(cls, array: np.ndarray, path: Path | str = "<array>") -> "Embeddings":
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(f"embeddings must be (N, D); got shape {array.shape}")

        def batches(size: int) -> Iterator[np.ndarray]:
            for start in range(0, len(array), size):
                yield np.asarray(array[start:start + size], dtype=np.float32)

        return cls(Path(path), int(array.shape[1]), len(array), batches)

    def __len__(self) -> int:
        return self.rows_in_file if self.selection is None else len(self.selection)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def take(self, rows: np.ndarray | slice) -> "Embeddings":
        """These rows (positions in this selection), not yet read."""
        mine = np.arange(self.rows_in_file) if self.selection is None else self.selection
        return Embeddings(self.path, self.dim, self.rows_in_file, self.batches, mine[rows])

    def __getitem__(self, rows: np.ndarray | slice) -> "Embeddings":
        return self.take(rows)

    def chunks(self) -> Iterator[np.ndarray]:
        """float32 (n, D) chunks of the selected rows, in order, at most `chunk_rows(D)` rows each."""
        if self.selection is None:
            yield from self.batches(chunk_rows(self.dim))
            return
        wanted = self.selection
        if len(wanted) == 0:
            return
        if np.any(np.diff(wanted) <= 0):
            raise ValueError("a selection of embedding rows is read in the file's order: its rows must ascend")
        start, done = 0, 0
        for batch in self.batches(chunk_rows(self.dim)):
            stop = start + len(batch)
            upto = int(np.searchsorted(wanted, stop))
            if upto > done:
                yield batch[wanted[done:upto] - start]
                done = upto
            if done == len(wanted):
                return
            start = stop

    def to_array(self) -> np.ndarray:
        """All selected rows in memory, float32 (N, D): for small files and tests."""
        return np.concatenate([np.zeros((0, self.dim), dtype=np.float32), *self.chunks()])

    def check(self) -> RowCheck:
        """One pass over the selected rows: which are finite, which are all zeros."""
        finite = np.empty(len(self), dtype=bool)
        zero = np.empty(len(self), dtype=bool)
        start = 0
        for chunk in self.chunks():
            stop = start + len(chunk)
            finite[start:stop] = np.isfinite(chunk).all(axis=1)
            zero[start:stop] = ~chunk.any(axis=1)  # NaN counts as non-zero: only finite rows are zero
            start = stop
        return RowCheck(finite, zero)

    def peak(self) -> float:
        """The largest |x| of the selected rows (0 for none)."""
        return max((float(np.abs(chunk).max(initial=0.0)) for chunk in self.chunks()), default=0.0)


def _parse_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # "[0.1, 0.2]" (lists) or "[0.1 0.2]" (numpy arrays), as pandas writes them
        return np.array(value.strip().strip("[]").replace(",", " ").split(), dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def read_embeddings(path: str | Path, column: str | None = None) -> tuple[Embeddings, list[str] | None, Any]:
    """An embeddings file -> (its vectors, ids or None, the table's other columns or None).

    A .npy and a parquet list column stay in their file (`Embeddings` reads them a chunk at a
    time); a CSV or a parquet column of text is parsed into memory."""
    path = Path(path).expanduser()
    check_regular(path, "embeddings file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _npy_embeddings(path), None, None
    if suffix not in TABLE_SUFFIXES:
        raise InvalidImport(f"{path}: unknown embeddings format '{path.suffix}'; use .npy, .parquet or .csv")
    if suffix == ".parquet":
        found = _parquet_list_embeddings(path, column)
        if found is not None:
            return found
    return _table_embeddings(path, read_table(path), column)


def _vector_column(path: Path, frame, column: str | None, list_columns: Sequence[str] = (),
                   all_columns: Sequence[str] | None = None) -> str:
    """The column of vectors: `column`, else the only one of `list_columns` (numeric list columns
    of a parquet, known from its schema) and the frame's columns whose first value is a vector."""
    columns = list(all_columns if all_columns is not None else frame.columns)
    if column is not None:
        if column not in columns:
            raise InvalidImport(f"{path} has no column '{column}'; its columns: {shortlist(columns, 20)}")
        return column
    found = [*list_columns, *(c for c in frame.columns
                              if is_vector(frame[c].dropna().iloc[0] if frame[c].notna().any() else None))]
    if len(found) != 1:
        what = "no column" if not found else f"{len(found)} columns ({shortlist(found)})"
        raise InvalidImport(f"{path}: {what} of vectors; there must be exactly one (columns: "
                            f"{shortlist(columns, 20)}), or name it with --vector-column")
    return found[0]


def _refuse_lengths(path: Path, lengths: np.ndarray, ids: Sequence[str] | None) -> int:
    """The length of the vectors; InvalidImport naming the rows (by id, else "row i") whose length
    differs from most."""
    dim = int(np.bincount(lengths).argmax()) if len(lengths) else 0
    wrong = np.flatnonzero(lengths != dim)
    if dim == 0 or len(wrong):
        raise InvalidImport(f"{path}: vectors must all have the same length; most have {dim} numbers, "
                            f"but {len(wrong)} differ: "
                            + shortlist([f"{ids[i] if ids else f'row {i}'} ({lengths[i]})" for i in wrong]))
    return dim


def _table_embeddings(path: Path, frame, column: str | None) -> tuple[Embeddings, list[str] | None, Any]:
    """A CSV's (or a parquet's text) column of vectors, parsed into memory."""
    if len(frame) == 0:
        raise InvalidImport(f"{path} has no rows")
    column = _vector_column(path, frame, column)
    id_column = find_id_column(frame)
    ids = [str(v) for v in frame[id_column]] if id_column else None
    rows = []
    for i, value in enumerate(frame[column]):
        try:
            rows.append(_parse_vector(value).ravel() if value is not None else np.zeros(0))
        except (TypeError, ValueError) as e:
            raise InvalidImport(f"{path}: the vector of {ids[i] if ids else f'row {i}'} is not a list of numbers "
                                f"({e})") from None
    _refuse_lengths(path, np.array([len(r) for r in rows]), ids)
    extra = frame.drop(columns=[column] + ([id_column] if id_column else []))
    return Embeddings.from_array(np.stack(rows).astype(np.float32), path), ids, extra


def _parquet_list_embeddings(path: Path, column: str | None):
    """A parquet whose vectors are a list column of numbers, read a row group's batch at a time
    (the other columns, ids and metadata, with pandas); None when its vectors are another kind
    of column (text): `_table_embeddings` parses those."""
    # pyarrow (pandas' parquet support) and pandas: heavy to import, loaded only when a parquet is read
    import pyarrow as pa
    import pyarrow.compute as pc  # (as above)
    import pyarrow.parquet as pq  # (as above)
    import pandas as pd  # (as above)

    try:
        schema = pq.read_schema(path)
        rows_in_file = pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as e:
        raise InvalidImport(f"{path} is not a readable parquet file ({e})") from None
    index_columns = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    columns = [f.name for f in schema if f.name not in index_columns]

    def numeric_list(field) -> bool:
        kind = field.type
        return ((pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind))
                and (pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)))

    lists = [f.name for f in schema if f.name in columns and numeric_list(f)]
    if column is not None and column not in lists:
        return None
    if rows_in_file == 0:
        raise InvalidImport(f"{path} has no rows")

    def read_columns(names: list[str]):
        # pandas reads every column for columns=[]: a table of vectors alone reads none.
        return pd.read_parquet(path, columns=names) if names else pd.DataFrame(index=pd.RangeIndex(rows_in_file))

    frame = read_columns([c for c in columns if c not in lists])
    column = _vector_column(path, frame, column, lists, columns)
    if column not in lists:
        return None
    others = [c for c in lists if c != column]
    if others:  # other list columns stay metadata, as a whole-table read would keep them
        frame = read_columns([c for c in columns if c != column])
    id_column = find_id_column(frame)
    ids = [str(v) for v in frame[id_column]] if id_column else None

    def column_batches(size: int) -> Iterator[Any]:
        # Pages streamed through a 1 MiB buffer: pre-buffering reads whole column chunks ahead
        # (pyarrow's pool peaked at 334 MiB on 1M x 64 in row groups of 100k rows, 84 MiB so).
        stream = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        for batch in stream.iter_batches(batch_size=size, columns=[column], use_threads=False):
            yield batch.column(0)

    lengths = np.concatenate([pc.fill_null(pc.list_value_length(b), 0).to_numpy() for b in column_batches(1 << 16)])
    dim = _refuse_lengths(path, lengths.astype(np.int64), ids)

    def batches(size: int) -> Iterator[np.ndarray]:
        for values in column_batches(size):
            flat = pc.list_flatten(values).to_numpy(zero_copy_only=False)  # nulls inside a vector: NaN
            yield np.asarray(flat, dtype=np.float32).reshape(len(values), dim)

    extra = frame.drop(columns=[id_column] if id_column else [])
    return Embeddings(path, dim, rows_in_file, batches), ids, extra


def _npy_embeddings(path: Path) -> Embeddings:
    """A .npy file's (N, D) array, memory-mapped to check its header and read a chunk at a time."""
    array = _load_npy(path)
    if array.ndim != 2 or array.shape[1] == 0:
        raise InvalidImport(f"{path} has shape {array.shape}; embeddings must be (N, D): one row of D "
                            "numbers per image")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise InvalidImport(f"{path} holds {array.dtype}, not real numbers")
    n, dim = array.shape
    if not (isinstance(array, np.memmap) and array.flags.c_contiguous):
        return Embeddings.from_array(array, path)  # Fortran order: the map reads its strided rows
    dtype, offset = array.dtype, array.offset
    del array  # chunks are read from the file, not through the map: pages of a map, once read,
    # stay resident (and count in the process's memory) until the kernel wants them back

    def batches(size: int) -> Iterator[np.ndarray]:
        with open(path, "rb") as f:
            f.seek(offset)
            for start in range(0, n, size):
                count = min(size, n - start)
                chunk = np.fromfile(f, dtype=dtype, count=count * dim)
                if len(chunk) != count * dim:  # shortened since it was opened
                    raise InvalidImport(f"{path} ended early: its header promises {n:,} rows, "
                                        f"it holds {start + len(chunk) // dim:,}")
                yield chunk.reshape(count, dim).astype(np.float32, copy=False)

    return Embeddings(path, dim, n, batches)


def _load_npy(path: Path) -> np.ndarray:
    """The one array of a .npy file, memory-mapped; InvalidImport names the file and what it
    holds instead."""
    try:
        # never unpickle: a file from elsewhere is data, not code
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as e:
        what = ("pickled Python objects, or bytes that are no .npy array at all"
                if "pickle" in str(e) or "Python objects" in str(e)
                else "nothing" if isinstance(e, EOFError)
                else "an incomplete array (the file is shorter than its header says)" if "mmap length" in str(e)
                else f"an incomplete array ({e})")
        raise InvalidImport(f"{path} is not a plain numeric .npy array: it holds {what}; save the embeddings "
                            "with np.save(path, array) of an (N, D) float array") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:  # np.load opens any zip file as an .npz archive, whatever its name
        names = list(loaded.files)
    raise InvalidImport(f"{path} is an .npz archive of {len(names)} arrays ({shortlist(names) or 'none'}), not one "
                        f".npy array; save the embeddings alone with np.save, e.g. np.save('embeddings.npy', "
                        f"np.load('{path.name}')['{names[0] if names else 'NAME'}'])")
