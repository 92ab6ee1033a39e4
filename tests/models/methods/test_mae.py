"""MAE: patch order, masking, a loss that only counts hidden patches, an encoder that only sees
the visible ones."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.backbones.vit import VisionTransformer
from ssl_core.models.methods.mae import MAE, mae_loss, patchify, random_masking


def small_vit() -> VisionTransformer:
    """vit_tiny's class at a fraction of its size (4-px patches, 8x8 grid), for speed."""
    torch.manual_seed(0)
    return VisionTransformer(32, patch_size=4, dim=24, depth=2, heads=3).eval()


def small_mae(**overrides) -> MAE:
    return MAE(small_vit(), MAE.Config(**overrides), resolution=32, num_classes=2,
               mean=(0.5,) * 3, std=(0.25,) * 3).eval()


def test_patchify_matches_a_loop_over_patches():
    x = torch.randn(2, 3, 8, 12)
    patches = patchify(x, 4)
    assert patches.shape == (2, 6, 48)
    for i in range(2):
        for j in range(3):
            expected = x[:, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].permute(0, 2, 3, 1).reshape(2, -1)
            torch.testing.assert_close(patches[:, 3 * i + j], expected)


def test_random_masking_keeps_a_quarter_and_repeats_under_a_seed():
    torch.manual_seed(1)
    keep, mask = random_masking(5, 64, 0.75, torch.device("cpu"))
    assert keep.shape == (5, 16) and mask.shape == (5, 64)
    for row in range(5):
        assert len(set(keep[row].tolist())) == 16
        assert set(torch.nonzero(~mask[row]).flatten().tolist()) == set(keep[row].tolist())
    torch.manual_seed(1)
    assert torch.equal(random_masking(5, 64, 0.75, torch.device("cpu"))[0], keep)


def naive_mae_loss(pred, patches, mask):
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            if mask[b, t]:
                p = patches[b, t].double()
                target = (p - p.mean()) / (p.var() + 1e-6).sqrt()
                total += float(((pred[b, t].double() - target) ** 2).mean())
                count += 1
    return total / count


def test_loss_matches_naive_reference_and_ignores_visible_patches():
    g = torch.Generator().manual_seed(0)
    pred, patches = torch.randn(3, 10, 12, generator=g), torch.randn(3, 10, 12, generator=g)
    mask = torch.rand(3, 10, generator=g) < 0.7
    loss = mae_loss(pred, patches, mask)
    assert loss.item() == pytest.approx(naive_mae_loss(pred, patches, mask), rel=1e-5)
    changed = pred.clone()
    changed[~mask] += 100.0  # any prediction for a visible patch
    assert mae_loss(changed, patches, mask).item() == pytest.approx(loss.item(), rel=1e-6)
    changed[mask] += 1.0
    assert mae_loss(changed, patches, mask).item() != pytest.approx(loss.item(), rel=1e-3)


def test_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, P\)"):
        mae_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        mae_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.ones(2, 4))


def test_vit_with_keep_ignores_hidden_patches_and_keep_all_is_the_full_forward():
    vit = small_vit()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(vit.forward_tokens(x, torch.arange(64).expand(2, 64)), vit.forward_tokens(x))
    keep = torch.tensor([[0, 5, 9], [63, 1, 2]])
    out = vit.forward_tokens(x, keep)
    assert out.shape == (2, 4, 24)
    y = x.clone()
    y[:, :, 12:16, 12:16] = 9.0  # patch 3*8+3 = 27, hidden in both images
    torch.testing.assert_close(vit.forward_tokens(y, keep), out)
    y[:, :, 0:4, 4:8] = 9.0  # patch 1: visible in the second image only
    changed = vit.forward_tokens(y, keep)
    assert not torch.allclose(changed[1], out[1]) and torch.allclose(changed[0], out[0])


def test_encode_pools_patch_tokens_or_the_cls_token():
    x = torch.randn(2, 3, 32, 32)
    mean, cls = small_mae(), small_mae(pool="cls")
    tokens = mean.backbone.forward_tokens(x)
    torch.testing.assert_close(mean.encode(x), tokens[:, 1:].mean(1))
    torch.testing.assert_close(cls.encode(x), tokens[:, 0])
    with pytest.raises(ValueError, match="pool"):
        small_mae(pool="max")
