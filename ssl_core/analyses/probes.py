"""What a frozen encoder encodes: a linear probe per layer ("layers") and a probe per known
generative factor ("factors").

Layer-wise probe: every train and test image goes through the run's encoder once (eval mode,
no gradients, in batches); each layer the method declares (`Method.probe_layers`: its
backbone's by default, DDPM's UNet, I-JEPA's target encoder; the deepest is the embedding) is
pooled to one vector per image and scored with the same linear probe as eval.json
(`evaluate.linear_probe`). The curve shows at which depth the classes become linearly separable.

Factor probe: reads the stored embeddings only. Each factor of the dataset (shapes: color_hue,
scale, rotation, pos_x, pos_y, background; imported runs: their metadata columns) is fitted on
the train embeddings and scored on the test embeddings: ridge regression R^2 for continuous
factors, logistic-regression accuracy (with the majority-class chance level) for categorical
ones. Angles (hue, rotation) wrap around, so the probe regresses (cos, sin) of the angle and
reports the mean R^2 of the two. A shape with n-fold rotational symmetry looks the same turned by
360/n degrees, so its rotation cannot be read from any representation: rotation is scored on the
shapes without rotational symmetry only (heart, crescent, arrow).

    ssl-explorer analyze RUN_ID --only layers,factors
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ssl_core.analyses.stored import store_result
from ssl_core.models import augment
from ssl_core.models.encoders import encoder_class, load_run_encoder
from ssl_core.steps.browsing import run_dataset
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import linear_probe
from ssl_core.store import files
from ssl_core.store.runs import Run

Progress = Callable[[float, str], None] | None

LAYER_PROBE_MAX_TRAIN = 10_000  # train rows the layer probes fit on (all, on the demo runs)
LAYER_BATCH = 256
FACTOR_MAX_TRAIN = 20_000
# Angles in the datasets' units: one full turn.
ANGLE_PERIODS = {"color_hue": 1.0, "rotation": 360.0}
# Shapes of the `shapes` dataset whose rotation is identifiable (no rotational symmetry).
ASYMMETRIC_SHAPES = ("heart", "crescent", "arrow")
RIDGE_ALPHAS = np.logspace(-3, 3, 13)


def single_threaded_blas():
    """A context in which BLAS runs on one thread. The probes' fits are small (thousands of rows,
    hundreds of dims); on a busy machine OpenBLAS's threads spin waiting for each other, which
    made a logistic regression on 1000 x 256 features ~40x slower (2.8 s against 0.06 s) on 2 cores."""
    return threadpool_limits(limits=1, user_api="blas")


def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), text)


# -- applicability -----------------------------------------------------------------------------
def has_labels(run: Run) -> bool | None:
    """Whether the run's stored train and test labels hold known classes; None before `embed`."""
    try:
        return all(bool((np.load(run.embeddings_dir / files.labels(split), allow_pickle=False) >= 0).any())
                   for split in ("train", "test"))
    except FileNotFoundError:
        return None


def layers_unavailable(run: Run) -> str | None:
    """Why the layer-wise probe cannot run on `run`, or None when it can."""
    if run.kind == "imported":
        return "the run was imported with its embeddings: there is no encoder whose layers could be probed"
    try:
        reason = encoder_class(run).no_layers  # the method knows whether it has layers to read
    except KeyError as e:  # a method no longer registered
        return str(e.args[0])
    if reason:
        return reason
    if has_labels(run) is False:
        return "no labels: the dataset has no labelled train and test images to fit a classifier on"
    return None


def factors_unavailable(run: Run) -> str | None:
    """Why the factor probe cannot run, when that is known without loading the dataset."""
    if run.kind == "imported" and not (run.dataset_dir / files.DATASET_FACTORS).exists():
        return "the run was imported without metadata columns: there are no factors to probe"
    return None


