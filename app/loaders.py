"""Cached access to what the pages read from run folders.

Every loader takes a `Run` and passes the cached function only strings: the runs folder, the
run id and a fingerprint of the files the result is made from (their modification times and
sizes), all part of the cache key (Streamlit would skip hashing an argument named `_...`).
Re-running `ssl-explorer embed|project|index RUN_ID` changes the fingerprint, so the next
rerun loads the new files instead of serving stale ones. Nothing here computes an
embedding or a projection: a missing file is reported, never rebuilt.

Arrays go through `st.cache_data` (a copy per reader, bounded by `max_entries`); the FAISS
index and the trained model go through `st.cache_resource` (one shared object, not picklable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from ssl_core.explore import ExploreData, Search, load_explore_data, load_search, run_images
from ssl_core.project import PCA_FILE, UMAP_FILE
from ssl_core.runs import Run

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
    return load_explore_data(Run(Path(root) / run_id))


@st.cache_data(max_entries=2, show_spinner="Loading the run's images…")
def _images(root: str, run_id: str, stamp: Fingerprint) -> np.ndarray:
    return run_images(Run(Path(root) / run_id))


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
    """uint8 (N, H, W, 3), rows in map order. Generated sets are regenerated from config.json,
    so the config's fingerprint is enough; imported runs store theirs (dataset/images.npy)."""
    return _images(str(run.path.parent), run.id, fingerprint(run, run.config_path, run.path / "dataset" / "images.npy"))


# -- objects: st.cache_resource ---------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading the search index…")
def _search(root: str, run_id: str, stamp: Fingerprint) -> Search:
    return load_search(Run(Path(root) / run_id))


@st.cache_resource(max_entries=2, show_spinner="Loading the run's encoder…")
def _method(root: str, run_id: str, stamp: Fingerprint):
    from ssl_core.encoders import load_run_encoder

    # One uploaded image at a time: the CPU is enough and leaves the GPU to training jobs.
    return load_run_encoder(Run(Path(root) / run_id), "cpu")


def search(run: Run) -> Search:
    stamp = fingerprint(run, run.index_path, *_embedding_files(run))
    return _search(str(run.path.parent), run.id, stamp)


def method(run: Run):
    return _method(str(run.path.parent), run.id, fingerprint(run, run.checkpoint_path, run.config_path))
