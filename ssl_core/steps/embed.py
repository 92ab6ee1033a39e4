"""Embeddings: every image of a run through its trained encoder, stored per split."""

from __future__ import annotations

import json

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


def embed_run(run: Run, *, device: torch.device | str = "cpu", data: ImageSet | None = None,
              progress: bool = True) -> dict[str, int]:
    """Write embeddings/<split>.npy (float16), <split>_labels.npy and <split>_ids.json."""
    method = load_run_encoder(run, device)  # first: an imported run has none, and says so
    data = data or load_dataset(run.config.data)
    counts = {}
    for split in SPLITS:
        subset = data.train if split == "train" else data.test
        vectors = embed_images(method, subset.images, device=device, progress=progress)
        atomic_write_arrays(run.embeddings_dir / files.vectors(split), vectors.numpy().astype(np.float16))
        atomic_write_arrays(run.embeddings_dir / files.labels(split), subset.labels.numpy().astype(np.int64))
        atomic_write_json(run.embeddings_dir / files.ids(split), list(subset.ids))
        counts[split] = len(vectors)
    atomic_write_json(run.embeddings_dir / files.CLASS_NAMES, list(data.class_names))
    return counts


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
