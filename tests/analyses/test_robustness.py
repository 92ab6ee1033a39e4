"""Robustness to corruptions: each corruption against a naive reference, its severities in order,
its draws fixed by the seed; the analysis on a tiny trained run (its clean score is eval.json's
kNN top-1, the same result twice) and the runs it does not apply to."""

from __future__ import annotations

import colorsys
import json
import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from ssl_core.analyses.robustness import (CORRUPTIONS, MAX_TEST_ROWS, SEVERITIES, corrupt, robustness_run,
                                          robustness_table, severity_means)
from ssl_core.analyses.runner import ANALYSES, not_applicable, run_analyses
from ssl_core.analyses.stored import read_result
from ssl_core.data import load_dataset
from ssl_core.store.runs import Run
from tiny_runs import tiny_config, trained_run


@pytest.fixture(scope="module")
def shapes_images() -> np.ndarray:
    """64 test images of the shapes dataset, uint8 (64, 32, 32, 3)."""
    return load_dataset(tiny_config(train_size=16, test_size=64).data).test.images.numpy()


@pytest.fixture(scope="module")
def tiny_trained(tmp_path_factory):
    return trained_run(tmp_path_factory.mktemp("robustness") / "runs", "simclr", train_size=96, test_size=48)


def test_every_corruption_keeps_shape_and_type_at_any_size_and_grows_with_severity(shapes_images):
    odd = np.random.default_rng(0).integers(0, 256, size=(3, 28, 40, 3), dtype=np.uint8)  # not 32 px, not square
    for name in CORRUPTIONS:
        for severity in range(1, SEVERITIES + 1):
            out = corrupt(odd, name, severity)
            assert out.dtype == np.uint8 and out.shape == odd.shape, (name, severity)
        # the mean change of the pixels grows with the severity, on real images
        change = [np.abs(corrupt(shapes_images, name, s).astype(float) - shapes_images).mean()
                  for s in range(1, SEVERITIES + 1)]
        assert change == sorted(change) and change[0] > 0, (name, change)


def test_blur_matches_scipys_gaussian_filter_with_sigma_scaled_to_the_image_side(shapes_images):
    for side in (32, 64):
        images = shapes_images[:4] if side == 32 else np.repeat(np.repeat(shapes_images[:4], 2, axis=1), 2, axis=2)
        for severity, sigma in enumerate(CORRUPTIONS["gaussian_blur"].values, start=1):
            scaled = sigma * side / 32
            expected = gaussian_filter(images.astype(np.float64) / 255, sigma=(0, scaled, scaled, 0), mode="nearest",
                                       truncate=4.0)
            got = corrupt(images, "gaussian_blur", severity).astype(np.float64) / 255
            assert np.abs(got - expected).max() <= 1 / 255 + 1e-6, (side, severity)


def test_brightness_matches_a_per_pixel_hsv_round_trip():
    images = np.random.default_rng(1).integers(0, 256, size=(2, 6, 6, 3), dtype=np.uint8)
    images[0, 0, 0] = 0  # a black pixel: no hue, no saturation
    for severity, shift in enumerate(CORRUPTIONS["brightness"].values, start=1):
        expected = np.empty(images.shape)
        for index in np.ndindex(images.shape[:3]):
            h, s, v = colorsys.rgb_to_hsv(*(images[index] / 255))
            expected[index] = colorsys.hsv_to_rgb(h, s, min(v + shift, 1.0))
        got = corrupt(images, "brightness", severity).astype(np.float64) / 255
        assert np.abs(got - expected).max() <= 1 / 255 + 1e-6, severity  # rounding, float32 against float64


