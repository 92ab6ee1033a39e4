"""A folder of the user's own images as a dataset (`DataConfig.dataset` = the folder's path).

Two layouts:
  class folders  photos/cat/1.jpg, photos/dog/2.png ...: each subfolder is a class (class names
                 are the sorted folder names; files in deeper subfolders count for their class).
  flat folder    photos/1.jpg, photos/2.png ... with an optional labels.csv or metadata.csv
                 beside them: a `filename` column, an optional `label` column (class names),
                 and any other columns kept as factors (numbers as floats, anything else as
                 categorical codes). With a CSV, the images are the ones it lists.

Images are decoded with Pillow only, turned upright from their EXIF orientation, made RGB,
centre-cropped to a square and resized to `cfg.resolution`. Files that are not images, are
corrupt or truncated, or are larger than MAX_PIXELS are skipped with a warning naming each, and
so are entries that are no regular file (a FIFO, a socket, a device: never opened, since opening
a FIFO waits for a writer forever); hidden files and folders (".DS_Store",
".ipynb_checkpoints") are ignored silently.

Small folders are decoded into memory once. A folder too large for that (`DataConfig.load`) is
streamed: every file is still decoded once up front to find the unusable ones (the verdicts are
cached by size and modification time), then the ImageSet holds `FileImages` and each batch is
decoded again when it is needed. Both ways keep the same files and split them the same way.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ssl_core.core.config import DataConfig
from ssl_core.data.convert import split_and_build
from ssl_core.data.decode import decode_image
from ssl_core.data.files import FileImages
from ssl_core.data.imageset import ImageSet
from ssl_core.data.online import data_root
from ssl_core.store.atomic import atomic_write_bytes

METADATA_FILES = ("labels.csv", "metadata.csv")


def load_folder(cfg: DataConfig) -> ImageSet:
    """The images under the folder `cfg.dataset`, split 80/20 (stratified when labelled)."""
    folder = Path(cfg.dataset).expanduser()
    if not folder.is_dir():
        raise ValueError(f"dataset folder {folder} does not exist or is not a folder")
    entries = _visible(folder.iterdir())
    if any(p.is_dir() for p in entries):
        files, labels, class_names = _class_folders(folder, entries)
        factors, levels = {}, {}
    else:
        files, labels, class_names, factors, levels = _flat_folder(folder, entries)

    streamed = should_stream(cfg, len(files))
    if streamed:
        verdicts = check_files(files, folder, cfg)
        ok = np.array([verdict is None for verdict in verdicts], dtype=bool)
    else:
        decoded = _decode_all(files, cfg.resolution)
        ok = np.array([not isinstance(result, str) for result in decoded], dtype=bool)
        verdicts = [result if isinstance(result, str) else None for result in decoded]
    for path, verdict in zip(files, verdicts):
        if verdict is not None:
            warnings.warn(f"skipping {path}: {verdict}", stacklevel=2)
    if not ok.any():
        why = f"all {len(files)} files were skipped (see the warnings)" if files else "it is empty"
        raise ValueError(f"no readable images in {folder}: {why}")
    keep = np.flatnonzero(ok)
    names = [files[i].relative_to(folder).as_posix() for i in keep]
    if streamed:
        images = FileImages(folder, names, cfg.resolution, cfg.workers)
    else:
        images = np.stack([image for image in decoded if not isinstance(image, str)])
    return split_and_build(
        folder.name or str(folder),
        images,
        labels[keep],
        class_names,
        cfg,
        names=names,
        factors={k: v[keep] for k, v in factors.items()},
        factor_levels=levels,
    )


# `load="auto"` streams a folder whose decoded images would take more than this share of RAM.
STREAM_RAM_FRACTION = 0.25


def total_ram() -> int:
    """This process's memory: the machine's RAM, or less where a container or job caps it."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): assume a small machine
        ram = 8 * 2**30
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():  # "max" (v2) means none; v1 writes a huge number instead
            ram = min(ram, int(limit))
    return ram


def should_stream(cfg: DataConfig, n_files: int) -> bool:
    """Whether a folder of n_files stays in its files (see DataConfig.load)."""
    if cfg.load != "auto":
        return cfg.load == "stream"
    return n_files * cfg.resolution**2 * 3 > STREAM_RAM_FRACTION * total_ram()


