"""NT-Xent against a naive, loop-by-loop reading of SimCLR's equation 1."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_core.models.methods.simclr import nt_xent


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = F.normalize(torch.cat([z1, z2]), dim=1).double()
    n = len(z)
    b = n // 2
    total = 0.0
    for i in range(n):
        j = (i + b) % n
        sim = lambda a, c: float(z[a] @ z[c]) / temperature  # noqa: E731
        denominator = sum(math.exp(sim(i, k)) for k in range(n) if k != i)
        total += -math.log(math.exp(sim(i, j)) / denominator)
    return total / n


@pytest.mark.parametrize("batch,dim,temperature", [(2, 3, 0.5), (5, 8, 0.1), (16, 4, 1.0)])
def test_matches_naive_reference(batch, dim, temperature):
    g = torch.Generator().manual_seed(batch)
    z1, z2 = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
    assert nt_xent(z1, z2, temperature).item() == pytest.approx(naive_nt_xent(z1, z2, temperature), rel=1e-5)


def test_perfect_pairs_score_lower_than_random_pairs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 16, generator=g)
    assert nt_xent(z, z, 0.1) < nt_xent(z, torch.randn(8, 16, generator=g), 0.1)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.randn(2, 3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        nt_xent(torch.randn(2, 3), torch.randn(3, 3), 0.5)


def test_the_head_ends_in_batch_norm_only_when_asked():
    from ssl_core.models.methods import build_method

    plain = build_method({"name": "simclr"}, "convnet", resolution=32, num_classes=2).projector
    normed = build_method({"name": "simclr", "proj_last_batch_norm": True}, "convnet", resolution=32,
                          num_classes=2).projector
    assert isinstance(plain[-1], torch.nn.Linear) and plain[-1].bias is not None
    assert isinstance(normed[-1], torch.nn.BatchNorm1d) and normed[-2].bias is None
    normed.train()
    z = normed(torch.randn(16, 256))
    torch.testing.assert_close(z.mean(0), torch.zeros(128), atol=1e-5, rtol=0)  # batch statistics
