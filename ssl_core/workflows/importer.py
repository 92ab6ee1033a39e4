"""Import embeddings made elsewhere: a run with no training and no encoder (method `imported`).

    ssl-explorer import --images photos/ --embeddings vectors.npy --labels meta.csv
    ssl-explorer import --embeddings vectors.npy --labels meta.csv      (no images)

The run folder holds what every page reads from a trained run: embeddings per split, scores
when there are labels, the UMAP map and the FAISS index, plus the images themselves
(dataset/images.npy: no dataset loader could rebuild them) and the metadata columns the map can
colour by (dataset/factors.npz). Rows are train then test, as in every run.

Without images (no `images`), the run is its vectors, ids (the embeddings' id column, else the
row numbers) and metadata alone, with no dataset/images.npy: its map, neighbours and scores work
as in any run, and what shows images says instead that there are none
(`steps.readiness.viewable`). A million rows need no more memory than the vectors' chunks and
the per-row ids and labels.

Inputs
  embeddings  .npy (N, D), or .parquet/.csv with one vector column (parquet: a list column;
              CSV: "[0.1, 0.2, ...]" text) and optionally an id column (id, filename, ...).
  images      optional: a folder (every image file below it, by relative path), or a .parquet
              with a column of encoded image bytes (or Hugging Face's {"bytes", "path"} structs).
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

The files are read and checked in the data layer: `ssl_core.data.user_embeddings` (the
vectors), `data.user_files` (images, tables), `data.row_matching` (which image each row is) and
`data.user_metadata` (labels, split, colourings). This module checks the rows, decodes the
images and makes the run.

The vectors never sit in memory whole: a .npy (or a parquet list column) is read a chunk of rows
at a time, once to check the rows (NaN, infinite, all zeros), then per split once for its largest
value (the storage type) and once to write its float16 file, a chunk converted and appended at a
time. Importing 1,000,000 x 64 float32 vectors peaks 145 MiB above the process's start, where it
took 840 MiB (a parquet list column: 326 MiB, where it took 2.8 GiB; bench/results/import_cpu.md).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ssl_core.store import files
from ssl_core.store.atomic import FILE_MODE, atomic_write_arrays, atomic_write_bytes, atomic_write_json
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import IMPORTED_METHOD, Run, set_display_name
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.data.convert import split_train_test
from ssl_core.data.decode import decode_image
from ssl_core.data.row_matching import duplicates, match_images
from ssl_core.data.user_embeddings import Embeddings, RowCheck, read_embeddings
from ssl_core.data.user_files import ImageSource, InvalidImport, read_images, shortlist
from ssl_core.data.user_metadata import Metadata, read_metadata
from ssl_core.steps.evaluate import evaluate_run
from ssl_core.steps.index import index_run
from ssl_core.workflows.pipeline import run_post_steps

METHOD = IMPORTED_METHOD  # the `method` name in an imported run's config.json
MATCHES = ("auto", "name", "order")
FLOAT16_MAX = 65504.0

Progress = Callable[[float, str], None]


@dataclass
class Imported:
    """The new run, how rows were matched, and the named warnings the import raised."""

    run: Run | None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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


def _stacked(pictures: list[np.ndarray]) -> np.ndarray:
    """np.stack without its view of every picture (~150 MB of array objects for a million)."""
    out = np.empty((len(pictures), *pictures[0].shape), dtype=np.uint8)
    for i, picture in enumerate(pictures):
        out[i] = picture
    return out


def _write_npy(path: Path, shape: tuple[int, ...], dtype: Any, chunks: Iterable[np.ndarray]) -> None:
    """An .npy file of `shape` and `dtype` written from `chunks` of its rows as they come (each
    converted on its own: no copy of the whole array), through a temporary file, fsync and a
    rename, as `store.atomic` writes every file of a run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)})
            written = 0
            for chunk in chunks:
                np.ascontiguousarray(chunk, dtype=dtype).tofile(f)
                written += len(chunk)
            if written != shape[0]:
                raise RuntimeError(f"{path.name}: {written:,} rows written for {shape[0]:,}")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save_npy(path: Path, array: np.ndarray) -> None:
    _write_npy(path, array.shape, array.dtype, [array])


