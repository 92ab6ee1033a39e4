"""Cached access to what the pages read from run folders.

Every loader takes a `Run` and passes the cached function only strings: the runs folder, the
run id and a fingerprint of the files the result is made from (their modification times and
sizes), all part of the cache key (Streamlit would skip hashing an argument named `_...`).
Re-running `ssl-explorer embed|project|index RUN_ID` changes the fingerprint, so the next
rerun loads the new files instead of serving stale ones. Nothing here computes an
embedding or a projection: a missing file is reported, never rebuilt.

Arrays go through `st.cache_data` (a copy per reader, bounded by `max_entries`); the FAISS
index, the trained model and the run's dataset and images go through `st.cache_resource` (one
shared object: not picklable, or too large to copy on every rerun; pages only read them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st

from ssl_core.analyses.standings import DatasetStandings, FACTORS, standings as stand
from ssl_core.data import ImageSet
from ssl_core.steps.browsing import ExploreData, load_explore_data, load_map_labels, run_dataset, run_images
from ssl_core.steps.index import Search, load_search
from ssl_core.steps.map_snapshots import MapSnapshots, read_snapshots
from ssl_core.steps.readiness import viewable
from ssl_core.store import files
from ssl_core.store.reading import RunFileError, read_json
from ssl_core.steps.projection import PCA_FILE, UMAP_FILE
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.map_thumbnail import map_thumbnail

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(run: Run, *paths: Path) -> Fingerprint:
    """(name, mtime_ns, size) of each existing file: cheap, and changes when a file is rewritten
    (every writer in ssl_core replaces files by rename, which gives a new mtime)."""
    stamps = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        stamps.append((str(path.relative_to(run.path)), stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def _embedding_files(run: Run) -> list[Path]:
    return [run.embeddings_dir / name for name in ("train.npy", "test.npy", "train_ids.json", "test_ids.json")]


# -- arrays: st.cache_data --------------------------------------------------------------------
# A few runs at a time: a 50k-image run holds ~150 MB of 32 px images.
@st.cache_data(max_entries=4, show_spinner="Loading the map…")
def _explore_data(root: str, run_id: str, stamp: Fingerprint) -> ExploreData:
    run = Run(Path(root) / run_id)
    # A run imported without images has no dataset to load: its map data is in its folder.
    return load_explore_data(run, dataset(run) if viewable(run) is None else None)


# A run's dataset is read (or regenerated) once for both its map data and its images.
@st.cache_resource(max_entries=2, show_spinner="Loading the run's images…")
def _dataset(root: str, run_id: str, stamp: Fingerprint) -> ImageSet:
    return run_dataset(Run(Path(root) / run_id))


def _dataset_stamp(run: Run) -> Fingerprint:
    # Generated sets are regenerated from config.json, so the config's fingerprint is enough;
    # imported runs store theirs (dataset/images.npy).
    return fingerprint(run, run.config_path, run.dataset_dir / files.DATASET_IMAGES)


def dataset(run: Run) -> ImageSet:
    return _dataset(str(run.path.parent), run.id, _dataset_stamp(run))


@st.cache_resource(max_entries=2)
def _images(root: str, run_id: str, stamp: Fingerprint) -> np.ndarray:
    run = Run(Path(root) / run_id)
    images = run_images(run, dataset(run))
    if isinstance(images, np.ndarray):
        images.flags.writeable = False  # one array for every session: nobody may draw on it
    return images


def explore_key(run: Run) -> tuple[str, str, Fingerprint]:
    """Identifies one version of a run's map data: a cache key for what is derived from it."""
    # Both maps: the job writes the PCA map first and the UMAP map later; either file appearing
    # or changing makes a new key, so the page swaps to UMAP as soon as it is there.
    stamp = fingerprint(run, run.config_path, run.projection_dir / PCA_FILE, run.projection_dir / UMAP_FILE,
                        *_embedding_files(run))
    return str(run.path.parent), run.id, stamp


