"""VICReg's three terms against a naive loop-based reading of the paper (eq. 1-6) and their zeros."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.methods.vicreg import covariance_term, variance_term, vicreg_loss


def naive_vicreg(z1, z2, lam, mu, nu, eps=1e-4) -> float:
    def stats(z):
        b, d = len(z), len(z[0])
        means = [sum(z[n][j] for n in range(b)) / b for j in range(d)]
        cov = [[sum((z[n][i] - means[i]) * (z[n][j] - means[j]) for n in range(b)) / (b - 1)
                for j in range(d)] for i in range(d)]
        var = sum(max(0.0, 1 - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d
        off = sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
        return var, off

    z1, z2 = z1.double().tolist(), z2.double().tolist()
    b, d = len(z1), len(z1[0])
    inv = sum((z1[n][j] - z2[n][j]) ** 2 for n in range(b) for j in range(d)) / (b * d)
    (v1, c1), (v2, c2) = stats(z1), stats(z2)
    return lam * inv + mu * (v1 + v2) / 2 + nu * (c1 + c2)


@pytest.mark.parametrize("batch,dim,scale", [(4, 3, 0.5), (10, 5, 1.7), (16, 8, 0.2)])
def test_matches_naive_reference(batch, dim, scale):
    g = torch.Generator().manual_seed(batch)
    z1 = torch.randn(batch, dim, generator=g) * scale  # some dims below std 1, some above
    z2 = z1 + 0.3 * torch.randn(batch, dim, generator=g)
    out = vicreg_loss(z1, z2, 25.0, 25.0, 1.0)
    assert out["loss"].item() == pytest.approx(naive_vicreg(z1, z2, 25.0, 25.0, 1.0), rel=1e-5)
    assert 25 * out["invariance"] + 25 * out["variance"] + out["covariance"] == pytest.approx(out["loss"].item())


def test_variance_term_is_zero_at_or_above_std_one_and_near_one_when_collapsed():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 6, generator=g)
    z = (z - z.mean(0)) / z.std(0)  # every dimension exactly at std 1
    assert variance_term(z).item() == 0.0
    assert variance_term(3 * z).item() == 0.0
    assert variance_term(0.5 * z).item() == pytest.approx(0.5, abs=1e-3)
    collapsed = torch.ones(256, 6)
    assert variance_term(collapsed).item() == pytest.approx(1 - math.sqrt(1e-4))


def test_covariance_term_is_zero_for_decorrelated_dimensions_only():
    h = torch.tensor([[1.0]])
    for _ in range(3):  # 8x8 Hadamard: its columns 1..7 are centred and mutually orthogonal
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    assert covariance_term(h[:, 1:] * 4).item() < 1e-10
    redundant = torch.cat([h[:, 1:2], h[:, 1:2]], 1)  # two copies of one dimension: Cov = 8/7 off the diagonal
    assert covariance_term(redundant).item() == pytest.approx(2 * (8 / 7) ** 2 / 2)


def test_invariance_is_zero_for_identical_views():
    z = torch.randn(8, 4)
    assert vicreg_loss(z, z)["invariance"].item() == 0.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        vicreg_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="weights"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 3), invariance=-1.0)
