"""Robustness to common corruptions: kNN top-1 of a run's held-out images once they are noised,
blurred, darkened, compressed, pixelated or partly hidden.

The corruptions and their five severities follow CIFAR-10-C (Hendrycks & Dietterich 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR; the
parameters of their `make_cifar_c.py`), on any dataset's uint8 images (N, H, W, 3): a parameter
in pixels (the blur's sigma) is scaled by the image side over 32, as CIFAR-10-C scales
ImageNet-C's parameters down to 32 px; the others are shares of the intensity range or of the
image side and apply as they are. Occlusion is not in CIFAR-10-C: a black square at a random
place, as in Cutout (DeVries & Taylor 2017), its side a growing share of the image's.

Each corrupted image goes through the run's encoder (`steps.embed.embed_images`), is stored as
float16 as `embed` stores embeddings, and is classified by the weighted kNN of eval.json
(`steps.evaluate.weighted_knn`, cosine, k=`KNN_K`) against the run's stored train embeddings, so
the clean score is eval.json's knn_top1 whenever every test image is used. Random draws (the
noise, the squares' places, which test images when there are more than `MAX_TEST_ROWS`) come
from the run's seed: the same run gives the same result twice.

    analysis/robustness.json   clean_top1, mean_corruption_top1 (mean over corruptions and
                               severities, "mCA"), per corruption its parameter, its five values
                               and its five top-1 accuracies, and the settings

    ssl-explorer analyze RUN_ID --only robustness
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ssl_core.analyses.probes import cap_rows, has_labels
from ssl_core.analyses.stored import store_result
from ssl_core.data import load_dataset
from ssl_core.models.encoders import load_run_encoder
from ssl_core.steps.embed import embed_images, load_embeddings
from ssl_core.steps.evaluate import KNN_K, weighted_knn
from ssl_core.store.runs import Run

NAME = "robustness"
# Test images scored, clean and under each of the 35 corruptions and severities (36 x 500 images
# embedded). On the bundled runs (1,000 test images), on 2 shared CPU cores: 7 s for the convnet
# (demo-simclr-shapes), 17 s for the ViT (demo-supervised-vit-shapes), nearly all of it embedding;
# with all 1,000 images, 20 s and 51 s. A top-1 on 500 images has a standard error of about 2 points.
MAX_TEST_ROWS = 500
SEVERITIES = 5
REFERENCE_SIDE = 32  # CIFAR-10-C's image side, which its pixel-sized parameters are for

Progress = Callable[[float, str], None] | None


# -- the corruptions: uint8 (N, H, W, 3) in, uint8 (N, H, W, 3) out ----------------------------
def _to_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def gaussian_noise(images: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Adds N(0, std) to every channel of every pixel, on a 0..1 scale."""
    x = _to_float(images)
    return _to_uint8(x + rng.normal(scale=std, size=x.shape).astype(np.float32))


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian of scipy.ndimage.gaussian_filter (and so of skimage's
    `gaussian`, which CIFAR-10-C used): radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def gaussian_blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian blur of standard deviation `sigma` pixels over height and width, edges
    repeated (scipy's mode "nearest"), each channel on its own."""
    x = _to_float(images)
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    for axis in (1, 2):  # separable: rows, then columns
        padding = [(0, 0)] * 4
        padding[axis] = (radius, radius)
        padded = np.pad(x, padding, mode="edge")
        size = x.shape[axis]
        x = sum(weight * np.take(padded, np.arange(i, i + size), axis=axis) for i, weight in enumerate(kernel))
    return _to_uint8(x)


def contrast(images: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Pulls every pixel towards its image's mean colour: (x - mean) * factor + mean."""
    x = _to_float(images)
    means = x.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((x - means) * factor + means)


def brightness(images: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Adds `shift` to the value (V) of HSV, clipped to 1, hue and saturation kept. With H and S
    fixed, every channel is proportional to V, so the RGB image scales by V'/V; a black pixel
    (V = 0, saturation 0) becomes the grey V'."""
    x = _to_float(images)
    value = x.max(axis=-1, keepdims=True)
    shifted = np.clip(value + shift, 0.0, 1.0)
    scaled = x * (shifted / np.maximum(value, 1e-12))
    return _to_uint8(np.where(value > 0, scaled, shifted))


def jpeg(images: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """Each image saved as a JPEG of the given quality (Pillow) and read back."""
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
        buffer.seek(0)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def pixelate(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Each image shrunk to `share` of its side and enlarged back, both with box filters."""
    height, width = images.shape[1:3]
    small = (max(1, int(width * share)), max(1, int(height * share)))
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = np.asarray(Image.fromarray(image).resize(small, Image.BOX).resize((width, height), Image.BOX))
    return out


def occlusion(images: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A black square whose side is `share` of the image's shorter side, placed uniformly at
    random inside each image."""
    height, width = images.shape[1:3]
    side = max(1, round(share * min(height, width)))
    tops = rng.integers(0, height - side + 1, size=len(images))
    lefts = rng.integers(0, width - side + 1, size=len(images))
    out = images.copy()
    for i, (top, left) in enumerate(zip(tops, lefts)):
        out[i, top:top + side, left:left + side] = 0
    return out


@dataclass(frozen=True)
class Corruption:
    title: str
    parameter: str  # what `values` are
    values: tuple[float, ...]  # one per severity, 1 to 5
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    scales_with_size: bool = False  # a length in pixels: scaled by the image side / 32


# CIFAR-10-C's values (make_cifar_c.py), but occlusion's, which are ours.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption("Gaussian noise", "noise std (pixels on a 0..1 scale)",
                                 (0.04, 0.06, 0.08, 0.09, 0.10), gaussian_noise),
    "gaussian_blur": Corruption("blur", "Gaussian sigma (pixels at 32 px)", (0.4, 0.6, 0.7, 0.8, 1.0),
                                gaussian_blur, scales_with_size=True),
    "contrast": Corruption("contrast", "contrast factor", (0.75, 0.5, 0.4, 0.3, 0.15), contrast),
    "brightness": Corruption("brightness", "added HSV value", (0.05, 0.1, 0.15, 0.2, 0.3), brightness),
    "jpeg": Corruption("JPEG", "JPEG quality", (80, 65, 58, 50, 40), jpeg),
    "pixelate": Corruption("pixelate", "share of the side kept", (0.95, 0.9, 0.85, 0.75, 0.65), pixelate),
    "occlusion": Corruption("occlusion", "square side / image side", (0.2, 0.3, 0.4, 0.5, 0.6), occlusion),
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 images (N, H, W, 3) under corruption `name` at `severity` (1 to 5); the random
    draws come from (seed, the corruption, the severity) only."""
    if name not in CORRUPTIONS:
        raise KeyError(f"unknown corruption '{name}'; known: {', '.join(CORRUPTIONS)}")
    if not 1 <= severity <= SEVERITIES:
        raise ValueError(f"severity is 1 to {SEVERITIES}; got {severity}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"corruptions take uint8 images (N, H, W, 3); got {images.dtype} {images.shape}")
    corruption = CORRUPTIONS[name]
    value = corruption.values[severity - 1]
    if corruption.scales_with_size:
        value = value * min(images.shape[1:3]) / REFERENCE_SIDE
    rng = np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])
    return corruption.apply(images, value, rng)


# -- the analysis ----------------------------------------------------------------------------
def robustness_unavailable(run: Run) -> str | None:
    """Why the robustness analysis cannot run on `run`, or None when it can."""
    if run.kind == "imported":
        return "the run was imported with its embeddings: there is no encoder to embed corrupted images with"
    if has_labels(run) is False:
        return "no labels: kNN accuracy under corruptions needs labelled train and test images"
    return None


def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), text)


def robustness_run(run: Run, *, device: str = "cpu", progress: Progress = None,
                   max_test: int = MAX_TEST_ROWS) -> dict[str, Any]:
    """kNN top-1 of the run's test images, clean and under every corruption and severity;
    writes analysis/robustness.json (see the module docstring) and returns it."""
    reason = robustness_unavailable(run)
    if reason:
        raise ValueError(f"run {run.id}: no robustness analysis: {reason}")
    if max_test < 1:
        raise ValueError(f"max_test must be at least 1; got {max_test}")
    t0 = time.perf_counter()
    seed = run.config.train.seed
    _report(progress, 0.0, "loading the encoder, the test images and the train embeddings")
    method = load_run_encoder(run, device)
    bank, bank_labels, _ = load_embeddings(run, "train")
    _, _, stored_test_ids = load_embeddings(run, "test")
    test = load_dataset(run.config.data).test
    if list(test.ids) != list(stored_test_ids):
        raise ValueError(f"run {run.id}: the dataset's test images are no longer those of the stored embeddings; "
                         f"run `ssl-explorer embed {run.id}` again")
    labels = test.labels.numpy()
    known = np.flatnonzero(labels >= 0)
    rows = known[cap_rows(labels[known], max_test, seed)]
    images = np.ascontiguousarray(np.asarray(test.images[torch.from_numpy(rows)]), dtype=np.uint8)
    truth = labels[rows]
    num_classes = int(max(bank_labels.max(initial=-1), truth.max(initial=-1))) + 1
    seconds = {"corrupt": 0.0, "embed": 0.0, "knn": 0.0}

    def top1(batch: np.ndarray) -> float:
        started = time.perf_counter()
        vectors = embed_images(method, torch.from_numpy(batch), device=device).numpy()
        seconds["embed"] += time.perf_counter() - started
        started = time.perf_counter()
        # float16 as embed_run stores them: the clean score is then eval.json's knn_top1
        queries = vectors.astype(np.float16).astype(np.float32)
        score = weighted_knn(bank, bank_labels, queries, truth, num_classes=num_classes, k=KNN_K)
        seconds["knn"] += time.perf_counter() - started
        return round(score, 4)

    steps = 1 + len(CORRUPTIONS) * SEVERITIES
    _report(progress, 0.02, f"clean: {len(rows):,} test images")
    clean = top1(images)
    entries = []
    for c, (name, corruption) in enumerate(CORRUPTIONS.items()):
        scores = []
        for severity in range(1, SEVERITIES + 1):
            done = 1 + c * SEVERITIES + severity - 1
            _report(progress, 0.02 + 0.98 * done / steps, f"{corruption.title}, severity {severity}")
            started = time.perf_counter()
            corrupted = corrupt(images, name, severity, seed)
            seconds["corrupt"] += time.perf_counter() - started
            scores.append(top1(corrupted))
        entries.append({"name": name, "title": corruption.title, "parameter": corruption.parameter,
                        "values": list(corruption.values), "top1": scores,
                        "mean_top1": round(float(np.mean(scores)), 4)})
    mean_corruption = round(float(np.mean([s for e in entries for s in e["top1"]])), 4)
    summary = {
        "name": NAME, "run_id": run.id, "clean_top1": clean, "mean_corruption_top1": mean_corruption,
        "corruptions": entries,
        "settings": {
            "protocol": "CIFAR-10-C (Hendrycks & Dietterich 2019): its parameters and five severities; "
                        "occlusion after Cutout (DeVries & Taylor 2017)",
            "classifier": f"weighted kNN (cosine, k={KNN_K}, as eval.json's knn_top1) against the stored "
                          "train embeddings",
            "k": KNN_K, "bank_rows": int(len(bank)), "test_rows": int(len(rows)),
            "test_rows_available": int(len(known)), "max_test_rows": int(max_test),
            "resolution": list(images.shape[1:3]), "seed": seed, "device": str(device),
        },
        "seconds": {**{key: round(value, 2) for key, value in seconds.items()},
                    "total": round(time.perf_counter() - t0, 2)},
    }
    store_result(run, NAME, summary)
    _report(progress, 1.0, "robustness stored")
    return summary


def severity_means(result: dict[str, Any]) -> list[float | None]:
    """[clean top-1, then the mean top-1 over the corruptions at each severity 1 to 5] of a
    stored robustness.json: one curve per run, for pages that set runs side by side."""
    entries = [e for e in result.get("corruptions") or []
               if isinstance(e, dict) and len(e.get("top1") or []) == SEVERITIES]
    means = [round(float(np.mean([e["top1"][s] for e in entries])), 4) if entries else None for s in range(SEVERITIES)]
    return [result.get("clean_top1"), *means]


def robustness_table(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows {"corruption", run id: top-1...} of stored robustness.json files by run id: clean,
    the mean over every corruption and severity (mCA), then each corruption's mean over its
    severities (None where a run did not score it)."""
    by_name = {run_id: {e.get("name"): e for e in result.get("corruptions") or [] if isinstance(e, dict)}
               for run_id, result in results.items()}
    names = list(dict.fromkeys(name for entries in by_name.values() for name in entries))
    rows = [{"corruption": "clean", **{run_id: r.get("clean_top1") for run_id, r in results.items()}},
            {"corruption": "mean (mCA)", **{run_id: r.get("mean_corruption_top1") for run_id, r in results.items()}}]
    for name in names:
        title = next(entries[name].get("title", name) for entries in by_name.values() if name in entries)
        rows.append({"corruption": title,
                     **{run_id: entries[name].get("mean_top1") if name in entries else None
                        for run_id, entries in by_name.items()}})
    return rows
