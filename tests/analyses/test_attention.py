"""Attention maps (ViT), embedding-similarity saliency (CNN), DINO's top-mass thresholding,
attention rollout, the shapes masks they are measured against, and `ssl-explorer attention`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_core.analyses import attention
from ssl_core.cli import main
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig
from ssl_core.data.shapes import load_shapes, shape_masks
from ssl_core.models.methods import build_method
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import train
from tiny_runs import tiny_config

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
TRAINED_VIT, RANDOM_VIT = "demo-supervised-vit-shapes", "demo-random-vit-shapes"


def images(n: int = 3, resolution: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, resolution, resolution, 3), dtype=np.uint8)


def method(backbone: str, resolution: int = 32):
    torch.manual_seed(0)
    return build_method({"name": "random"}, backbone, resolution=resolution, num_classes=12).eval()


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> RunStore:
    """A vit_mini run and a convnet run at their random initialisation (no training steps), with
    checkpoints: enough for maps and pictures."""
    store = RunStore(tmp_path_factory.mktemp("attention") / "runs")
    for backbone in ("vit_mini", "convnet"):
        config = tiny_config("random", train_size=48, test_size=16)
        config.backbone = BackboneConfig(backbone)
        train(store.create(config), progress=False)
    return store


def run_of(store: RunStore, backbone: str):
    return next(store.get(s.id) for s in store.list() if store.get(s.id).config.backbone.name == backbone)


# -- the math -----------------------------------------------------------------------------------
def test_every_blocks_attention_rows_sum_to_one_per_head():
    vit = method("vit_mini").backbone
    x = torch.randn(2, 3, 32, 32)
    maps = vit.get_all_selfattentions(x)
    assert len(maps) == len(vit.blocks)
    for attn in maps:
        assert attn.shape == (2, vit.heads, 65, 65)
        torch.testing.assert_close(attn.sum(-1), torch.ones(2, vit.heads, 65))
    torch.testing.assert_close(maps[-1], vit.get_last_selfattention(x))  # the same last block
    cls = attention.cls_attention(maps[-1])
    torch.testing.assert_close(cls.sum(-1), torch.ones(2, vit.heads))


@pytest.mark.parametrize("resolution", [32, 64])
def test_vit_maps_cover_the_image(resolution):
    maps = attention.compute_maps(method("vit_mini", resolution), images(2, resolution))
    assert maps.technique == attention.ATTENTION
    assert maps.heads.shape == (2, 3, resolution, resolution)
    assert maps.mean.shape == maps.rollout.shape == (2, resolution, resolution)
    # Nearest upsampling keeps one value per patch: each map's pixels still sum to one patch-wise.
    patch_pixels = (resolution // 8) ** 2
    np.testing.assert_allclose(maps.mean.sum(axis=(1, 2)) / patch_pixels, 1, rtol=1e-5)
    np.testing.assert_allclose(maps.heads.mean(axis=1), maps.mean, rtol=1e-5, atol=1e-7)


def naive_top_mass(weights: np.ndarray, fraction: float) -> set[int]:
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    kept, mass = set(), 0.0
    for i in order:
        if mass >= fraction * weights.sum() - 1e-12:
            break
        kept.add(i)
        mass += weights[i]
    return kept


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.6, 0.9, 1.0])
def test_top_mass_keeps_the_fraction_with_the_fewest_patches(fraction):
    weights = np.random.default_rng(1).dirichlet(np.full(64, 0.3), size=5)
    keep = attention.keep_top_mass(weights, fraction)
    for w, k in zip(weights, keep):
        assert w[k].sum() >= fraction * w.sum() - 1e-9
        # The fewest: without its smallest kept patch, the set holds less than the fraction.
        assert w[k].sum() - w[k].min() < fraction * w.sum()
        assert set(np.flatnonzero(k)) == naive_top_mass(w, fraction)
    assert attention.keep_top_mass(np.array([0.5, 0.3, 0.2]), 0.8).tolist() == [True, True, False]
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        attention.keep_top_mass(weights, 1.5)


def test_rollout_of_identity_attention_is_the_identity_and_matches_a_naive_product():
    n = 5
    identity = [torch.eye(n).expand(1, 2, n, n)] * 3
    torch.testing.assert_close(attention.attention_rollout(identity)[0], torch.eye(n))
    # Random attention: the product of (mean_heads(A) + I) / 2, last block on the left.
    attns = [torch.softmax(torch.randn(1, 3, n, n), dim=-1) for _ in range(3)]
    steps = [(a.mean(1)[0] + torch.eye(n)) / 2 for a in attns]
    expected = steps[2] @ steps[1] @ steps[0]
    rollout = attention.attention_rollout(attns)[0]
    torch.testing.assert_close(rollout, expected)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(n))


def test_mask_share_counts_attention_on_covered_patches():
    masks = np.zeros((2, 32, 32), np.float32)
    masks[:, :4, :4] = 1  # patch 0 fully covered (4-px patches on an 8x8 grid)
    masks[:, :4, 4:6] = 1  # patch 1 half covered
    on_patch0 = np.zeros((2, 64))
    on_patch0[:, 0] = 1
    np.testing.assert_allclose(attention.mask_share(on_patch0, masks), 1.0)
    on_patch1 = np.roll(on_patch0, 1, axis=1)
    np.testing.assert_allclose(attention.mask_share(on_patch1, masks), 0.5)
    np.testing.assert_allclose(attention.mask_share(np.ones((2, 64)), masks), 1.5 / 64)


def test_shape_masks_are_where_the_shape_is_drawn():
    cfg = DataConfig(dataset="shapes", train_size=40, test_size=20)
    data = load_shapes(cfg)
    masks = shape_masks(cfg)
    assert masks.shape == (60, 32, 32) and masks.dtype == np.float32
    assert 0 <= masks.min() and masks.max() <= 1
    pixels = data.images.numpy().astype(int)
    for image, mask in zip(pixels, masks):
        inside, outside = image[mask == 1], image[mask == 0]
        assert len(inside) > 20 and len(outside) > 20
        assert np.ptp(inside, axis=0).max() <= 1  # one flat colour over the whole shape
        assert np.abs(outside.mean(0) - inside[0]).max() > 20  # and the background differs
    # The first k images' masks do not depend on the split sizes, as the images do not.
    smaller = shape_masks(DataConfig(dataset="shapes", train_size=10, test_size=5))
    np.testing.assert_array_equal(smaller[:10], masks[:10])
    np.testing.assert_array_equal(smaller[10:], masks[40:45])
    with pytest.raises(ValueError, match="only for the shapes dataset"):
        shape_masks(DataConfig(dataset="digits"))


def test_cnn_saliency_covers_the_image_and_is_not_called_attention():
    for backbone in ("convnet", "resnet18"):
        maps = attention.compute_maps(method(backbone), images(2))
        assert maps.technique == attention.SALIENCY == "embedding-similarity saliency"
        assert maps.mean.shape == (2, 32, 32) and maps.heads is None and maps.rollout is None
        assert -1 - 1e-5 <= maps.mean.min() and maps.mean.max() <= 1 + 1e-5  # cosine similarities
        assert "not attention" in maps.note
        assert [title for title, _ in attention.panels(maps, 0)] == ["image", "saliency"]


def test_runs_without_backbone_features_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="pixels baseline"):
        attention.compute_maps(build_method({"name": "pixels"}, "convnet", resolution=32, num_classes=12), images(1))
    with pytest.raises(ValueError, match="32x32"):
        attention.compute_maps(method("vit_mini"), images(1, 64))


def test_ijepa_maps_come_from_the_encoder_that_embeds():
    torch.manual_seed(0)
    ijepa = build_method({"name": "ijepa"}, "vit_mini", resolution=32, num_classes=12).eval()
    assert attention.embedding_backbone(ijepa) is ijepa.target_encoder


def test_imported_and_untrained_runs_say_why_there_are_no_maps(tmp_path):
    store = RunStore(tmp_path / "runs")
    imported = store.create(RunConfig(data=DataConfig(dataset="shapes"), method={"name": "imported"}))
    assert "imported" in attention.why_no_maps(imported)
    with pytest.raises(ValueError, match="imported"):
        attention.run_attention(imported, [0])
    untrained = store.create(tiny_config())
    assert "no checkpoint" in attention.why_no_maps(untrained)


# -- runs and the command line --------------------------------------------------------------------
def test_run_attention_reads_the_runs_own_rows(tiny_store):
    run = run_of(tiny_store, "vit_mini")
    maps = attention.run_attention(run, [0, 50])
    from ssl_core.steps.browsing import run_images

    np.testing.assert_array_equal(maps.images, run_images(run)[[0, 50]])
    with pytest.raises(IndexError, match="out of range"):
        attention.run_attention(run, [64])


def test_cli_writes_a_png_and_names_the_technique(tiny_store, tmp_path, capsys):
    vit, cnn = run_of(tiny_store, "vit_mini"), run_of(tiny_store, "convnet")
    out = tmp_path / "pictures" / "attention.png"
    code = main(["attention", vit.id, "--index", "3", "--out", str(out), "--threshold", "0.6",
                 "--runs-dir", str(tiny_store.root)])
    printed = capsys.readouterr().out
    assert code == 0 and f"wrote {out}" in printed and "ViT attention" in printed
    one = Image.open(io.BytesIO(out.read_bytes()))
    assert one.format == "PNG"

    both = tmp_path / "both.png"
    assert main(["attention", vit.id, "--index", "3", "--out", str(both), "--run-b", cnn.id,
                 "--runs-dir", str(tiny_store.root)]) == 0
    printed = capsys.readouterr().out
    assert "embedding-similarity saliency (not attention" in printed
    assert Image.open(both).height > one.height  # two rows: one per run

    assert main(["attention", vit.id, "--index", "999", "--out", str(out), "--runs-dir", str(tiny_store.root)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["attention", vit.id, "--index", "0", "--out", str(tmp_path / "a.jpg"),
                 "--runs-dir", str(tiny_store.root)]) == 2
    assert ".png" in capsys.readouterr().err


def test_cli_in_mask_share_is_a_share_of_the_mask(tiny_store, capsys):
    run = run_of(tiny_store, "vit_mini")
    assert main(["attention", run.id, "--in-mask", "--runs-dir", str(tiny_store.root)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 16
    assert 0 < result["mask_area"] < 1 and 0 < result["in_mask_mean_attention"] < 1
    # A random-init ViT attends almost uniformly: its in-mask share is close to the mask's area.
    assert abs(result["in_mask_mean_attention"] - result["mask_area"]) < 0.05, result


@pytest.mark.skipif(not all((PRETRAINED / name / "checkpoint.pt").exists() for name in (TRAINED_VIT, RANDOM_VIT)),
                    reason=f"the bundled ViT runs are made by `python pretrained/make_pretrained.py {TRAINED_VIT} "
                           f"{RANDOM_VIT}`")
def test_a_trained_vit_attends_to_the_shape_more_than_a_random_one():
    store = RunStore(PRETRAINED)  # read only: the share is computed, nothing is written
    trained = attention.in_mask_attention(store.get(TRAINED_VIT), limit=300)
    random = attention.in_mask_attention(store.get(RANDOM_VIT), limit=300)
    assert trained["mask_area"] == random["mask_area"]  # the same 300 test images
    message = (f"in-mask share of the mean CLS attention: trained {trained['in_mask_mean_attention']:.3f}, "
               f"random {random['in_mask_mean_attention']:.3f} (mask area {random['mask_area']:.3f})")
    assert trained["in_mask_mean_attention"] > random["in_mask_mean_attention"] + 0.05, message
    assert trained["in_mask_mean_attention"] > trained["mask_area"] + 0.05, message