def _write_ids(path: Path, ids: list[str]) -> None:
    """A JSON list on one line: json's C encoder (an indent switches to the pure-Python one: for
    800,000 ids, 80 MiB and 1.5 s instead of 34 MiB and 0.7 s, under tracemalloc)."""
    atomic_write_bytes(path, (json.dumps(ids) + "\n").encode())


def _storage_dtype(peak: float) -> type:
    """float16 like trained runs, unless the values (largest |x|: `peak`) would overflow it or
    sink into its subnormals (|x| < 6e-5 loses precision): then float32."""
    return np.float16 if 1e-2 <= peak < FLOAT16_MAX else np.float32


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:24] or "data"


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "numpy": np.__version__}
    for package in ("umap-learn", "faiss-cpu"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def import_embeddings(store: RunStore, *, images: str | Path | None, embeddings: str | Path,
                      labels: str | Path | None = None, name: str | None = None, match: str = "auto",
                      resolution: int = 64, skip_invalid: bool = False, vector_column: str | None = None,
                      image_column: str | None = None, label_column: str | None = None, seed: int = 0,
                      progress: Progress | None = None) -> Imported:
    """Make a run from embeddings computed elsewhere and their images, or from the embeddings
    alone when `images` is None (see the module doc).

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
    embeddings_path = Path(embeddings).expanduser()
    images_path = Path(images).expanduser() if images is not None else None
    if images_path is None and match != "auto":
        raise InvalidImport(f"--match {match} pairs embeddings with images; without --images there is nothing "
                            "to match")

    report(0.0, f"reading {embeddings_path.name}")
    vectors, ids, extra = read_embeddings(embeddings_path, vector_column)
    if ids is not None and (dup := duplicates(ids)):
        raise InvalidImport(f"{embeddings_path}: duplicate ids {shortlist(dup)}; each image needs one row")
    if images_path is None:
        source = None
        row_ids = list(ids) if ids is not None else [str(i) for i in range(len(vectors))]
        done.notes.append(f"no images: {len(vectors):,} rows of {embeddings_path.name}, named by "
                          + ("its id column" if ids is not None else "row number (0, 1, ...)"))
    else:
        source = read_images(images_path, image_column)
        if source.skipped:
            done.warnings.append(f"{len(source.skipped):,} entries of {images_path} are left out: "
                                 + shortlist(source.skipped, 5))
        positions, row_ids = match_images(len(vectors), ids, source, match, embeddings_path.name, done.notes,
                                          done.warnings)
    if len(vectors) < 5:
        raise InvalidImport(f"{embeddings_path.name} has {len(vectors)} rows; a map needs at least 5")
    meta = read_metadata(labels, extra, embeddings_path, row_ids, label_column, done.notes, done.warnings)
    keep = _finite_rows(vectors.check(), row_ids, embeddings_path.name, skip_invalid, done)

    if source is None:
        kept, pictures = np.flatnonzero(keep), None
    else:
        kept, pictures = _pictures(source, positions, keep, row_ids, resolution, skip_invalid, done, report)
    if len(kept) < 5:
        raise InvalidImport(f"only {len(kept)} usable rows are left; a map needs at least 5")
    is_train = _split(meta, kept, seed, done)
    order = np.concatenate([np.flatnonzero(is_train), np.flatnonzero(~is_train)])
    rows = kept[order]  # train rows, then test rows, as in every run

    named = images_path if images_path is not None else embeddings_path
    config = _imported_config(name or named.stem or named.name, resolution, seed, {
        "name": METHOD, "embeddings": str(embeddings_path.resolve()),
        "images": str(images_path.resolve()) if images_path is not None else None,
        "labels": str(Path(labels).expanduser().resolve()) if labels is not None else None,
        "match": done.notes[0], "embedding_dim": vectors.dim})
    report(0.5, "writing the run")
    with store.create_atomically(config, extra={"versions": _versions()}) as run:
        run.set_status("running", stage="import")
        write_rows(run, vectors.take(rows), [row_ids[i] for i in rows], meta.labels[rows], meta.class_names,
                   int(is_train.sum()), pictures[order] if pictures is not None else None,
                   {k: v[rows] for k, v in meta.factors.items()},
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


def _pictures(source: ImageSource, positions: np.ndarray, keep: np.ndarray, row_ids: list[str], resolution: int,
              skip_invalid: bool, done: Imported, report: Progress) -> tuple[np.ndarray, np.ndarray]:
    """(the rows kept: finite vectors and readable images; their pictures, uint8 (n, R, R, 3)).
    Unreadable images are an error naming them, or with `skip_invalid` a warning."""
    report(0.1, "reading images")
    decoded = _decode(source, positions[keep], resolution, report)
    unreadable = [(row_ids[i], result) for i, result in zip(np.flatnonzero(keep), decoded) if isinstance(result, str)]
    if unreadable:
        message = (f"{len(unreadable):,} images cannot be read: "
                   + shortlist([f"{name} ({why})" for name, why in unreadable], 5))
        if not skip_invalid:
            raise InvalidImport(message + "; fix or remove them, or pass --skip-invalid to leave those rows out")
        done.warnings.append(message + ": left out")
    readable = np.array([not isinstance(result, str) for result in decoded], dtype=bool)
    kept = np.flatnonzero(keep)[readable]
    if len(kept) < 5:
        raise InvalidImport(f"only {len(kept)} usable rows are left; a map needs at least 5 images")
    return kept, _stacked([result for result in decoded if not isinstance(result, str)])


def _finite_rows(check: RowCheck, row_ids: list[str], file_name: str, skip_invalid: bool,
                 done: Imported) -> np.ndarray:
    """Rows whose vectors are finite; NaN or infinite ones are an error naming the file, their
    count and the first of them, or with `skip_invalid` a warning naming them."""
    finite = check.finite
    if not finite.all():
        bad = [row_ids[i] for i in np.flatnonzero(~finite)]
        message = f"{file_name}: {len(bad):,} embeddings hold NaN or infinite values: {shortlist(bad)}"
        if not skip_invalid:
            raise InvalidImport(message + "; fix them, or pass --skip-invalid to leave those rows out")
        done.warnings.append(message + ": left out")
    zero = np.flatnonzero(finite & check.zero)
    if len(zero):
        done.warnings.append(f"{len(zero):,} embeddings are all zeros (no direction for cosine similarity): "
                             f"{shortlist([row_ids[i] for i in zero])}")
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


def write_rows(run: Run, vectors: np.ndarray | Embeddings, ids: list[str], labels: np.ndarray,
               class_names: list[str], n_train: int, images: np.ndarray | None, factors: dict[str, np.ndarray],
               factor_levels: dict[str, tuple[str, ...]]) -> None:
    """Store rows (train first, then test) as a trained run's embed step would, plus the images
    (None: a run without images, and no images.npy) and metadata that no dataset loader can
    rebuild for this run. `vectors` are the rows in that
    order: an array, or `Embeddings` (rows ascending within each split), converted to the storage
    type and written a chunk at a time."""
    if isinstance(vectors, np.ndarray):
        vectors = Embeddings.from_array(vectors)
    splits = {"train": slice(0, n_train), "test": slice(n_train, None)}
    dtype = _storage_dtype(max(vectors[part].peak() for part in splits.values()))
    for split, part in splits.items():
        rows = vectors[part]
        _write_npy(run.embeddings_dir / files.vectors(split), rows.shape, dtype, rows.chunks())
        _save_npy(run.embeddings_dir / files.labels(split), labels[part].astype(np.int64))
        _write_ids(run.embeddings_dir / files.ids(split), ids[part])
    atomic_write_json(run.embeddings_dir / files.CLASS_NAMES, list(class_names))
    folder = run.dataset_dir
    if images is not None:
        _save_npy(folder / files.DATASET_IMAGES, np.asarray(images, dtype=np.uint8))
    atomic_write_arrays(folder / files.DATASET_FACTORS, **factors)
    atomic_write_json(folder / files.DATASET_LEVELS, {k: list(v) for k, v in factor_levels.items()})


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