def explore_data(run: Run) -> ExploreData:
    return _explore_data(*explore_key(run))


def images(run: Run) -> np.ndarray:
    """uint8 (N, H, W, 3), rows in map order (read-only: shared by every session)."""
    return _images(str(run.path.parent), run.id, _dataset_stamp(run))


# -- objects: st.cache_resource ---------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading the search index…")
def _search(root: str, run_id: str, stamp: Fingerprint) -> Search:
    return load_search(Run(Path(root) / run_id))


@st.cache_resource(max_entries=2, show_spinner="Loading the run's encoder…")
def _method(root: str, run_id: str, stamp: Fingerprint):
    from ssl_core.models.encoders import load_run_encoder

    # One uploaded image at a time: the CPU is enough and leaves the GPU to training jobs.
    return load_run_encoder(Run(Path(root) / run_id), "cpu")


def search(run: Run) -> Search:
    stamp = fingerprint(run, run.index_path, *_embedding_files(run))
    return _search(str(run.path.parent), run.id, stamp)


def method(run: Run):
    return _method(str(run.path.parent), run.id, fingerprint(run, run.checkpoint_path, run.config_path))


# -- several runs side by side: the Compare page ----------------------------------------------
# Keyed by the runs' ids and the fingerprints of the files each result is made from, so a run
# embedded or mapped again is compared afresh; a rerun of the page is a dictionary lookup.
RunsKey = tuple[str, tuple[str, ...], tuple[Fingerprint, ...]]


def _runs_key(runs: list[Run], files: Callable[[Run], list[Path]]) -> RunsKey:
    return str(runs[0].path.parent), tuple(r.id for r in runs), tuple(fingerprint(r, *files(r)) for r in runs)


def _runs(root: str, run_ids: tuple[str, ...]) -> list[Run]:
    return [Run(Path(root) / run_id) for run_id in run_ids]


def _map_files(run: Run) -> list[Path]:
    return [run.projection_dir / PCA_FILE, run.projection_dir / UMAP_FILE, *_embedding_files(run)]


@st.cache_data(max_entries=8, show_spinner="Comparing the runs' embeddings…")
def _similarity(root: str, run_ids: tuple[str, ...], stamps: tuple[Fingerprint, ...]) -> dict:
    from ssl_core.analyses.compare import compare_many

    return compare_many(_runs(root, run_ids))


@st.cache_data(max_entries=8, show_spinner="Aligning the maps…")
def _aligned_maps(root: str, run_ids: tuple[str, ...], stamps: tuple[Fingerprint, ...]) -> list:
    from ssl_core.analyses.compare import aligned_maps

    return aligned_maps(_runs(root, run_ids))


@st.cache_data(max_entries=8, show_spinner=False)
def _labels(root: str, run_id: str, stamp: Fingerprint) -> tuple[np.ndarray, list[str], list[str]]:
    from ssl_core.steps.embed import load_all_embeddings

    run = Run(Path(root) / run_id)
    _, labels, ids, _ = load_all_embeddings(run)
    return labels, list(ids), run.read_class_names()


@st.cache_data(max_entries=2, show_spinner=False)
def _comparison_html(root: str, run_ids: tuple[str, ...], stamps: tuple[Fingerprint, ...]) -> bytes:
    from ssl_core.analyses.export import comparison_html

    return comparison_html(_runs(root, run_ids)).encode()


def similarity(runs: list[Run]) -> dict:
    """compare_many: CKA and k-NN overlap matrices on the runs' shared test rows."""
    return _similarity(*_runs_key(runs, _embedding_files))


def aligned_maps(runs: list[Run]) -> list[tuple[np.ndarray, str]]:
    """Each run's map, every one after the first aligned onto the first (Procrustes)."""
    return _aligned_maps(*_runs_key(runs, _map_files))


