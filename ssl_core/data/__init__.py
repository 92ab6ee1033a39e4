"""Datasets: a registry of loaders, each turning a `DataConfig` into one `ImageSet`.

`load_dataset(cfg)` is how the rest of the library gets a dataset. `cfg.dataset` is a
registered name, or a path to a folder of the user's own images.

Beside the datasets: the files a person brings to an import, read and checked (`user_embeddings`:
the vectors, a chunk of rows at a time; `user_files`: images, tables; `row_matching`: which image
each row is; `user_metadata`: labels, split and colourings). `ssl_core.workflows.importer` makes
the run from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ssl_core.core.config import DataConfig
from ssl_core.data.imageset import ImageSet
from ssl_core.core.registry import Registry

DATASETS: Registry[Callable[[DataConfig], ImageSet]] = Registry("dataset")


def load_dataset(cfg: DataConfig) -> ImageSet:
    """Build the dataset named (or pointed to) by `cfg.dataset`."""
    if cfg.dataset in DATASETS:
        return DATASETS.get(cfg.dataset)(cfg)
    path = Path(cfg.dataset).expanduser()
    if path.is_dir():
        return load_folder(cfg)
    raise KeyError(DATASETS.unknown_message(cfg.dataset) + "; or give the path of a folder of images")


def dataset_reference(name: str) -> str:
    """`name` as a run's config.json keeps it: a registered name as it is, a folder as its absolute
    path. A relative path (`--dataset PHOTOS`) means the folder under the directory training
    started in; the app and later commands start elsewhere and must still find the same folder."""
    if name in DATASETS or not name.strip():
        return name
    return str(Path(name).expanduser().absolute())


# Importing the loader modules registers them.
from ssl_core.data import shapes, digits, mnist, online  # noqa: E402,F401
from ssl_core.data.folder import load_folder

__all__ = ["DATASETS", "ImageSet", "dataset_reference", "load_dataset"]
