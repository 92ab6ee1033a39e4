"""What each training step trains on: the train split where a step reaches it fastest, the
seeded order of its batches, and the split's channel statistics and digest.

Every random draw of step `s` comes from a generator seeded by (seed, s), and every epoch's order
from (seed, epoch): a run resumed at any step, or split over several processes, takes exactly the
batches the uninterrupted single-process run would have taken.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import torch

from ssl_core.data import ImageSet
from ssl_core.data.files import FileImages

# A dataset larger than this share of the GPU's free memory stays in pinned host memory and each
# batch is copied over as it is needed; smaller ones (CIFAR-10 is 150 MB as uint8) live on the GPU.
DEVICE_DATA_FRACTION = 0.5


class TrainImages:
    """The train split where each step reaches it fastest: on the device when it fits, else in
    pinned host memory with one gather and one non-blocking copy per batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        fits = True
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = images.numel() * images.element_size() < DEVICE_DATA_FRACTION * free
        self.device, self.home = device, device if fits else torch.device("cpu")
        self.images, self.labels = images.to(self.home), labels.to(self.home)
        if not fits:
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.images[idx].to(self.device, non_blocking=True),
                self.labels[idx].to(self.device, non_blocking=True))

    def batches(self, plan: Iterator[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) on the device for each batch of positions in `plan`."""
        for idx in plan:
            yield self.batch(idx)


class StreamedTrainImages:
    """The train split of a streamed folder: DataLoader workers decode each step's batch a few
    steps ahead (nothing else happens in them), then the batch goes to the device, where the
    method augments it as it would in-memory data. The plan is the same seeded order, so a
    streamed run takes exactly the steps an in-memory run takes."""

    def __init__(self, images: FileImages, labels: torch.Tensor, device: torch.device):
        self.device, self.home = device, torch.device("cpu")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, plan: Iterator[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pin = self.device.type == "cuda"
        for images, labels in self.images.batches(plan, labels=self.labels, pin_memory=pin):
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def train_images(data: ImageSet, device: torch.device) -> TrainImages | StreamedTrainImages:
    train = data.train
    if isinstance(train.images, FileImages):
        return StreamedTrainImages(train.images, train.labels, device)
    return TrainImages(train.images, train.labels, device)


def batch_plan(seed: int, n: int, batch_size: int, steps_per_epoch: int, start: int, total_steps: int,
               offset: int, local_batch: int, home: torch.device) -> Iterator[torch.Tensor]:
    """The positions each step from `start` trains on: a fresh seeded permutation every epoch,
    cut into batches; this process takes `local_batch` rows from `offset` of each batch."""
    order = None
    for step in range(start, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if order is None or position == 0:
            order = epoch_order(seed, epoch, n, home)
        first = position * batch_size + offset
        yield order[first:first + local_batch]


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def epoch_order(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(step_seed(seed, 10**9 + epoch))
    return torch.randperm(n, generator=g).to(device)


def channel_stats(images_u8: torch.Tensor | FileImages) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 (N, H, W, 3) images, on a sample of
    about 5,000 evenly spaced images, summed in chunks (a float copy of large images is big)."""
    sample = images_u8[:: max(1, len(images_u8) // 5000)]
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(sample), 500):
        chunk = sample[start:start + 500].reshape(-1, 3).double() / 255
        total += chunk.sum(dim=0)
        squares += (chunk * chunk).sum(dim=0)
    count = max(1, len(sample) * sample.shape[1] * sample.shape[2])
    mean = total / count
    var = (squares - count * mean * mean) / max(1, count - 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.float().tolist(), std.float().tolist()


def train_digest(data: ImageSet) -> str:
    """Identifies the train split (its ids, in order): a resumed run must see the same images, or
    its remaining steps would silently be other steps."""
    return hashlib.sha256("\n".join(data.train.ids).encode()).hexdigest()[:16]