def labels(run: Run) -> tuple[np.ndarray, list[str], list[str]]:
    """(labels, ids, class names) of the run's rows, train then test."""
    return _labels(str(run.path.parent), run.id,
                   fingerprint(run, *_embedding_files(run), run.embeddings_dir / files.CLASS_NAMES))


def comparison_html(runs: list[Run]) -> bytes:
    """The standalone comparison page (ssl_core.analyses.export), made once per version of the runs."""
    return _comparison_html(*_runs_key(runs, _score_files))


def _score_files(run: Run) -> list[Path]:
    """What the scores table reads: eval.json, metrics.jsonl, the stored analyses, the name."""
    analyses = sorted(run.analysis_dir.glob("*.json")) if run.analysis_dir.is_dir() else []
    return [*_map_files(run), run.eval_path, run.metrics_path, run.config_path, run.path / files.NAME, *analyses]


@st.cache_data(max_entries=256, show_spinner=False)
def _ids_signature(root: str, run_id: str, stamp: Fingerprint) -> str:
    from ssl_core.analyses.compare import ids_signature as signature

    return signature(Run(Path(root) / run_id))


def ids_signature(run: Run) -> str:
    """compare.ids_signature: equal for runs over the same images, in the same order."""
    stamp = fingerprint(run, *(run.embeddings_dir / files.ids(split) for split in ("train", "test")))
    return _ids_signature(str(run.path.parent), run.id, stamp)


# -- clusters and outliers (analysis/), computed on request by `ssl-explorer analyze` ----------
def _analysis_files(run: Run, name: str) -> list[Path]:
    return [run.analysis_dir / f"{name}.json", run.analysis_dir / f"{name}.npz"]


def clusters_key(run: Run) -> Fingerprint:
    """Changes whenever the run's clusters are computed again."""
    return fingerprint(run, *_analysis_files(run, "clusters"))


@st.cache_data(max_entries=4, show_spinner=False)
def _clusters(root: str, run_id: str, stamp: Fingerprint) -> tuple[dict, dict[str, np.ndarray]]:
    from ssl_core.analyses.clusters import load_clusters

    return load_clusters(Run(Path(root) / run_id))


@st.cache_data(max_entries=4, show_spinner=False)
def _outliers(root: str, run_id: str, stamp: Fingerprint) -> tuple[dict, dict[str, np.ndarray]]:
    from ssl_core.analyses.outliers import load_outliers

    return load_outliers(Run(Path(root) / run_id))


def clusters(run: Run) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(clusters.json, clusters.npz arrays) of the run; None while none are stored."""
    from ssl_core.analyses.clusters import has_clusters

    return _clusters(str(run.path.parent), run.id, clusters_key(run)) if has_clusters(run) else None


def outliers(run: Run) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(outliers.json, outliers.npz arrays) of the run; None while none are stored."""
    from ssl_core.analyses.outliers import has_outliers

    if not has_outliers(run):
        return None
    return _outliers(str(run.path.parent), run.id, fingerprint(run, *_analysis_files(run, "outliers")))


@st.cache_data(max_entries=2, show_spinner=False)
def _map_html(root: str, run_id: str, stamp: Fingerprint, animation: bool = False) -> bytes:
    from ssl_core.analyses.export import map_html as page

    return page(Run(Path(root) / run_id), animation=animation).encode()


def map_html(run: Run, animation: bool = False) -> bytes:
    """The run's map as a standalone HTML page (ssl_core.analyses.export), made once per version;
    with the map as it learns below it when `animation`."""
    folder = run.map_snapshots_dir
    snapshots = sorted(folder.iterdir()) if animation and folder.is_dir() else []
    return _map_html(str(run.path.parent), run.id, fingerprint(run, *_score_files(run), *snapshots), animation)


@st.cache_data(max_entries=4, show_spinner=False)
def _map_snapshots(root: str, run_id: str, stamp: Fingerprint) -> MapSnapshots | None:
    return read_snapshots(Run(Path(root) / run_id))


