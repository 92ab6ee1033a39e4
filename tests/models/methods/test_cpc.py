"""CPC's InfoNCE against a naive loop over predictions and candidates; the grid and causality."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.methods import build_method
from ssl_core.models.methods.cpc import CausalContext, grid_info_nce, patch_grid


def naive_grid_info_nce(pred: torch.Tensor, z: torch.Tensor, offset: int) -> float:
    b, d, rows, cols = z.shape
    patches = [(n, r, c) for n in range(b) for r in range(rows) for c in range(cols)]
    total, count = 0.0, 0
    for n in range(b):
        for r in range(rows - offset):
            for c in range(cols):
                p = pred[n, :, r, c].double()
                score = lambda q: float(p @ z[q[0], :, q[1], q[2]].double())  # noqa: E731
                positive = score((n, r + offset, c))
                total += -(positive - math.log(sum(math.exp(score(q)) for q in patches)))
                count += 1
    return total / count


@pytest.mark.parametrize("b,d,rows,offset", [(2, 3, 3, 1), (3, 4, 3, 2), (2, 5, 4, 2)])
def test_matches_naive_reference(b, d, rows, offset):
    g = torch.Generator().manual_seed(b * 10 + rows)
    z = torch.randn(b, d, rows, rows + 1, generator=g)  # non-square, so rows and columns cannot be confused
    pred = torch.randn(b, d, rows - offset, rows + 1, generator=g)
    assert grid_info_nce(pred, z, offset).item() == pytest.approx(naive_grid_info_nce(pred, z, offset), rel=1e-5)


def test_perfect_predictions_score_lower_than_shifted_ones():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 16, 3, 3, generator=g) * 3
    assert grid_info_nce(z[:, :, 2:], z, 2) < 0.01 < grid_info_nce(z[:, :, 1:2], z, 2)


def test_patch_grid_cuts_the_overlapping_patches():
    x = torch.rand(2, 3, 32, 32)
    patches = patch_grid(x, 16, 8)
    assert patches.shape == (2, 3, 3, 3, 16, 16)
    for r in range(3):
        for c in range(3):
            assert torch.equal(patches[:, r, c], x[:, :, 8 * r:8 * r + 16, 8 * c:8 * c + 16])
    with pytest.raises(ValueError, match="do not tile"):
        patch_grid(x, 16, 5)


def test_context_at_a_row_never_sees_the_rows_below():
    torch.manual_seed(0)
    context = CausalContext(in_dim=4, hidden_dim=8, layers=2)
    z = torch.randn(1, 4, 4, 4)
    changed = z.clone()
    changed[:, :, 2] += 1  # perturb row 2
    diff = (context(changed) - context(z)).abs().amax(dim=(0, 1, 3))  # per row
    assert diff[:2].max() == 0 and diff[2:].min() > 0


def test_encode_is_the_mean_of_the_patch_encodings():
    torch.manual_seed(0)
    model = build_method({"name": "cpc"}, "convnet", resolution=32, num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    each = [model.backbone(x[:, :, 8 * r:8 * r + 16, 8 * c:8 * c + 16]) for r in range(3) for c in range(3)]
    assert torch.allclose(model.encode(x), torch.stack(each).mean(0), atol=1e-5)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="offset"):
        grid_info_nce(torch.randn(2, 3, 0, 3), torch.randn(2, 3, 3, 3), 3)
    with pytest.raises(ValueError, match="predictions must be"):
        grid_info_nce(torch.randn(2, 3, 2, 3), torch.randn(2, 3, 3, 3), 2)
    with pytest.raises(ValueError, match="nothing to predict"):
        build_method({"name": "cpc", "min_offset": 3}, "convnet", resolution=32, num_classes=2)
    with pytest.raises(ValueError, match="do not tile"):
        build_method({"name": "cpc"}, "convnet", resolution=28, num_classes=2)
