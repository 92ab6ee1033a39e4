"""The map as it learns: at each kNN check during training, the first `TrainConfig.map_snapshots`
held-out images (embedded by the check already) are laid out in 2-D and stored with the step and
epoch, so that the Train page shows the newest map while the run trains and Explore plays them
as an animation.

Alignment: each snapshot after the first is a UMAP started from the previous snapshot's layout
(umap-learn's `init`) for WARM_EPOCHS epochs instead of 500, then laid onto the previous one by
Procrustes (rotation, reflection, scale, shift: `alignment.align_map`). Starting from the previous
layout keeps the clusters where they were, which no rigid transform can do for two independent
UMAPs (their clusters come out in another arrangement each time); the Procrustes step undoes
the rescaling umap-learn applies to an `init` (into a 10 x 10 box) and keeps the first
snapshot's orientation. Aligned UMAP (umap-learn's AlignedUMAP) needs every snapshot at once and
refits them all each time: not something a run can add to one check at a time.
bench/map_snapshots.py measured the choice (bench/results/map_snapshots_cpu.md).

    map_snapshots/snapshots.json   class names, the alignment, and per snapshot: step, epoch, file,
                                   seconds taken (written last, after the file it lists)
    map_snapshots/ids.json         the images mapped, in row order (the first of the test split)
    map_snapshots/labels.npy       their labels (-1 where unknown)
    map_snapshots/step_STEP.npy    (N, 2) float32 coordinates at that step
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssl_core.steps.alignment import align_map
from ssl_core.steps.projection import project_umap
from ssl_core.store import files
from ssl_core.store.atomic import atomic_write_arrays, atomic_write_json
from ssl_core.store.reading import RunFileError, is_number, read_json
from ssl_core.store.runs import Run

# Epochs of a UMAP started from the previous snapshot's layout. 2,000 held-out `shapes` images of a
# default CPU run, epochs 1 to 3: 0.35 s each, points moved 0.34 then 0.15 of the map's RMS spread
# from the previous snapshot, where an independent UMAP (1.7 s) moved them 1.27 and 1.47 (0.39 and
# 0.25 after Procrustes) (bench/results/map_snapshots_cpu.md). Fewer epochs or a lower learning
# rate moved them no less on synthetic blobs: what is left is points trading places in a cluster.
WARM_EPOCHS = 100
MIN_POINTS = 4  # UMAP's own minimum
ALIGNMENT = (f"UMAP started from the previous snapshot's layout ({WARM_EPOCHS} epochs), "
             "then Procrustes onto it")


@dataclass
class MapSnapshots:
    """Every stored snapshot of a run: (T, N, 2) coordinates for the N images `ids`."""

    steps: list[int]
    epochs: list[float]
    coords: np.ndarray  # (T, N, 2) float32, aligned snapshot onto snapshot
    ids: list[str]
    labels: np.ndarray  # (N,) int64, -1 where unknown
    class_names: list[str]
    seconds: list[float]  # what each snapshot took (layout and storing)


def snapshot_layout(vectors: np.ndarray, previous: np.ndarray | None, *, seed: int, n_neighbors: int = 15,
                    min_dist: float = 0.1) -> np.ndarray:
    """(N, 2) float32 map of `vectors` (N, D): a full UMAP when there is no `previous` snapshot
    (or it has other rows), else one started from `previous` and aligned onto it (module
    docstring). The same vectors, previous layout and seed give the same map."""
    if previous is not None and np.shape(previous) != (len(vectors), 2):
        previous = None  # a snapshot of other images: start afresh
    if previous is None:
        return project_umap(vectors, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed)
    coords = project_umap(vectors, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed, init=previous,
                          n_epochs=WARM_EPOCHS)
    return align_map(coords, previous)


def _index_path(run: Run):
    return run.map_snapshots_dir / files.SNAPSHOTS_INDEX


def _read_index(run: Run) -> dict[str, Any] | None:
    path = _index_path(run)
    if not path.exists():
        return None
    index = read_json(path, f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOTS_INDEX}")
    if not isinstance(index, dict) or not isinstance(index.get("snapshots"), list):
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOTS_INDEX} must hold an "
                           "object with a list 'snapshots'")
    return index


def _step(entry: Any) -> float:
    """An entry's step, or -1 for one a hand left without a usable step (dropped at the next write)."""
    return entry["step"] if isinstance(entry, dict) and is_number(entry.get("step")) else -1


def start_snapshots(run: Run, ids: list[str], labels: np.ndarray, class_names: list[str]) -> None:
    """Record which images the snapshots map (kept when a resumed run maps the same ones)."""
    folder = run.map_snapshots_dir
    try:
        index = _read_index(run)
        same = index is not None and (folder / files.SNAPSHOT_IDS).exists() and \
            read_json(folder / files.SNAPSHOT_IDS, f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOT_IDS}") \
            == list(ids)
    except RunFileError:  # torn or hand-edited: the snapshots start afresh rather than stop the run
        same = False
    if same:
        return
    atomic_write_arrays(folder / files.SNAPSHOT_LABELS, np.asarray(labels, dtype=np.int64))
    atomic_write_json(folder / files.SNAPSHOT_IDS, list(ids))
    atomic_write_json(_index_path(run), {"alignment": ALIGNMENT, "class_names": list(class_names),
                                         "snapshots": []})