def map_snapshots(run: Run) -> MapSnapshots | None:
    """The map as it learns (ssl_core.steps.map_snapshots), None when the run has none;
    RunFileError names a file that cannot be read. Keyed by snapshots.json, which training
    rewrites after writing each new snapshot, and by every file beside it (a hand-edited one is
    read again)."""
    folder = run.map_snapshots_dir
    stamp = fingerprint(run, *sorted(folder.iterdir())) if folder.is_dir() else ()
    return _map_snapshots(str(run.path.parent), run.id, stamp)


# -- the Evaluate page: eval.json, class names and the stored evaluations -------------------------
@st.cache_data(max_entries=64, show_spinner=False)
def _json(root: str, run_id: str, relative: str, stamp: Fingerprint):
    try:
        return read_json(Path(root) / run_id / relative, relative)
    except RunFileError:  # missing or unusable: the page shows it as not there yet
        return None


def _run_json(run: Run, path: Path):
    return _json(str(run.path.parent), run.id, str(path.relative_to(run.path)), fingerprint(run, path))


def eval_scores(run: Run) -> dict | None:
    """eval.json, or None while the run has no scores."""
    return _run_json(run, run.eval_path)


def class_names(run: Run) -> list[str]:
    names = _run_json(run, run.embeddings_dir / files.CLASS_NAMES)
    return list(names) if isinstance(names, list) else []


def evaluation(run: Run, name: str) -> dict | None:
    """analysis/<name>.json (layers, factors, finetune), or None while it is not stored."""
    from ssl_core.analyses.stored import result_path

    result = _run_json(run, result_path(run, name))
    return result if isinstance(result, dict) else None


# -- the Overview, and the runs each page opens on: every run placed on its dataset ------------
def _standing_files(run: Run) -> list[Path]:
    """What `analyses.standings.place` reads of a run."""
    return [run.config_path, run.status_path, run.eval_path, run.path / files.NAME, run.index_path,
            run.projection_dir / PCA_FILE, run.projection_dir / UMAP_FILE, *_embedding_files(run),
            run.analysis_dir / f"{FACTORS}.json"]


@st.cache_data(max_entries=4, show_spinner=False)
def _standings(root: str, run_ids: tuple[str, ...], stamps: tuple[Fingerprint, ...]) -> list[DatasetStandings]:
    return stand(_runs(root, run_ids))


def standings(store: RunStore) -> list[DatasetStandings]:
    """Every readable run placed on its dataset (floors, self-supervised, supervised), read again
    only when one of the files it is made from changes."""
    runs = [store.get(summary.id) for summary in store.list() if not summary.broken]
    if not runs:
        return []
    return _standings(*_runs_key(runs, _standing_files))


@st.cache_data(max_entries=64, show_spinner=False)
def _thumbnail(root: str, run_id: str, stamp: Fingerprint) -> np.ndarray:
    coords, labels, _ = load_map_labels(Run(Path(root) / run_id))
    return map_thumbnail(coords, labels)


def thumbnail(run: Run) -> np.ndarray:
    """The run's map as a small picture coloured by label (widgets.map_thumbnail)."""
    labels = [run.embeddings_dir / files.labels(split) for split in files.SPLITS]
    return _thumbnail(str(run.path.parent), run.id, fingerprint(run, *_map_files(run), *labels))


# -- label issues and subgroup gaps (analysis/label_issues.*), computed on request -------------
@st.cache_data(max_entries=4, show_spinner=False)
def _label_issues(root: str, run_id: str, stamp: Fingerprint) -> tuple[dict, dict[str, np.ndarray]]:
    from ssl_core.analyses.label_issues import load_label_issues

    return load_label_issues(Run(Path(root) / run_id))


def label_issues(run: Run) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(label_issues.json, label_issues.npz arrays) of the run; None while none are stored."""
    from ssl_core.analyses.label_issues import has_label_issues

    if not has_label_issues(run):
        return None
    return _label_issues(str(run.path.parent), run.id, fingerprint(run, *_analysis_files(run, "label_issues")))