def check_files(files: list[Path], folder: Path, cfg: DataConfig) -> list[str | None]:
    """Why each file cannot be used, or None: the in-memory path's verdicts without keeping pixels.

    Each file is decoded once; that it decoded is remembered with its size, times and inode in
    `<data dir>/folder-checks/`, so later loads of the same folder (the app, `embed`, `analyze`)
    only decode files that changed or were unusable (an unreadable file may be a passing I/O or
    permission error, so that verdict is never kept). A cache that cannot be read or written is
    ignored.
    """

    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
    cache_path = data_root(cfg) / "folder-checks" / f"{digest}.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    keys = [path.relative_to(folder).as_posix() for path in files]
    stamps: list[list[int]] = []
    verdicts: list[str | None] = [None] * len(files)
    todo = []
    for i, (key, path) in enumerate(zip(keys, files)):
        try:
            stat = path.stat()
        except OSError as err:  # gone or unreadable since the folder was listed
            stamps.append([])
            verdicts[i] = f"cannot be read ({err.strerror or err})"
            continue
        stamps.append([stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino])
        if cache.get(key) != stamps[-1]:
            todo.append(i)
    if todo:
        def verdict(i: int) -> str | None:
            result = decode_image(files[i], cfg.resolution)
            return result if isinstance(result, str) else None

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for i, found in zip(todo, tqdm(pool.map(verdict, todo), total=len(todo), unit="file",
                                           desc=f"checking {folder.name}", disable=len(todo) < 1000)):
                verdicts[i] = found
        fresh = {key: stamp for key, stamp, found in zip(keys, stamps, verdicts) if found is None}
        try:
            atomic_write_bytes(cache_path, json.dumps(fresh).encode())
        except OSError as err:
            warnings.warn(f"could not remember which images in {folder} are readable ({err}); "
                          "the next load checks them again", stacklevel=2)
    return verdicts


def _visible(paths) -> list[Path]:
    return sorted(p for p in paths if not p.name.startswith("."))


def _walk_files(folder: Path) -> list[Path]:
    """Every visible file under folder, in sorted order, skipping hidden folders."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
    return found


def _some(names: list[str], most: int = 10) -> str:
    """The first `most` names, comma-separated, with "..." when there are more."""
    return ", ".join(names[:most]) + (" ..." if len(names) > most else "")


def _class_folders(folder: Path, entries: list[Path]) -> tuple[list[Path], np.ndarray, list[str]]:
    class_dirs = [p for p in entries if p.is_dir()]
    loose = [p.name for p in entries if not p.is_dir()]
    if loose:
        warnings.warn(
            f"skipping {len(loose)} file(s) at the top of {folder}, outside the class folders: "
            + _some(loose),
            stacklevel=3,
        )
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        class_files = _walk_files(class_dir)
        files += class_files
        labels += [label] * len(class_files)
    return files, np.array(labels, dtype=np.int64), [p.name for p in class_dirs]


def _flat_folder(folder: Path, entries: list[Path]):
    """Files, labels (-1 when unlabelled), class names, factors and factor levels."""
    csvs = [folder / name for name in METADATA_FILES if (folder / name).is_file()]
    if len(csvs) > 1:
        raise ValueError(f"{folder} holds both {' and '.join(METADATA_FILES)}; keep only one")
    if not csvs:
        return entries, np.full(len(entries), -1, dtype=np.int64), [], {}, {}

    rows = _read_metadata(csvs[0])
    listed = {}
    for row in rows:
        path = (folder / row["filename"]).resolve()
        if folder.resolve() not in path.parents:
            warnings.warn(
                f"skipping {row['filename']} in {csvs[0].name}: outside {folder}", stacklevel=3
            )
        elif path in listed:
            warnings.warn(
                f"{csvs[0].name} lists {row['filename']} twice; keeping the first row", stacklevel=3
            )
        else:
            listed[path] = row
    unlisted = [p.name for p in entries if p.resolve() not in listed and p not in csvs]
    if unlisted:
        warnings.warn(
            f"skipping {len(unlisted)} file(s) in {folder} that {csvs[0].name} does not list: "
            + _some(unlisted),
            stacklevel=3,
        )
    files = [folder / row["filename"] for row in listed.values()]
    columns = {key: [row[key] for row in listed.values()] for key in rows[0] if key != "filename"}

    class_names: list[str] = []
    labels = np.full(len(files), -1, dtype=np.int64)
    if "label" in columns:
        codes, class_names = _categorical(columns.pop("label"))
        labels = codes
    factors, levels = {}, {}
    for key, values in columns.items():
        numbers = _as_numbers(values)
        if numbers is not None:
            factors[key] = numbers
        else:
            factors[key], names = _categorical(values)
            levels[key] = tuple(names)
    return files, labels, class_names, factors, levels


def _read_metadata(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel writes a BOM
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "filename" not in columns:
            raise ValueError(f"{path} needs a 'filename' column; its columns are {columns}")
        rows = [
            {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            for row in reader
        ]
    if not rows:
        raise ValueError(f"{path} has a header but no rows")
    return rows


def _as_numbers(values: list[str]) -> np.ndarray | None:
    """Floats (NaN where empty) if every non-empty value is a number, else None."""
    try:
        return np.array([float(v) if v else math.nan for v in values], dtype=np.float64)
    except ValueError:
        return None


def _categorical(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """(codes (N,) int64 with -1 where empty, sorted level names); numeric names sort as numbers."""
    names = sorted(
        {v for v in values if v}, key=lambda v: (0, float(v), v) if _is_number(v) else (1, 0.0, v)
    )
    index = {name: code for code, name in enumerate(names)}
    return np.array([index.get(v, -1) for v in values], dtype=np.int64), names


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _decode_all(files: list[Path], resolution: int) -> list[np.ndarray | str]:
    """Decode in threads (Pillow releases the GIL while decoding): an image or why it failed."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda path: decode_image(path, resolution), files))
