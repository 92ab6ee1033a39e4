"""Import embeddings made elsewhere: a run with no training and no encoder (method `imported`).

    ssl-explorer import --images photos/ --embeddings vectors.npy --labels meta.csv

The run folder holds what every page reads from a trained run: embeddings per split, scores
when there are labels, the UMAP map and the FAISS index, plus the images themselves
(dataset/images.npy: no dataset loader could rebuild them) and the metadata columns the map can
colour by (dataset/factors.npz). Rows are train then test, as in every run.

Inputs
  embeddings  .npy (N, D), or .parquet/.csv with one vector column (parquet: a list column;
              CSV: "[0.1, 0.2, ...]" text) and optionally an id column (id, filename, ...).
  images      a folder (every image file below it, by relative path), or a .parquet with a
              column of encoded image bytes (or Hugging Face's {"bytes", "path"} structs).
  labels      .csv/.parquet: an optional id column, a `label` column, an optional `split`
              column (train/test), and any other columns as metadata to colour the map by.

Embeddings with ids are matched to images by file name (relative path, with or without its
suffix, or the bare name: the first form that matches all of them); without ids (.npy), by
order: sorted relative paths of a folder, row order of a parquet. The result says which.

Every check runs before anything is written, and the run is built in a hidden folder inside the
runs root (RunStore.create_atomically), so a refused or failed import leaves no run. It is
renamed into place once everything but the UMAP map is stored: the slow step (tens of seconds,
more on a machine's first map while numba compiles umap-learn) then runs in the published run,
whose status says so and whose Explore page shows the PCA map meanwhile. If UMAP fails, the run
stays usable and finished, and the warning says how to make the map again.
"""

from __future__ import annotations

import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ssl_core.store.runs import IMPORTED_METHOD, Run, RunStore, atomic_write_bytes, atomic_write_json, set_display_name
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.data.convert import split_train_test
from ssl_core.data.decode import not_regular
from ssl_core.data.folder import decode_image
from ssl_core.steps.evaluate import evaluate_run
from ssl_core.steps.index import index_run
from ssl_core.workflows.pipeline import run_post_steps

METHOD = IMPORTED_METHOD  # the `method` name in an imported run's config.json
ID_COLUMNS = ("id", "filename", "file_name", "file", "path", "image_id", "name")
MATCHES = ("auto", "name", "order")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
TABLE_SUFFIXES = (".parquet", ".csv")
FLOAT16_MAX = 65504.0
MAX_LEVELS = 256  # a text column with more distinct values than this is not a colouring

Progress = Callable[[float, str], None]


class InvalidImport(ValueError):
    """An input that cannot become a run; the message names the file, the rows and the fix."""