# -- layer-wise probe ----------------------------------------------------------------------------
@torch.no_grad()
def layer_features(method, images_u8: torch.Tensor, *, device: torch.device | str = "cpu",
                   batch_size: int = LAYER_BATCH, progress: Callable[[float], None] | None = None
                   ) -> dict[str, np.ndarray]:
    """uint8 images (N, H, W, 3) -> {layer name: float32 (N, D_layer)}: the layers the method
    declares (`Method.probe_layers`: its own normalization, eval mode), shallow to deep; the
    deepest is the embedding. ValueError, with the method's reason, when it has no layers."""
    if getattr(method, "no_layers", None):
        raise ValueError(method.no_layers)
    was_training = method.training
    method.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    try:
        for start in range(0, len(images_u8), batch_size):
            batch = images_u8[start:start + batch_size].to(device, non_blocking=True)
            x = method.normalize(augment.to_float(batch))
            for name, pooled in method.probe_layers(x).items():
                chunks.setdefault(name, []).append(pooled.float().cpu())
            if progress is not None:
                progress(min(start + batch_size, len(images_u8)) / max(len(images_u8), 1))
    finally:
        method.train(was_training)
    return {name: torch.cat(parts).numpy() for name, parts in chunks.items()}


def cap_rows(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """All rows when there are at most `cap`, else a random `cap` of them (sorted)."""
    if len(labels) <= cap:
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).choice(len(labels), cap, replace=False))


def probe_layers(train_features: dict[str, np.ndarray], train_y: np.ndarray, test_features: dict[str, np.ndarray],
                 test_y: np.ndarray, *, seed: int = 0, progress: Progress = None) -> list[dict[str, Any]]:
    """[{"name", "dim", "linear_top1"}] per layer: `evaluate.linear_probe` on each layer's features."""
    layers = []
    with single_threaded_blas():
        for i, (name, train_x) in enumerate(train_features.items()):
            _report(progress, i / len(train_features), f"probing {name}")
            top1 = linear_probe(train_x, train_y, test_features[name], test_y, seed=seed)
            layers.append({"name": name, "dim": int(train_x.shape[1]), "linear_top1": round(top1, 4)})
    return layers