def test_contrast_noise_and_occlusion_do_what_their_parameters_say(shapes_images):
    images = shapes_images[:8]
    x = images.astype(np.float64) / 255
    for severity, factor in enumerate(CORRUPTIONS["contrast"].values, start=1):
        means = x.mean(axis=(1, 2), keepdims=True)
        expected = np.clip((x - means) * factor + means, 0, 1)
        assert np.abs(corrupt(images, "contrast", severity) / 255 - expected).max() <= 1 / 255 + 1e-6
    grey = np.full((16, 32, 32, 3), 128, dtype=np.uint8)  # far from 0 and 255: nothing clipped
    for severity, std in enumerate(CORRUPTIONS["gaussian_noise"].values, start=1):
        measured = (corrupt(grey, "gaussian_noise", severity).astype(np.float64) - 128).std() / 255
        assert measured == pytest.approx(std, rel=0.05)
    white = np.full((16, 32, 32, 3), 255, dtype=np.uint8)
    for severity, share in enumerate(CORRUPTIONS["occlusion"].values, start=1):
        hidden = (corrupt(white, "occlusion", severity) == 0).all(axis=-1).sum(axis=(1, 2))
        assert (hidden == round(share * 32) ** 2).all(), severity


def test_the_draws_come_from_the_seed_only(shapes_images):
    for name in ("gaussian_noise", "occlusion"):
        first = corrupt(shapes_images, name, 3, seed=7)
        assert np.array_equal(first, corrupt(shapes_images, name, 3, seed=7))
        assert not np.array_equal(first, corrupt(shapes_images, name, 3, seed=8))
    with pytest.raises(KeyError, match="unknown corruption 'fog'; known: gaussian_noise"):
        corrupt(shapes_images, "fog", 1)
    with pytest.raises(ValueError, match="severity is 1 to 5; got 6"):
        corrupt(shapes_images, "jpeg", 6)


def test_robustness_run_scores_every_corruption_and_its_clean_score_is_eval_knn(tiny_trained):
    assert "robustness" in ANALYSES and "robustness" not in not_applicable(tiny_trained)
    seen = []
    result = run_analyses(tiny_trained, ["robustness"], device="cpu", progress=lambda f, text: seen.append(f))
    summary = result["results"]["robustness"]
    assert read_result(tiny_trained, "robustness") == summary
    assert summary["settings"]["test_rows"] == 48 <= MAX_TEST_ROWS  # every test image: the clean score is eval's
    assert summary["clean_top1"] == tiny_trained.read_eval()["knn_top1"]
    assert [e["name"] for e in summary["corruptions"]] == list(CORRUPTIONS)
    scores = [s for e in summary["corruptions"] for s in e["top1"]]
    assert len(scores) == len(CORRUPTIONS) * SEVERITIES and all(0 <= s <= 1 for s in scores)
    assert summary["mean_corruption_top1"] == pytest.approx(np.mean(scores), abs=1e-4)
    assert seen == sorted(seen) and seen[-1] == 1.0
    # The same run gives the same result twice (only the timings differ).
    again = robustness_run(tiny_trained, max_test=MAX_TEST_ROWS)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}
    # A cap takes a seeded subset, and says so.
    capped = robustness_run(tiny_trained, max_test=20)
    assert capped["settings"]["test_rows"] == 20 and capped["settings"]["test_rows_available"] == 48
    # What the Compare page draws of it.
    assert severity_means(summary)[0] == summary["clean_top1"] and len(severity_means(summary)) == 6
    table = robustness_table({"a": summary, "b": capped})
    assert [row["corruption"] for row in table[:2]] == ["clean", "mean (mCA)"] and len(table) == 2 + len(CORRUPTIONS)
    assert table[1] == {"corruption": "mean (mCA)", "a": summary["mean_corruption_top1"],
                        "b": capped["mean_corruption_top1"]}


def test_runs_without_an_encoder_or_labels_are_not_applicable(tiny_trained, tmp_path):
    imported = tmp_path / "imported"
    shutil.copytree(tiny_trained.path, imported)
    config = json.loads((imported / "config.json").read_text())
    (imported / "config.json").write_text(json.dumps({**config, "method": {"name": "imported"}}))
    reason = not_applicable(Run(imported))["robustness"]
    assert "no encoder" in reason
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(tiny_trained.path, unlabelled, ignore=shutil.ignore_patterns("analysis"))
    for split in ("train", "test"):
        path = unlabelled / "embeddings" / f"{split}_labels.npy"
        np.save(path, np.full_like(np.load(path), -1))
    assert not_applicable(Run(unlabelled))["robustness"].startswith("no labels:")
    with pytest.raises(ValueError, match="'robustness' does not apply: no labels"):
        run_analyses(Run(unlabelled), ["robustness"], device="cpu")