def store_snapshot(run: Run, *, step: int, epoch: float, coords: np.ndarray, seconds: float) -> None:
    """Write the map at `step`, then list it in snapshots.json (replacing any at or after `step`:
    a resumed run takes those steps again). `start_snapshots` comes first."""
    index = _read_index(run)
    if index is None:
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/ was not started (start_snapshots)")
    name = files.snapshot(step)
    atomic_write_arrays(run.map_snapshots_dir / name, np.asarray(coords, dtype=np.float32))
    kept = [s for s in index["snapshots"] if _step(s) < step]
    entry = {"step": int(step), "epoch": round(float(epoch), 4), "file": name, "seconds": round(seconds, 3)}
    atomic_write_json(_index_path(run), {**index, "snapshots": [*kept, entry]})


def drop_snapshots_after(run: Run, step: int) -> None:
    """Forget snapshots taken after `step` (a resume continues from a checkpoint at `step`)."""
    try:
        index = _read_index(run)
    except RunFileError:  # unusable: `start_snapshots` writes a fresh index at the first check
        return
    if index is None:
        return
    kept = [s for s in index["snapshots"] if _step(s) <= step]
    if len(kept) != len(index["snapshots"]):
        atomic_write_json(_index_path(run), {**index, "snapshots": kept})


def _load_coords(run: Run, entry: Any, n: int) -> np.ndarray:
    name = entry.get("file") if isinstance(entry, dict) else None
    where = f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{name}"
    if not isinstance(name, str) or "/" in name or not name.endswith(".npy"):
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOTS_INDEX} lists a snapshot "
                           f"without a valid file name ({entry!r})")
    try:
        coords = np.load(run.map_snapshots_dir / name, allow_pickle=False)
    except FileNotFoundError:
        raise RunFileError(f"{where} is missing") from None
    except (OSError, ValueError) as e:
        raise RunFileError(f"{where} is not a readable .npy file ({e})") from None
    if coords.shape != (n, 2) or not np.issubdtype(coords.dtype, np.floating):
        raise RunFileError(f"{where} holds a {coords.dtype} array of shape {coords.shape}; expected ({n}, 2) floats")
    return coords.astype(np.float32)


def read_snapshots(run: Run, *, newest_only: bool = False) -> MapSnapshots | None:
    """The run's snapshots (only the newest with `newest_only`), or None when it has none (a run
    trained before snapshots existed, or with `map_snapshots` 0, or before its first check).
    RunFileError names the file when one cannot be used."""
    index = _read_index(run)
    if index is None or not index["snapshots"]:
        return None
    folder = run.map_snapshots_dir
    ids = read_json(folder / files.SNAPSHOT_IDS, f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOT_IDS}")
    try:
        labels = np.load(folder / files.SNAPSHOT_LABELS, allow_pickle=False)
    except FileNotFoundError:
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOT_LABELS} is missing") from None
    except (OSError, ValueError) as e:
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOT_LABELS} is not a readable "
                           f".npy file ({e})") from None
    if not isinstance(ids, list) or labels.shape != (len(ids),):
        raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOT_IDS} and "
                           f"{files.SNAPSHOT_LABELS} disagree ({len(ids) if isinstance(ids, list) else ids!r} ids, "
                           f"labels of shape {labels.shape})")
    entries = index["snapshots"][-1:] if newest_only else index["snapshots"]
    for entry in entries:
        if not (isinstance(entry, dict) and is_number(entry.get("step")) and is_number(entry.get("epoch"))):
            raise RunFileError(f"run {run.id}: {files.MAP_SNAPSHOTS_DIR}/{files.SNAPSHOTS_INDEX} lists a snapshot "
                               f"without a numeric step and epoch ({entry!r})")
    coords = np.stack([_load_coords(run, entry, len(ids)) for entry in entries])
    return MapSnapshots(steps=[int(e["step"]) for e in entries], epochs=[float(e["epoch"]) for e in entries],
                        coords=coords, ids=[str(i) for i in ids], labels=labels.astype(np.int64),
                        class_names=[str(c) for c in index.get("class_names", [])],
                        seconds=[float(e["seconds"]) if is_number(e.get("seconds")) else 0.0 for e in entries])


def take_snapshot(run: Run, vectors: np.ndarray, *, step: int, epoch: float, seed: int, n_neighbors: int = 15,
                  min_dist: float = 0.1) -> float:
    """Map `vectors` aligned with the run's newest snapshot and store it at `step`; the seconds
    it took."""
    started = time.perf_counter()
    newest = read_snapshots(run, newest_only=True)
    previous = newest.coords[0] if newest is not None and newest.steps[0] < step else None
    coords = snapshot_layout(vectors, previous, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
    seconds = time.perf_counter() - started
    store_snapshot(run, step=step, epoch=epoch, coords=coords, seconds=seconds)
    return seconds