@dataclass
class Imported:
    """The new run, how rows were matched, and the named warnings the import raised."""

    run: Run | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _some(names: Sequence[Any], most: int = 8) -> str:
    shown = ", ".join(str(n) for n in list(names)[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


# -- reading tables ---------------------------------------------------------------------------
def _read_table(path: Path):
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, encoding="utf-8-sig")
    raise InvalidImport(f"{path}: unknown table format '{path.suffix}'; use .csv or .parquet")


def _id_column(frame) -> str | None:
    found = [c for c in ID_COLUMNS if c in frame.columns]
    return found[0] if found else None


def _is_vector(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (
        isinstance(value, str) and value.lstrip().startswith("["))


def _parse_vector(value: Any) -> np.ndarray:
    if isinstance(value, str):  # "[0.1, 0.2]" (lists) or "[0.1 0.2]" (numpy arrays), as pandas writes them
        return np.array(value.strip().strip("[]").replace(",", " ").split(), dtype=np.float64)
    return np.asarray(value, dtype=np.float64)


def read_embeddings(path: str | Path, column: str | None = None) -> tuple[np.ndarray, list[str] | None, Any]:
    """An embeddings file -> (vectors float32 (N, D), ids or None, the table's other columns or None)."""
    path = Path(path).expanduser()
    _check_regular(path, "embeddings file")
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
    frame = _read_table(path)
    if len(frame) == 0:
        raise InvalidImport(f"{path} has no rows")
    if column is None:
        vector_columns = [c for c in frame.columns if _is_vector(frame[c].dropna().iloc[0] if frame[c].notna().any() else None)]
        if len(vector_columns) != 1:
            what = "no column" if not vector_columns else f"{len(vector_columns)} columns ({_some(vector_columns)})"
            raise InvalidImport(f"{path}: {what} of vectors; there must be exactly one (columns: "
                                f"{_some(list(frame.columns), 20)}), or name it with --vector-column")
        column = vector_columns[0]
    elif column not in frame.columns:
        raise InvalidImport(f"{path} has no column '{column}'; its columns: {_some(list(frame.columns), 20)}")
    id_column = _id_column(frame)
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
                            f"but {len(wrong)} differ: {_some(wrong)}")
    extra = frame.drop(columns=[column] + ([id_column] if id_column else []))
    return np.stack(rows).astype(np.float32), ids, extra


def _check_regular(path: Path, what: str) -> None:
    """InvalidImport unless `path` is a regular file; a FIFO or device is refused unopened."""
    if not path.exists():
        raise InvalidImport(f"{what} {path} does not exist")
    if why := not_regular(path):
        raise InvalidImport(f"{what} {path} is {why}")


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
    raise InvalidImport(f"{path} is an .npz archive of {len(names)} arrays ({_some(names) or 'none'}), not one "
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


def _image_bytes(value: Any) -> bytes | None:
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
        frame = _read_table(path)
        if column is None:
            found = [c for c in frame.columns if len(frame) and _image_bytes(frame[c].iloc[0]) is not None]
            if len(found) != 1:
                raise InvalidImport(f"{path}: {'no column' if not found else 'several columns'} of encoded image "
                                    f"bytes ({_some(found) or 'columns: ' + _some(list(frame.columns), 20)}); "
                                    "name it with --image-column")
            column = found[0]
        elif column not in frame.columns:
            raise InvalidImport(f"{path} has no column '{column}'; its columns: {_some(list(frame.columns), 20)}")
        blobs = [_image_bytes(v) or b"" for v in frame[column]]
        id_column = _id_column(frame)
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


# -- matching rows by name --------------------------------------------------------------------
_FORMS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("relative path", lambda s: s),
    ("relative path without suffix", lambda s: str(Path(s).with_suffix("")) if Path(s).suffix else s),
    ("file name", lambda s: Path(s).name),
    ("file name without suffix", lambda s: Path(s).stem),
)


def _duplicates(names: Sequence[str]) -> list[str]:
    seen, dup = set(), []
    for n in names:
        if n in seen and n not in dup:
            dup.append(n)
        seen.add(n)
    return dup


def match_names(wanted: Sequence[str], available: Sequence[str]) -> tuple[np.ndarray, str, list[str]]:
    """Position in `available` of each name in `wanted` (-1: none) under the first form of name
    (relative path, without suffix, file name, stem) that is unique on both sides and matches
    the most names. Returns (positions, the form's description, the names that found none)."""
    best = None
    for description, form in _FORMS:
        keys = [form(a) for a in available]
        if _duplicates(keys) or _duplicates([form(w) for w in wanted]):
            continue
        where = {k: i for i, k in enumerate(keys)}
        positions = np.array([where.get(form(w), -1) for w in wanted], dtype=np.int64)
        if best is None or (positions >= 0).sum() > (best[0] >= 0).sum():
            best = (positions, description)
        if (positions >= 0).all():
            break
    if best is None:
        return np.full(len(wanted), -1, dtype=np.int64), "no form of name", list(wanted)
    positions, description = best
    return positions, description, [w for w, p in zip(wanted, positions) if p < 0]


def _natural_key(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


# -- metadata ---------------------------------------------------------------------------------
@dataclass
class Metadata:
    labelled: bool  # a label column was found
    labels: np.ndarray  # (N,) int64, -1 where unknown
    class_names: list[str]
    factors: dict[str, np.ndarray]
    factor_levels: dict[str, tuple[str, ...]]
    split: np.ndarray | None  # (N,) bool is_train, or None: draw a split


def _categorical(values) -> tuple[np.ndarray, list[str]]:
    """(codes with -1 where missing, sorted level names); numbers sort as numbers."""
    import pandas as pd

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
        raise InvalidImport(f"{path}: column 'split' holds {_some(bad)}; use train or test")
    return np.array([mapping[t] for t in text], dtype=bool)


def metadata_from(frame, path: Path, rows: np.ndarray, n: int, label_column: str | None,
                  warn: Callable[[str], None]) -> Metadata:
    """Labels, split and colourable columns of `frame`; row r of the run is frame row rows[r]
    (-1: no row, so unknown label and missing values)."""
    import pandas as pd

    have = rows >= 0
    meta = Metadata(False, np.full(n, -1, dtype=np.int64), [], {}, {}, None)
    label_column = label_column or ("label" if "label" in frame.columns else None)
    if label_column is not None and label_column not in frame.columns:
        raise InvalidImport(f"{path} has no column '{label_column}'; its columns: {_some(list(frame.columns), 20)}")
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=object)
        if len(values) and (_is_vector(values[0]) or _image_bytes(values[0]) is not None):
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


# -- the import -------------------------------------------------------------------------------
def _decode(source: ImageSource, positions: np.ndarray, resolution: int,
            progress: Progress) -> list[np.ndarray | str]:
    results: list[np.ndarray | str] = []
    chunk = 256
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for start in range(0, len(positions), chunk):
            part = positions[start:start + chunk]
            results += pool.map(lambda i: decode_image(source.source(int(i)), resolution), part)
            progress(0.1 + 0.4 * len(results) / len(positions), f"reading images {len(results):,}/{len(positions):,}")
    return results


def _save_npy(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(path, buffer.getvalue())


def _storage_dtype(vectors: np.ndarray) -> type:
    """float16 like trained runs, unless the values would overflow it or sink into its
    subnormals (|x| < 6e-5 loses precision): then float32."""
    peak = float(np.abs(vectors).max(initial=0.0))
    return np.float16 if 1e-2 <= peak < FLOAT16_MAX else np.float32


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:24] or "data"


def _versions() -> dict[str, str]:
    import platform
    from importlib import metadata

    found = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("umap-learn", "faiss-cpu"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def import_embeddings(store: RunStore, *, images: str | Path, embeddings: str | Path,
                      labels: str | Path | None = None, name: str | None = None, match: str = "auto",
                      resolution: int = 64, skip_invalid: bool = False, vector_column: str | None = None,
                      image_column: str | None = None, label_column: str | None = None, seed: int = 0,
                      progress: Progress | None = None) -> Imported:
    """Make a run from embeddings computed elsewhere and their images (see the module doc).

    Raises InvalidImport (a ValueError) naming the problem for mismatched counts, wrong
    dimensions, NaN or infinite rows, duplicate ids and unreadable images; with
    `skip_invalid`, rows with non-finite vectors or unreadable images are left out instead, each
    named in a warning. The run is published once everything but its UMAP map is stored; the
    UMAP map follows in place (the Explore page shows the PCA map meanwhile).
    """
    report = progress or (lambda fraction, text: None)
    if match not in MATCHES:
        raise InvalidImport(f"unknown match '{match}'; known: {', '.join(MATCHES)}")
    if not 8 <= resolution <= 512:
        raise InvalidImport(f"resolution {resolution} is out of range: choose 8 to 512 px")
    done = Imported(run=None)  # notes and warnings gather here; the run comes last
    embeddings_path, images_path = Path(embeddings).expanduser(), Path(images).expanduser()

    report(0.0, f"reading {embeddings_path.name}")
    vectors, ids, extra = read_embeddings(embeddings_path, vector_column)
    if ids is not None and (dup := _duplicates(ids)):
        raise InvalidImport(f"{embeddings_path}: duplicate ids {_some(dup)}; each image needs one row")
    source = read_images(images_path, image_column)
    if source.skipped:
        done.warnings.append(f"{len(source.skipped):,} entries of {images_path} are left out: "
                             + _some(source.skipped, 5))
    positions, row_ids = _match_images(vectors, ids, source, match, embeddings_path.name, done)
    if len(vectors) < 5:
        raise InvalidImport(f"{embeddings_path.name} has {len(vectors)} rows; a map needs at least 5 images")
    meta = read_metadata(labels, extra, embeddings_path, row_ids, label_column, done)
    keep = _finite_rows(vectors, row_ids, skip_invalid, done)

    report(0.1, "reading images")
    decoded = _decode(source, positions[keep], resolution, report)
    unreadable = [(row_ids[i], result) for i, result in zip(np.flatnonzero(keep), decoded) if isinstance(result, str)]
    if unreadable:
        message = (f"{len(unreadable):,} images cannot be read: "
                   + _some([f"{name} ({why})" for name, why in unreadable], 5))
        if not skip_invalid:
            raise InvalidImport(message + "; fix or remove them, or pass --skip-invalid to leave those rows out")
        done.warnings.append(message + ": left out")
    kept = np.flatnonzero(keep)[[not isinstance(result, str) for result in decoded]]
    if len(kept) < 5:
        raise InvalidImport(f"only {len(kept)} usable rows are left; a map needs at least 5 images")
    pictures = np.stack([result for result in decoded if not isinstance(result, str)])
    is_train = _split(meta, kept, seed, done)
    order = np.concatenate([np.flatnonzero(is_train), np.flatnonzero(~is_train)])
    rows = kept[order]  # train rows, then test rows, as in every run

    config = _imported_config(name or images_path.stem or images_path.name, resolution, seed, {
        "name": METHOD, "embeddings": str(embeddings_path.resolve()), "images": str(images_path.resolve()),
        "labels": str(Path(labels).expanduser().resolve()) if labels is not None else None,
        "match": done.notes[0], "embedding_dim": int(vectors.shape[1])})
    report(0.5, "writing the run")
    with store.create_atomically(config, extra={"versions": _versions()}) as run:
        run.set_status("running", stage="import")
        write_rows(run, vectors[rows], [row_ids[i] for i in rows], meta.labels[rows], meta.class_names,
                   int(is_train.sum()), pictures[order], {k: v[rows] for k, v in meta.factors.items()},
                   meta.factor_levels)
        score_and_index(run, report, done.warnings.append)
        if name:
            set_display_name(run, name)
        # Published from here on. The Explore page shows the PCA map, which the projection step
        # writes within a second, until the UMAP map (tens of seconds, more on a first run while
        # numba compiles umap-learn) replaces it.
        run.set_status("running", stage="project")
    done.run = store.get(run.id)
    report(0.6, f"run {run.id} can be explored now; computing its UMAP map (the PCA map stands in)")
    map_run(done.run, done.warnings.append)
    report(1.0, f"imported run {run.id}")
    return done


def _match_images(vectors: np.ndarray, ids: list[str] | None, source: ImageSource, match: str,
                  embeddings_name: str, done: Imported) -> tuple[np.ndarray, list[str]]:
    """(the image of each embedding row, as a position in `source`; the rows' ids)."""
    if source.kind == "parquet" and (dup := _duplicates(source.names)):
        raise InvalidImport(f"{source.path}: duplicate ids {_some(dup)}; each image needs one row")
    described = f"{len(source.names):,} images in {source.path}"
    if (match if match != "auto" else ("name" if ids is not None else "order")) == "name":
        if ids is None:
            raise InvalidImport(f"--match name needs ids in the embeddings (a column named one of "
                                f"{', '.join(ID_COLUMNS)}); {embeddings_name} has none")
        positions, form, missing = match_names(ids, source.names)
        if missing:
            raise InvalidImport(f"{len(missing):,} of {len(ids):,} embedding ids match no image in {source.path} "
                                f"(tried relative path, without suffix, file name, stem): {_some(missing)}")
        done.notes.append(f"matched {len(ids):,} embeddings to images by {form}")
        unused = sorted(set(range(len(source.names))) - set(positions.tolist()))
        if unused:
            done.warnings.append(f"{len(unused):,} of {described} have no embedding and are left out: "
                                 f"{_some([source.names[i] for i in unused])}")
        return positions, list(ids)
    if len(vectors) != len(source.names):
        raise InvalidImport(f"{len(vectors):,} embeddings in {embeddings_name} but {described}: matched by "
                            "order, the counts must be equal (or give the embeddings an id column of file "
                            "names to match by name)")
    order = "sorted relative path" if source.kind == "folder" else "row order"
    done.notes.append(f"matched {len(vectors):,} embeddings to images by {order}: row 0 is {source.names[0]}, "
                      f"row {len(vectors) - 1} is {source.names[-1]}")
    natural = sorted(source.names, key=_natural_key)
    if source.kind == "folder" and natural != source.names:
        first = next(i for i, (a, b) in enumerate(zip(source.names, natural)) if a != b)
        done.warnings.append(f"file names hold numbers of different lengths, so sorted order puts "
                             f"{source.names[first]} at row {first} (not {natural[first]}); if the embeddings "
                             "follow numeric order, zero-pad the numbers or give the embeddings an id column")
    return np.arange(len(vectors)), list(ids) if ids is not None else list(source.names)


def read_metadata(labels: str | Path | None, extra, embeddings_path: Path, row_ids: list[str],
                  label_column: str | None, done: Imported) -> Metadata:
    """Labels, split and colourings of the rows: the embeddings table's other columns, then the
    labels file's (which win)."""
    n = len(row_ids)
    frames = []
    if extra is not None and len(extra.columns):
        frames.append((extra, embeddings_path, np.arange(n)))
    if labels is not None:
        labels_path = Path(labels).expanduser()
        _check_regular(labels_path, "labels file")
        table = _read_table(labels_path)
        id_column = _id_column(table)
        if id_column:
            keys = [str(v) for v in table[id_column]]
            if dup := _duplicates(keys):
                raise InvalidImport(f"{labels_path}: duplicate ids {_some(dup)} in column '{id_column}'")
            rows, form, missing = match_names(row_ids, keys)
            if len(missing) == n:
                raise InvalidImport(f"no id in column '{id_column}' of {labels_path} matches an image "
                                    f"(ids look like {_some(row_ids, 3)}; the file has {_some(keys, 3)})")
            if missing:
                done.warnings.append(f"{len(missing):,} images have no row in {labels_path.name} and no label: "
                                     f"{_some(missing)}")
            done.notes.append(f"matched {labels_path.name} to images by {form} of '{id_column}'")
            table = table.drop(columns=[id_column])
        elif len(table) != n:
            raise InvalidImport(f"{labels_path} has {len(table):,} rows for {n:,} embeddings and no id column "
                                f"({', '.join(ID_COLUMNS)}) to match them by: the counts must be equal")
        else:
            rows = np.arange(n)
            done.notes.append(f"matched {labels_path.name} to embeddings by row order")
        frames.append((table, labels_path, rows))
    meta = Metadata(False, np.full(n, -1, dtype=np.int64), [], {}, {}, None)
    for frame, path, rows in frames:
        # --label-column names a column of the labels file, or of the embeddings table without one.
        column = label_column if (path != embeddings_path) == (labels is not None) else None
        part = metadata_from(frame, path, rows, n, column, done.warnings.append)
        if part.labelled:
            meta.labelled, meta.labels, meta.class_names = True, part.labels, part.class_names
        meta.split = part.split if part.split is not None else meta.split
        meta.factors.update(part.factors)
        meta.factor_levels = {**{k: v for k, v in meta.factor_levels.items() if k not in part.factors},
                              **part.factor_levels}
    return meta


def _finite_rows(vectors: np.ndarray, row_ids: list[str], skip_invalid: bool, done: Imported) -> np.ndarray:
    """Rows whose vectors are finite; NaN or infinite ones are an error naming them, or with
    `skip_invalid` a warning naming them."""
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        bad = [row_ids[i] for i in np.flatnonzero(~finite)]
        message = f"{len(bad):,} embeddings hold NaN or infinite values: {_some(bad)}"
        if not skip_invalid:
            raise InvalidImport(message + "; fix them, or pass --skip-invalid to leave those rows out")
        done.warnings.append(message + ": left out")
    zero = np.flatnonzero(finite & ~np.abs(np.nan_to_num(vectors)).any(axis=1))
    if len(zero):
        done.warnings.append(f"{len(zero):,} embeddings are all zeros (no direction for cosine similarity): "
                             f"{_some([row_ids[i] for i in zero])}")
    return finite


def _split(meta: Metadata, kept: np.ndarray, seed: int, done: Imported) -> np.ndarray:
    """is_train of the kept rows: the metadata's `split` column, else a seeded 80/20 split
    (stratified by label)."""
    if meta.split is not None:
        is_train = meta.split[kept]
        done.notes.append(f"split from the 'split' column: {int(is_train.sum()):,} train, "
                          f"{int((~is_train).sum()):,} test")
        return is_train

    train, _ = split_train_test(meta.labels[kept], np.random.default_rng(seed))
    is_train = np.zeros(len(kept), dtype=bool)
    is_train[train] = True
    done.notes.append(f"split 80/20 at random (seed {seed}{', stratified by label' if meta.labelled else ''}): "
                      f"{int(is_train.sum()):,} train, {int((~is_train).sum()):,} test")
    return is_train


def _imported_config(dataset: str, resolution: int, seed: int, method: dict[str, Any]):
    # `dataset` only names the images here: they are stored in the run folder (dataset/).
    return RunConfig(data=DataConfig(dataset=_slug(dataset), resolution=resolution, seed=seed),
                     backbone=BackboneConfig(name="none"), method=method,
                     train=TrainConfig(epochs=0, seed=seed, device="cpu"))


def write_rows(run: Run, vectors: np.ndarray, ids: list[str], labels: np.ndarray, class_names: list[str],
               n_train: int, images: np.ndarray, factors: dict[str, np.ndarray],
               factor_levels: dict[str, tuple[str, ...]]) -> None:
    """Store rows (train first, then test) as a trained run's embed step would, plus the images
    and metadata that no dataset loader can rebuild for this run."""
    dtype = _storage_dtype(vectors)
    for split, part in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        _save_npy(run.embeddings_dir / f"{split}.npy", vectors[part].astype(dtype))
        _save_npy(run.embeddings_dir / f"{split}_labels.npy", labels[part].astype(np.int64))
        atomic_write_json(run.embeddings_dir / f"{split}_ids.json", ids[part])
    atomic_write_json(run.embeddings_dir / "class_names.json", list(class_names))
    folder = run.dataset_dir
    _save_npy(folder / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    buffer = io.BytesIO()
    np.savez(buffer, **factors)
    atomic_write_bytes(folder / "factors.npz", buffer.getvalue())
    atomic_write_json(folder / "factor_levels.json", {k: list(v) for k, v in factor_levels.items()})


def score_and_index(run: Run, report: Progress, warn: Callable[[str], None]) -> None:
    """Scores (when there are labels) and the search index of a run whose embeddings are stored."""
    report(0.55, "scoring (kNN, linear probe)")
    try:
        evaluate_run(run)
    except ValueError as e:  # e.g. a single class: nothing to probe
        warn(f"no scores: {e}")
    report(0.58, "building the search index")
    index_run(run)


def map_run(run: Run, warn: Callable[[str], None]) -> None:
    """The maps of a published run, then status finished. A failed UMAP leaves a usable run (the
    PCA map stands in, if it was written), finished with a warning that says how to try again."""
    try:
        run_post_steps(run, ["project"], progress=False, log=lambda message: None)
    except Exception as e:
        run.set_status("finished", stage="done")
        warn(f"the UMAP map failed ({type(e).__name__}: {e}); run `ssl-explorer project {run.id}` to try again")
