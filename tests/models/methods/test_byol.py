"""BYOL: the normalized MSE against a naive reference; the target gets no gradient and moves by EMA."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.methods import build_method
from ssl_core.models.methods.byol import byol_loss
from ssl_core.models.methods.momentum import base_for_share, cosine_momentum, ema_update, run_momentum


def naive_byol_loss(p: torch.Tensor, z: torch.Tensor) -> float:
    total = 0.0
    for pi, zi in zip(p.double(), z.double()):
        diff = pi / pi.norm() - zi / zi.norm()
        total += float((diff * diff).sum())
    return total / len(p)


@pytest.mark.parametrize("batch,dim", [(1, 2), (5, 8), (16, 3)])
def test_matches_naive_reference(batch, dim):
    g = torch.Generator().manual_seed(batch)
    p, z = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    assert byol_loss(p, z).item() == pytest.approx(naive_byol_loss(p, z), rel=1e-5)


def test_zero_when_aligned_four_when_opposite_and_no_gradient_to_the_target():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g, requires_grad=True)
    scale = torch.rand(6, 1, generator=g) + 0.5
    assert byol_loss(z.detach() * scale, z).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(-z.detach() * scale, z).item() == pytest.approx(4.0, abs=1e-5)
    p = torch.randn(6, 4, generator=g, requires_grad=True)
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        byol_loss(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="momentum"):
        ema_update(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), 1.5)


def test_cosine_momentum_rises_from_base_to_one():
    values = [cosine_momentum(k, 100, 0.99) for k in range(101)]
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0)
    assert values[50] == pytest.approx(0.995)
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert cosine_momentum(3, 0, 0.9) == 0.9  # no steps to schedule over: the base
    assert math.isclose(cosine_momentum(250, 100, 0.9), 1.0)  # clamped past the end


def test_target_gets_no_gradient_and_moves_by_ema():
    torch.manual_seed(0)
    model = build_method({"name": "byol"}, "convnet", resolution=32, num_classes=2)
    online = list(model.backbone.parameters()) + list(model.projector.parameters())
    target = list(model.target_backbone.parameters()) + list(model.target_projector.parameters())
    assert all(torch.equal(o, t) for o, t in zip(online, target))  # starts as a copy
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model.training_step(images, None)["loss"].backward()
    assert all(t.grad is None and not t.requires_grad for t in target)
    assert all(p.grad is not None for p in model.predictor.parameters())
    with torch.no_grad():
        for p in online:
            p.add_(torch.randn_like(p))
    before = [t.clone() for t in target]
    model.after_step(3, 10)
    m = run_momentum(3, 10, model.cfg.base_momentum, model.cfg.momentum_share_left)
    for old, t, o in zip(before, target, online):
        torch.testing.assert_close(t, m * old + (1 - m) * o)


def test_views_are_asymmetric_as_in_the_paper():
    torch.manual_seed(0)
    model = build_method({"name": "byol"}, "convnet", resolution=32, num_classes=2)
    first, second = model.view_cfgs
    assert (first.solarize_p, second.solarize_p) == (0.0, 0.2)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert model.make_views(images).shape == (8, 3, 32, 32)


def test_base_momentum_scales_with_the_run_length():
    """The same share of the initial target is left halfway through a short run and a long one;
    beyond the length where that base reaches the paper's, the paper's base is kept."""
    shares = []
    for total in (100, 1000):
        base = base_for_share(total, 0.01, 0.5, 0.996)
        momenta = [run_momentum(k, total, 0.996, 0.01) for k in range(total // 2)]
        assert momenta[0] == pytest.approx(base) and base < 0.996
        shares.append(math.prod(momenta))
    assert shares == pytest.approx([0.01, 0.01], rel=1e-6)
    assert base_for_share(100, 0.01) < base_for_share(1000, 0.01)  # a longer run moves its target slower
    assert run_momentum(0, 100_000, 0.996, 0.01) == 0.996  # long runs: the paper's base
    assert run_momentum(0, 100, 0.996, None) == 0.996  # no share: the fixed base
