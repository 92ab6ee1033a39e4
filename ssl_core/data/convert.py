"""Turning a loader's arrays into an `ImageSet`: seeded stratified splits, resizing, RGB.

Shared by the loaders of existing image sets (digits, mnist5k, the online sets, folders), so
that all of them split, subsample and resize the same way.
"""

from __future__ import annotations

import numpy as np
import torch

from ssl_core.core.config import DataConfig
from ssl_core.data.files import FileImages
from ssl_core.data.imageset import ImageSet

TRAIN_FRACTION = 0.8  # for sets without an official split
RESIZE_CHUNK = 2048  # images resized at once: bounds the float copy's memory


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(N) whose every prefix holds each class in proportion.

    Each item's key is (its random rank within its class + jitter) / class size; sorting by
    key interleaves the classes evenly, so cutting the order anywhere is a stratified draw.
    Unknown labels (-1) simply form one more group.
    """
    keys = np.empty(len(labels))
    for label in np.unique(labels):
        at = np.flatnonzero(labels == label)
        keys[at] = (rng.permutation(len(at)) + rng.random(len(at))) / len(at)
    return np.argsort(keys, kind="stable")


def split_train_test(
    labels: np.ndarray, rng: np.random.Generator, train_fraction: float = TRAIN_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a stratified train/test split, each sorted: (train (T,), test (N - T,))."""
    order = stratified_order(labels, rng)
    n_train = round(train_fraction * len(labels))
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def choose(
    labels: np.ndarray, size: int | None, rng: np.random.Generator, *, dataset: str, split: str
) -> np.ndarray:
    """Sorted positions of a stratified subsample of `size` items; all of them when size is None."""
    if size is None:
        return np.arange(len(labels))
    if not 0 <= size <= len(labels):
        raise ValueError(
            f"{split}_size={size} is out of range: dataset '{dataset}' has {len(labels)} "
            f"{split} images; choose a size from 0 to {len(labels)}, or leave it unset for all"
        )
    return np.sort(stratified_order(labels, rng)[:size])


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Square uint8 images (N, H, W, C) -> (N, resolution, resolution, C), bilinear.

    Antialiased, so that downsizing (STL-10's 96 px to 32) averages instead of skipping pixels.
    """
    if images.shape[1] == images.shape[2] == resolution:
        return images
    chunks = []
    for chunk in images.split(RESIZE_CHUNK):
        x = chunk.permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True
        )
        chunks.append(x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return (
        torch.cat(chunks)
        if chunks
        else images.new_empty((0, resolution, resolution, images.shape[3]))
    )


def to_imageset(
    name: str,
    images: np.ndarray | torch.Tensor | FileImages,
    labels: np.ndarray,
    n_train: int,
    ids: list[str] | tuple[str, ...],
    class_names: tuple[str, ...] | list[str],
    resolution: int,
    factors: dict[str, np.ndarray] | None = None,
    factor_levels: dict[str, tuple[str, ...]] | None = None,
    mirror_safe: bool = True,
) -> ImageSet:
    """Build an ImageSet from square uint8 images, train rows first.

    images: (N, H, W) grey, or (N, H, W, 1) grey, or (N, H, W, 3) RGB; grey is replicated to
            3 channels after resizing (resizing one channel is 3x cheaper).
    labels: (N,) class indices, -1 where unknown; n_train: how many leading rows are train.
    mirror_safe: see `ImageSet.mirror_safe` (False for digits).
    """
    if isinstance(images, FileImages):  # decoded later, already RGB at its resolution
        if images.resolution != resolution:
            raise ValueError(f"files decode to {images.resolution}px, not the asked {resolution}px")
    else:
        images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images[..., None]
        images = resize(images, resolution)
        if images.shape[3] == 1:
            images = images.expand(-1, -1, -1, 3).contiguous()
    n = images.shape[0]
    return ImageSet(
        name=name,
        images=images,
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        is_train=torch.arange(n) < n_train,
        ids=tuple(ids),
        class_names=tuple(str(c) for c in class_names),
        factors=dict(factors or {}),
        factor_levels=dict(factor_levels or {}),
        mirror_safe=mirror_safe,
    )


def split_and_build(
    name: str,
    images: np.ndarray | FileImages,
    labels: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    cfg: DataConfig,
    names: list[str] | None = None,
    factors: dict[str, np.ndarray] | None = None,
    factor_levels: dict[str, tuple[str, ...]] | None = None,
    mirror_safe: bool = True,
) -> ImageSet:
    """Split a set that has no official split, subsample each part, and build the ImageSet.

    The split is stratified 80/20 from cfg.seed; cfg.train_size / cfg.test_size then subsample
    each part from its own random stream, so the test size never changes the train images.
    names: each source row's id (a folder's relative paths); by default "train/i" / "test/i"
    with i the row's position in the source, so "test/1203" is the source's image 1203.
    mirror_safe: see `ImageSet.mirror_safe` (False for digits).
    """
    split_rng, train_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(3)
    )
    train, test = split_train_test(labels, split_rng)
    train = train[choose(labels[train], cfg.train_size, train_rng, dataset=name, split="train")]
    test = test[choose(labels[test], cfg.test_size, test_rng, dataset=name, split="test")]
    rows = np.concatenate([train, test])
    if names is None:
        ids = [f"train/{i}" for i in train] + [f"test/{i}" for i in test]
    else:
        ids = [names[i] for i in rows]
    return to_imageset(
        name,
        images.subset(rows) if isinstance(images, FileImages) else images[rows],
        labels[rows],
        len(train),
        ids,
        class_names,
        cfg.resolution,
        factors={k: v[rows] for k, v in (factors or {}).items()},
        factor_levels=factor_levels,
        mirror_safe=mirror_safe,
    )