def layer_probe_run(run: Run, *, device: str = "cpu", progress: Progress = None,
                    max_train: int = LAYER_PROBE_MAX_TRAIN) -> dict[str, Any]:
    """Linear-probe top-1 of every declared layer of the run's encoder; writes analysis/layers.json."""
    reason = layers_unavailable(run)
    if reason:
        raise ValueError(f"run {run.id}: no layer-wise probe: {reason}")
    t0 = time.perf_counter()
    seed = run.config.train.seed
    _report(progress, 0.0, "loading the encoder and the images")
    method = load_run_encoder(run, device)
    data = run_dataset(run)
    train, test = data.train, data.test
    rows = cap_rows(train.labels.numpy(), max_train, seed)
    features = {}
    for split, subset, start, share in (("train", train.subset(rows), 0.05, 0.45), ("test", test, 0.5, 0.1)):
        features[split] = layer_features(
            method, subset.images, device=device,
            progress=lambda f, split=split, start=start, share=share: _report(progress, start + share * f,
                                                                              f"embedding {split} images per layer"))
    layers = probe_layers(features["train"], train.labels.numpy()[rows], features["test"], test.labels.numpy(),
                          seed=seed, progress=lambda f, text: _report(progress, 0.6 + 0.4 * f, text))
    summary = {
        "layers": layers,
        "settings": {"backbone": run.config.backbone.name, "pooling": method.layer_pooling,
                     "network": type(method.representation_module()).__name__,
                     "probe": "logistic regression on standardized features (as eval.json's linear_top1)",
                     "train_rows": int(len(rows)), "train_rows_available": int(len(train)),
                     "max_train_rows": max_train, "test_rows": int(len(test)), "seed": seed},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    store_result(run, "layers", summary)
    _report(progress, 1.0, "layer-wise probe done")
    return summary


# -- factor probe --------------------------------------------------------------------------------
def _aligned_factors(run: Run, train_ids: list[str], test_ids: list[str]):
    """(factors {name: (train values, test values)}, levels, class names of the rows' labels)."""
    data = run_dataset(run)
    if not data.factors:
        return {}, {}, data, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    position = {image_id: i for i, image_id in enumerate(data.ids)}
    try:
        train_rows = np.array([position[i] for i in train_ids], dtype=np.int64)
        test_rows = np.array([position[i] for i in test_ids], dtype=np.int64)
    except KeyError as e:
        raise ValueError(f"run {run.id}: the dataset no longer holds image {e.args[0]!r} of the stored embeddings; "
                         f"run `ssl-explorer embed {run.id}` again") from None
    factors = {name: (np.asarray(values)[train_rows], np.asarray(values)[test_rows])
               for name, values in data.factors.items()}
    return factors, dict(data.factor_levels), data, train_rows, test_rows


def _standardized(train_x: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train_x.mean(axis=0), train_x.std(axis=0)
    std[std < 1e-8] = 1.0
    return (train_x - mean) / std, (test_x - mean) / std


def ridge_r2(train_x: np.ndarray, train_t: np.ndarray, test_x: np.ndarray, test_t: np.ndarray) -> float:
    """Test R^2 of a ridge regression (alpha by leave-one-out on train) from standardized features
    to one target (N,) or several (N, K), averaged over the targets."""
    from sklearn.linear_model import RidgeCV  # heavy (~0.5 s): scikit-learn is imported only when this runs
    from sklearn.metrics import r2_score  # heavy (~0.5 s): scikit-learn is imported only when this runs

    train_x, test_x = _standardized(train_x, test_x)
    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(train_x, train_t)
    return float(r2_score(test_t, model.predict(test_x), multioutput="uniform_average"))


def _angle_targets(values: np.ndarray, period: float) -> np.ndarray:
    turn = 2 * np.pi * np.asarray(values, dtype=np.float64) / period
    return np.stack([np.cos(turn), np.sin(turn)], axis=1)


def probe_factor(name: str, train_x: np.ndarray, train_v: np.ndarray, test_x: np.ndarray, test_v: np.ndarray,
                 *, levels: tuple[str, ...] | None = None, seed: int = 0) -> dict[str, Any]:
    """One factor's entry: {"name", "kind", "metric", "score", ["chance"], "n_train", "n_test"}."""
    with single_threaded_blas():
        return _probe_factor(name, train_x, train_v, test_x, test_v, levels=levels, seed=seed)


def _probe_factor(name: str, train_x: np.ndarray, train_v: np.ndarray, test_x: np.ndarray, test_v: np.ndarray,
                  *, levels: tuple[str, ...] | None, seed: int) -> dict[str, Any]:
    if levels is not None:  # categorical: integer codes, -1 (or out of range) where unknown
        keep_train = (train_v >= 0) & (train_v < len(levels))
        keep_test = (test_v >= 0) & (test_v < len(levels))
        train_c, test_c = train_v[keep_train].astype(np.int64), test_v[keep_test].astype(np.int64)
        if len(np.unique(train_c)) < 2 or not len(test_c):
            raise ValueError(f"factor '{name}' has fewer than 2 known levels in train, or none in test")
        score = linear_probe(train_x[keep_train], train_c, test_x[keep_test], test_c, seed=seed)
        chance = float(np.bincount(test_c).max() / len(test_c))
        return {"name": name, "kind": "categorical", "metric": "accuracy", "score": round(score, 4),
                "chance": round(chance, 4), "levels": len(levels),
                "n_train": int(keep_train.sum()), "n_test": int(keep_test.sum())}
    train_v, test_v = np.asarray(train_v, dtype=np.float64), np.asarray(test_v, dtype=np.float64)
    keep_train, keep_test = np.isfinite(train_v), np.isfinite(test_v)
    if keep_train.sum() < 3 or keep_test.sum() < 2:
        raise ValueError(f"factor '{name}' has too few known values (train {keep_train.sum()}, test {keep_test.sum()})")
    if name in ANGLE_PERIODS:
        period = ANGLE_PERIODS[name]
        score = ridge_r2(train_x[keep_train], _angle_targets(train_v[keep_train], period),
                         test_x[keep_test], _angle_targets(test_v[keep_test], period))
        kind, metric = "angle", "R2 of (cos, sin)"
    else:
        score = ridge_r2(train_x[keep_train], train_v[keep_train], test_x[keep_test], test_v[keep_test])
        kind, metric = "continuous", "R2"
    return {"name": name, "kind": kind, "metric": metric, "score": round(score, 4),
            "n_train": int(keep_train.sum()), "n_test": int(keep_test.sum())}


def factor_probe_run(run: Run, *, device: str = "cpu", progress: Progress = None) -> dict[str, Any]:
    """How well each known factor reads from the frozen embedding; writes analysis/factors.json.
    A dataset without factors gets a summary with no factors and a note saying so."""
    reason = factors_unavailable(run)
    if reason:
        raise ValueError(f"run {run.id}: no factor probe: {reason}")
    t0 = time.perf_counter()
    seed = run.config.train.seed
    _report(progress, 0.0, "loading embeddings and factors")
    train_x, _, train_ids = load_embeddings(run, "train")
    test_x, _, test_ids = load_embeddings(run, "test")
    factors, levels, data, train_rows, test_rows = _aligned_factors(run, train_ids, test_ids)
    summary: dict[str, Any] = {"factors": [], "settings": {
        "continuous": "ridge regression on standardized embeddings (alpha by leave-one-out), R2 on test",
        "angles": "ridge regression to (cos, sin) of the angle, mean R2 of the two on test",
        "categorical": "logistic regression on standardized embeddings, accuracy on test; chance = majority level",
        "train_rows": int(min(len(train_x), FACTOR_MAX_TRAIN)), "test_rows": int(len(test_x)), "seed": seed}}
    if not factors:
        summary["note"] = (f"the dataset '{run.config.data.dataset}' has no known factors (generated sets such as "
                           "shapes have them; imported runs and image folders take them from metadata columns)")
    cap = cap_rows(np.arange(len(train_x)), FACTOR_MAX_TRAIN, seed)
    for i, (name, (train_v, test_v)) in enumerate(factors.items()):
        _report(progress, 0.1 + 0.9 * i / len(factors), f"probing {name}")
        tx, tv, qx, qv = train_x[cap], train_v[cap], test_x, test_v
        note = None
        if name == "rotation" and set(ASYMMETRIC_SHAPES) <= set(data.class_names):
            # Only shapes whose rotation shows in the image: a square turned by 90 degrees is the same square.
            asymmetric = [data.class_names.index(s) for s in ASYMMETRIC_SHAPES]
            labels = data.labels.numpy()
            in_train = np.isin(labels[train_rows][cap], asymmetric)
            in_test = np.isin(labels[test_rows], asymmetric)
            tx, tv, qx, qv = tx[in_train], tv[in_train], qx[in_test], qv[in_test]
            note = (f"scored on the shapes without rotational symmetry only ({', '.join(ASYMMETRIC_SHAPES)}): the "
                    "rotation of a symmetric shape (square, star, circle...) cannot be read from its image")
        try:
            entry = probe_factor(name, tx, tv, qx, qv, levels=levels.get(name), seed=seed)
        except ValueError as e:
            entry = {"name": name, "kind": "categorical" if name in levels else "continuous", "metric": None,
                     "score": None, "note": str(e)}
        if note:
            entry["note"] = note
        summary["factors"].append(entry)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    store_result(run, "factors", summary)
    _report(progress, 1.0, "factor probe done")
    return summary
