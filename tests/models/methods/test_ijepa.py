"""I-JEPA: block masks with the paper's shapes, a context that excludes the targets, a target
encoder that gets no gradient and follows the context encoder by EMA."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.backbones.vit import VisionTransformer
from ssl_core.models.methods.ijepa import IJEPA, ijepa_loss, sample_masks

CPU = torch.device("cpu")


@pytest.mark.parametrize("seed", range(5))
def test_targets_are_equal_rectangles_and_the_context_avoids_them(seed):
    torch.manual_seed(seed)
    context, targets = sample_masks(16, 8, CPU)
    assert targets.shape[:2] == (16, 4)
    n = targets.shape[2]
    assert 0.15 * 64 / 1.6 <= n <= 0.2 * 64 * 1.6  # scale 0.15-0.2 of 64 patches, up to rounding
    for b in range(16):
        for block in targets[b].tolist():
            rows, cols = {i // 8 for i in block}, {i % 8 for i in block}
            assert len(rows) * len(cols) == n == len(set(block))  # a full rectangle
            assert max(rows) - min(rows) + 1 == len(rows) and max(cols) - min(cols) + 1 == len(cols)
            aspect = len(cols) / len(rows)
            assert 0.75 / 1.6 <= aspect <= 1.5 * 1.6
        kept = context[b].tolist()
        assert kept == sorted(set(kept))  # sorted, no repeats
        if context.shape[1] > 1:
            assert not set(kept) & set(targets[b].flatten().tolist())


def test_masks_repeat_under_the_same_seed():
    torch.manual_seed(3)
    first = sample_masks(8, 8, CPU)
    torch.manual_seed(3)
    second = sample_masks(8, 8, CPU)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_context_is_most_of_the_image_without_targets():
    torch.manual_seed(0)
    context, _ = sample_masks(1, 8, CPU, num_targets=1, target_scale=(0.01, 0.01))
    # One 1-patch target; a 7x7 or 8x8 context block loses at most that patch.
    assert context.shape[1] >= 48


def test_loss_is_the_mean_squared_error():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    naive = sum(float((pred[i, j, k] - target[i, j, k]) ** 2)
                for i in range(2) for j in range(3) for k in range(4)) / 24
    assert ijepa_loss(pred, target).item() == pytest.approx(naive, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        ijepa_loss(pred, target[:, :2])


def test_smooth_l1_is_quadratic_near_the_target_and_linear_far_from_it():
    target = torch.zeros(1, 1, 2)
    pred = torch.tensor([[[0.5, 3.0]]])  # |d| < 1: d^2 / 2; |d| >= 1: |d| - 1/2
    assert ijepa_loss(pred, target, "smooth_l1").item() == pytest.approx((0.125 + 2.5) / 2)
    with pytest.raises(ValueError, match="mse, smooth_l1"):
        ijepa_loss(pred, target, "l3")


def small_ijepa() -> IJEPA:
    """I-JEPA over vit_tiny's class at a fraction of its size (8x8 grid of 4-px patches)."""
    torch.manual_seed(0)
    vit = VisionTransformer(32, patch_size=4, dim=24, depth=2, heads=3)
    return IJEPA(vit, IJEPA.Config(predictor_dim=12, predictor_depth=1), resolution=32, num_classes=2,
                 mean=(0.5,) * 3, std=(0.25,) * 3)


def test_target_encoder_gets_no_gradient_and_moves_by_ema():
    method = small_ijepa()
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    method.training_step(images, None)["loss"].backward()
    assert all(p.grad is None for p in method.target_encoder.parameters())
    assert method.backbone.patch_embed.weight.grad.abs().sum() > 0
    before = [p.clone() for p in method.target_encoder.parameters()]
    optimizer.step()
    step, total = 3, 10
    method.after_step(step, total)
    m = 1.0 - 0.004 * (math.cos(math.pi * (step + 1) / total) + 1) / 2
    for old, new, online in zip(before, method.target_encoder.parameters(), method.backbone.parameters()):
        torch.testing.assert_close(new, m * old + (1 - m) * online)
    assert not torch.equal(before[0], method.backbone.patch_embed.weight)  # the online one moved


def test_encode_average_pools_the_target_encoders_patch_tokens():
    method = small_ijepa().eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(method.encode(x), method.target_encoder.forward_tokens(x)[:, 1:].mean(1))
