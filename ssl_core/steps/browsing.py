"""What the Explore page reads for one run, loaded once and searched many times.

Everything here reads the run folder (and regenerates or re-reads the run's images from its
config); nothing trains, embeds a dataset or projects. A run imported without images has its
map data (ids, labels, metadata) and no images: `run_dataset` and `run_images` refuse it with
`readiness.viewable`'s sentence. The app caches `load_explore_data` and
`steps.index.load_search` results, so a rerun costs a dictionary lookup.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ssl_core.data import load_dataset
from ssl_core.data.decode import decode_image
from ssl_core.data.files import FileImages, ImageRows
from ssl_core.data.imageset import ImageSet
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.projection import load_map
from ssl_core.steps.readiness import refuse, viewable
from ssl_core.store import files
from ssl_core.store.runs import Run

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # uploads larger than this are refused before decoding


def label_name(class_names, label: int) -> str:
    """The class name of a label index; "unlabelled" for -1 (or any index without a name)."""
    return class_names[label] if 0 <= label < len(class_names) else "unlabelled"


@dataclass
class ExploreData:
    """One run's map and its metadata, rows in the order train then test."""

    run_id: str
    coords: np.ndarray  # (N, 2) float32 map coordinates
    labels: np.ndarray  # (N,) int64, -1 where unknown
    ids: list[str]
    splits: np.ndarray  # (N,) "train" | "test"
    class_names: list[str]
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    factor_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    map_kind: str = "umap"  # "pca" while the job is still computing the UMAP map

    def label_name(self, row: int) -> str:
        return label_name(self.class_names, int(self.labels[row]))

    @property
    def labelled(self) -> bool:
        """Whether any row has a label: a folder of unlabelled images has none (every label -1)."""
        return bool((self.labels >= 0).any())

    def label_counts(self, rows: np.ndarray | list[int]) -> list[tuple[str, int]]:
        """(label name, count) of the given rows, most frequent first."""
        names = [self.label_name(int(r)) for r in rows]
        unique, counts = np.unique(np.array(names, dtype=object), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return [(str(unique[i]), int(counts[i])) for i in order]


def run_dataset(run: Run):
    """The ImageSet behind a run's embeddings. Generated data is regenerated from config.json,
    folders are read again from disk; an imported run carries its images in its folder.
    ValueError (`readiness.viewable`) for a run imported without images."""
    refuse(viewable(run))
    stored = load_stored_dataset(run)
    return stored if stored is not None else load_dataset(run.config.data)


def load_stored_dataset(run: Run):
    """The ImageSet an imported run carries in its folder (rows train then test, like its
    embeddings), or None for runs whose images come from their dataset."""
    images_path = run.dataset_dir / files.DATASET_IMAGES
    if not images_path.exists():
        return None
    _, labels, ids, splits = load_all_embeddings(run)
    images = np.load(images_path, allow_pickle=False)
    factors, levels = load_stored_factors(run)
    class_names = run.read_class_names()
    if len(images) != len(ids):
        raise ValueError(f"run {run.id}: {len(images)} stored images for {len(ids)} embeddings")
    return ImageSet(name=run.config.data.dataset, images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                    is_train=torch.from_numpy(splits == "train"), ids=tuple(ids), class_names=tuple(class_names),
                    factors=factors, factor_levels={k: tuple(v) for k, v in levels.items()})


def load_stored_factors(run: Run) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """An imported run's metadata columns (rows train then test) and their level names."""
    with np.load(run.dataset_dir / files.DATASET_FACTORS, allow_pickle=False) as stored:
        factors = {k: stored[k] for k in stored.files}
    return factors, json.loads((run.dataset_dir / files.DATASET_LEVELS).read_text())


def row_order(data) -> np.ndarray:
    """Dataset positions in the order of the stored embeddings, map and index: train, then test."""
    is_train = data.is_train.numpy()
    return np.concatenate([np.flatnonzero(is_train), np.flatnonzero(~is_train)])


def run_images(run: Run, data=None) -> np.ndarray | ImageRows:
    """The run's images as uint8 (N, H, W, 3), train then test: the rows of map and index. A
    streamed folder gives `ImageRows`, which decodes the rows it is indexed with. `data`: the
    run's dataset when the caller has it already (see `run_dataset`)."""
    data = data if data is not None else run_dataset(run)
    order = row_order(data)
    if isinstance(data.images, FileImages):
        return ImageRows(data.images.subset(order))
    if np.array_equal(order, np.arange(len(order))):  # already train then test: no copy
        return data.images.numpy()
    return data.images.numpy()[order]


def load_explore_data(run: Run, data=None) -> ExploreData:
    """The map and what is known of each row. `data`: the run's dataset when the caller has it
    (see `run_dataset`); a run imported without images has none and needs none."""
    _, labels, ids, splits = load_all_embeddings(run)
    coords, map_kind = load_map(run)
    if len(coords) != len(ids):
        raise ValueError(f"run {run.id}: the map has {len(coords)} points for {len(ids)} embeddings; "
                         f"run `ssl-explorer project {run.id}`")
    if data is None and viewable(run) is not None:  # no images: the stored metadata is all there is
        factors, levels = load_stored_factors(run)
        return ExploreData(run_id=run.id, coords=coords, labels=labels, ids=list(ids), splits=splits,
                           class_names=run.read_class_names(), factors=factors,
                           factor_levels={k: tuple(v) for k, v in levels.items()}, map_kind=map_kind)
    data = data if data is not None else run_dataset(run)
    order = row_order(data)
    if [data.ids[i] for i in order] != list(ids):
        raise ValueError(f"run {run.id}: the dataset no longer matches the stored embeddings "
                         "(was the folder changed?); run `ssl-explorer embed` again")
    factors = {name: values[order] for name, values in data.factors.items()}
    return ExploreData(run_id=run.id, coords=coords, labels=labels, ids=list(ids), splits=splits,
                       class_names=list(data.class_names), factors=factors,
                       factor_levels=dict(data.factor_levels), map_kind=map_kind)


def load_map_labels(run: Run) -> tuple[np.ndarray, np.ndarray, str]:
    """(map coordinates (N, 2), labels (N,), "umap" | "pca"), rows train then test: what a small
    picture of the run's map needs, read without its embeddings or its images."""
    coords, map_kind = load_map(run)
    labels = np.concatenate([np.load(run.embeddings_dir / files.labels(split), allow_pickle=False)
                             for split in files.SPLITS])
    if len(labels) != len(coords):
        raise ValueError(f"run {run.id}: the map has {len(coords)} points for {len(labels)} labels; "
                         f"run `ssl-explorer project {run.id}`")
    return coords, labels, map_kind


def decode_upload(data: bytes, resolution: int) -> np.ndarray:
    """An uploaded file -> uint8 (resolution, resolution, 3); ValueError says why it was refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ValueError(f"the file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    image = decode_image(io.BytesIO(data), resolution)
    if isinstance(image, str):
        raise ValueError(f"cannot use this file: {image}")
    return image


def encode_upload(method, data: bytes) -> np.ndarray:
    """Embed an uploaded image with a run's trained method: (D,) float32."""
    image = decode_upload(data, method.resolution)
    device = next(method.parameters()).device if any(True for _ in method.parameters()) else "cpu"
    with torch.no_grad():
        vector = method.embed(torch.from_numpy(np.array(image))[None].to(device))  # a writable copy
    return vector[0].cpu().numpy()


def image_data_uri(image: np.ndarray, size: int = 96) -> str:
    """A uint8 (H, W, 3) image as a PNG data URI, scaled up with nearest neighbour for display."""
    picture = Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

