"""Images that stay in their files until a batch needs them: folders too large to decode into memory.

A `FileImages` stands where an `ImageSet` otherwise holds its uint8 tensor. Indexing it decodes
just those files (in threads; Pillow releases the GIL while decoding) and returns the same uint8
(…, H, W, 3) tensor the in-memory folder would hold: both go through `decode.decode_image`, so a
streamed run and an in-memory run see identical pixels. `subset` keeps files, not pixels.

Long passes (training epochs, embedding every image) go through `batches`: a DataLoader whose
workers only decode and stack; augmentation happens afterwards, on the run's device, exactly as
for in-memory data.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from ssl_core.data.decode import decode_image


class UnreadableImage(RuntimeError):
    """A file that decoded when the folder was checked and does not now (changed or removed)."""


def default_workers() -> int:
    """Decoding processes beside training: all cores but the ones driving models (one per process
    on this machine under torchrun), shared among those processes; 1 to 8 each."""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, ((os.cpu_count() or 2) - local) // local))


class FileImages:
    """uint8 (N, resolution, resolution, 3) images read from `root / names[i]` when indexed."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, root: Path | str, names: Sequence[str], resolution: int, workers: int | None = None):
        self.root = Path(root)
        self.names = tuple(names)
        self.resolution = int(resolution)
        self.workers = workers  # decoding processes of `batches`; None: default_workers()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.names), self.resolution, self.resolution, 3)

    @property
    def nbytes(self) -> int:
        """What the images would take decoded in memory."""
        return len(self.names) * self.resolution * self.resolution * 3

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"FileImages({len(self)} files under {self.root}, {self.resolution}px)"

    def decode(self, i: int) -> np.ndarray:
        path = self.root / self.names[i]
        image = decode_image(path, self.resolution)
        if isinstance(image, str):
            raise UnreadableImage(f"{path} could not be read ({image}); it was readable when the folder "
                                  "was checked, so it changed since. Restore it, or remove it and start a new run")
        return image

    def _positions(self, index) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(len(self))[index]
        if isinstance(index, (bool, tuple)) or not isinstance(index, (list, range, np.ndarray, torch.Tensor)):
            raise TypeError(f"images are indexed by an int, a slice, or a 1-D sequence of positions or a "
                            f"mask; got {type(index).__name__}")
        positions = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index)
        if positions.ndim != 1:
            raise IndexError(f"a {positions.ndim}-D index for a list of images; give a 1-D one")
        if positions.dtype == bool:
            if positions.shape != (len(self),):
                raise IndexError(f"a boolean mask of shape {positions.shape} for {len(self)} images")
            return np.flatnonzero(positions)
        positions = positions.astype(np.int64, copy=False)
        if positions.size and (positions.min() < -len(self) or positions.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} images")
        return positions % max(1, len(self))

    def __getitem__(self, index) -> torch.Tensor:
        """Decode: an int gives (H, W, 3); a slice, positions or a mask give (k, H, W, 3)."""
        if isinstance(index, bool):
            raise TypeError("images are not indexed by a bool")
        if isinstance(index, (int, np.integer)) or (isinstance(index, (torch.Tensor, np.ndarray)) and index.ndim == 0
                                                    and index.dtype not in (torch.bool, np.bool_)):
            i = int(index)
            if not -len(self) <= i < len(self):
                raise IndexError(f"image {i} of {len(self)}")
            return torch.from_numpy(self.decode(i % len(self)).copy())
        return self.read(self._positions(index))

    def read(self, positions: Sequence[int] | np.ndarray, threads: int = 8) -> torch.Tensor:
        """The images at `positions`, decoded in threads into one (k, H, W, 3) tensor."""
        positions = [int(i) for i in positions]
        out = np.empty((len(positions), self.resolution, self.resolution, 3), dtype=np.uint8)
        if len(positions) < 16:
            for row, i in enumerate(positions):
                out[row] = self.decode(i)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for row, image in enumerate(pool.map(self.decode, positions)):
                    out[row] = image
        return torch.from_numpy(out)

    def subset(self, index) -> "FileImages":
        """The files at `index` (positions, a slice or a mask); nothing is decoded."""
        return FileImages(self.root, [self.names[i] for i in self._positions(index)], self.resolution, self.workers)

    def batches(self, index_batches: Iterable[Sequence[int] | torch.Tensor], *, labels: torch.Tensor | None = None,
                workers: int | None = None, pin_memory: bool = False) -> Iterator:
        """Decode each batch of positions in DataLoader workers, in order, a few batches ahead.

        Yields uint8 (B, H, W, 3) tensors, or (images, labels) pairs when `labels` is given.
        """
        workers = workers if workers is not None else self.workers if self.workers is not None else default_workers()
        loader = torch.utils.data.DataLoader(
            _BatchDecoder(self, labels), sampler=index_batches, batch_size=None, num_workers=workers,
            pin_memory=pin_memory, prefetch_factor=4 if workers else None, persistent_workers=False,
        )
        for item in loader:
            if isinstance(item, str):  # a worker's UnreadableImage, raised here with its own words
                raise UnreadableImage(item)
            yield item


class _BatchDecoder(torch.utils.data.Dataset):
    """Dataset whose items are whole batches: one worker decodes one batch and stacks it."""

    def __init__(self, images: FileImages, labels: torch.Tensor | None):
        self.images, self.labels = images, labels

    def __getitem__(self, positions):
        positions = np.asarray(positions.cpu() if isinstance(positions, torch.Tensor) else positions, dtype=np.int64)
        try:
            images = self.images.read(positions, threads=1)  # parallel across workers, not within
        except UnreadableImage as err:
            return str(err)
        if self.labels is None:
            return images
        return images, self.labels[torch.from_numpy(positions)]


def iter_batches(images: torch.Tensor | FileImages, batch_size: int,
                 workers: int | None = None) -> Iterator[torch.Tensor]:
    """uint8 batches of `images` in order: slices of a tensor, or decoded batches of files."""
    if isinstance(images, FileImages):
        starts = range(0, len(images), batch_size)
        yield from images.batches([np.arange(s, min(s + batch_size, len(images))) for s in starts], workers=workers)
    else:
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]


def head(images: torch.Tensor | FileImages, n: int) -> torch.Tensor | FileImages:
    """The first n images, without decoding files."""
    return images.subset(slice(0, n)) if isinstance(images, FileImages) else images[:n]


class ImageRows:
    """Numpy rows of a FileImages for the app and exports: `rows[i]`, `rows[list]`, `len(rows)`."""

    def __init__(self, images: FileImages):
        self.images = images

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.images.shape

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> np.ndarray:
        return self.images[index].numpy()

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in iter_batches(self.images, 256):
            yield from batch.numpy()
