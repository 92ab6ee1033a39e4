"""Embeddings: every image of a run through its trained encoder, stored per split.

Under torchrun (`torchrun --nproc_per_node 4 -m ssl_core.cli embed RUN_ID`) each process embeds
its own contiguous share of each split (`Shard`), writes it beside the embeddings as a part
file, and rank 0, once every part is there, joins them in rank order into the same files a
single process writes, then deletes the parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.files import FileImages, iter_batches
from ssl_core.models.methods import Method
from ssl_core.store import files
from ssl_core.store.atomic import atomic_write_arrays, atomic_write_json
from ssl_core.store.runs import Run
from ssl_core.models.encoders import load_run_encoder

SPLITS = ("train", "test")


@torch.no_grad()
def embed_images(method: Method, images_u8: torch.Tensor | FileImages, *, device: torch.device | str = "cpu",
                 batch_size: int = 512, progress: bool = False) -> torch.Tensor:
    """uint8 images (N, H, W, 3), in memory or in files, -> float32 embeddings (N, D) on the
    CPU, in eval mode."""
    was_training = method.training
    method.eval()
    chunks = []
    total = -(-len(images_u8) // batch_size)
    for batch in tqdm(iter_batches(images_u8, batch_size), total=total, disable=not progress, desc="embed", unit="batch"):
        chunks.append(method.embed(batch.to(device, non_blocking=True)).float().cpu())
    method.train(was_training)
    if not chunks:
        return torch.zeros(0, method.embedding_dim)
    return torch.cat(chunks)


@dataclass(frozen=True)
class Shard:
    """This process's place among `world_size` processes embedding one run, and `wait`, which
    returns once every process has called it (torch.distributed's barrier)."""

    rank: int
    world_size: int
    wait: Callable[[], None]

    def rows(self, n: int) -> slice:
        """Its contiguous share of n rows: sizes differ by at most one, in rank order."""
        return slice(n * self.rank // self.world_size, n * (self.rank + 1) // self.world_size)

    def part(self, run: Run, split: str, rank: int | None = None) -> Path:
        rank = self.rank if rank is None else rank
        return run.embeddings_dir / f".part-{split}-{rank}-of-{self.world_size}.npy"


def embed_run(run: Run, *, device: torch.device | str = "cpu", data: ImageSet | None = None,
              progress: bool = True, shard: Shard | None = None) -> dict[str, int]:
    """Write embeddings/<split>.npy (float16), <split>_labels.npy and <split>_ids.json. With a
    `shard`, this process embeds its share; rank 0 writes the files once every share is in."""
    method = load_run_encoder(run, device)  # first: an imported run has none, and says so
    data = data or load_dataset(run.config.data)
    subsets = {split: data.train if split == "train" else data.test for split in SPLITS}
    vectors = {}
    for split, subset in subsets.items():
        images = subset.images
        if shard is not None:  # a slice of files is not decoded until embedded
            share = shard.rows(len(images))
            images = images.subset(share) if isinstance(images, FileImages) else images[share]
        vectors[split] = embed_images(method, images, device=device, progress=progress).numpy().astype(np.float16)
    if shard is not None:
        for split in SPLITS:
            atomic_write_arrays(shard.part(run, split), vectors[split])
        shard.wait()
        if shard.rank != 0:
            return {split: len(v) for split, v in vectors.items()}
        vectors = {split: _join_parts(run, shard, split, len(subsets[split].images)) for split in SPLITS}
    for split, subset in subsets.items():
        atomic_write_arrays(run.embeddings_dir / files.vectors(split), vectors[split])
        atomic_write_arrays(run.embeddings_dir / files.labels(split), subset.labels.numpy().astype(np.int64))
        atomic_write_json(run.embeddings_dir / files.ids(split), list(subset.ids))
    atomic_write_json(run.embeddings_dir / files.CLASS_NAMES, list(data.class_names))
    if shard is not None:
        for split in SPLITS:
            for rank in range(shard.world_size):
                shard.part(run, split, rank).unlink(missing_ok=True)
    return {split: len(v) for split, v in vectors.items()}


def _join_parts(run: Run, shard: Shard, split: str, n: int) -> np.ndarray:
    """Every process's part of one split, in rank order; an error names a part that is missing
    or holds other rows than its share."""
    parts = []
    for rank in range(shard.world_size):
        path = shard.part(run, split, rank)
        if not path.exists():
            raise FileNotFoundError(f"run {run.id}: process {rank} of {shard.world_size} left no {split} "
                                    f"embeddings ({path.name}); run `ssl-explorer embed {run.id}` again")
        part = np.load(path, allow_pickle=False)
        share = Shard(rank, shard.world_size, shard.wait).rows(n)
        if len(part) != share.stop - share.start:
            raise ValueError(f"run {run.id}: {path.name} holds {len(part)} rows, not its share of "
                             f"{share.stop - share.start}; run `ssl-explorer embed {run.id}` again")
        parts.append(part)
    return np.concatenate(parts)


def load_embeddings(run: Run, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(embeddings float32 (N, D), labels (N,), ids) of one split, as `embed_run` stored them."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; known: {', '.join(SPLITS)}")
    folder = run.embeddings_dir
    if not (folder / files.vectors(split)).exists():
        raise FileNotFoundError(f"run {run.id} has no {split} embeddings; run `ssl-explorer embed {run.id}`")
    vectors = np.load(folder / files.vectors(split), allow_pickle=False).astype(np.float32)
    labels = np.load(folder / files.labels(split), allow_pickle=False)
    ids = json.loads((folder / files.ids(split)).read_text())
    if not (len(vectors) == len(labels) == len(ids)):
        raise ValueError(f"run {run.id}: {split} embeddings, labels and ids disagree in length "
                         f"({len(vectors)}, {len(labels)}, {len(ids)}); run `ssl-explorer embed {run.id}`")
    return vectors, labels, ids


def load_all_embeddings(run: Run) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Train then test rows in one array: (vectors, labels, ids, split names). The map and the
    search index use this order, so a row number means the same image everywhere."""
    parts = [load_embeddings(run, split) for split in SPLITS]
    vectors = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    ids = [i for p in parts for i in p[2]]
    splits = np.array([s for s, p in zip(SPLITS, parts) for _ in range(len(p[0]))])
    return vectors, labels, ids, splits
