"""Barlow Twins loss against a naive per-entry reading of the paper's equations, and its fixed point."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_core.models.methods.barlow_twins import barlow_twins_loss


def naive_barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float, eps: float = 1e-5) -> float:
    z1, z2 = z1.double().tolist(), z2.double().tolist()
    b, d = len(z1), len(z1[0])

    def standardised(z, j):
        column = [z[n][j] for n in range(b)]
        mean = sum(column) / b
        std = math.sqrt(sum((v - mean) ** 2 for v in column) / b + eps)
        return [(v - mean) / std for v in column]

    a = [standardised(z1, j) for j in range(d)]
    c = [standardised(z2, j) for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            cij = sum(a[i][n] * c[j][n] for n in range(b)) / b
            total += (1 - cij) ** 2 if i == j else lambd * cij**2
    return total


@pytest.mark.parametrize("batch,dim,lambd", [(4, 3, 5e-3), (9, 6, 0.1), (16, 2, 1.0)])
def test_matches_naive_reference(batch, dim, lambd):
    g = torch.Generator().manual_seed(batch)
    z1 = torch.randn(batch, dim, generator=g) * 3 + 1
    z2 = z1 + torch.randn(batch, dim, generator=g)
    assert barlow_twins_loss(z1, z2, lambd)["loss"].item() == pytest.approx(naive_barlow_twins(z1, z2, lambd), rel=1e-5)


def decorrelated(batch: int = 8) -> torch.Tensor:
    """Columns 1.. of a Hadamard matrix: zero mean, unit variance, mutually orthogonal."""
    h = torch.tensor([[1.0]])
    while len(h) < batch:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)])
    return h[:, 1:]


def test_zero_for_identical_decorrelated_embeddings():
    # The cross-correlation of such an embedding with itself is exactly the identity.
    z = decorrelated() * 2.5 + 7  # scale and shift do not matter after standardising
    assert barlow_twins_loss(z, z, lambd=1.0)["loss"].item() < 1e-8


def test_each_term_is_penalised():
    z = decorrelated()[:, :4]
    redundant = torch.cat([z, z], 1)  # perfectly invariant, but dimensions repeat each other
    out = barlow_twins_loss(redundant, redundant, lambd=0.1)
    assert out["on_diagonal"].item() < 1e-6
    # Each of the 8 dimensions correlates perfectly with its copy: 8 off-diagonal entries of 1.
    assert out["off_diagonal"].item() == pytest.approx(8, rel=1e-3)
    assert out["loss"].item() == pytest.approx(0.1 * 8, rel=1e-3)
    h = decorrelated()
    not_invariant = barlow_twins_loss(h[:, :3], h[:, 3:6], lambd=1.0)  # views uncorrelated with each other
    assert not_invariant["on_diagonal"].item() == pytest.approx(3, rel=1e-3)
    assert not_invariant["off_diagonal"].item() < 1e-8


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 2), 0.1)
    with pytest.raises(ValueError, match="at least 2"):
        barlow_twins_loss(torch.randn(1, 3), torch.randn(1, 3), 0.1)
    with pytest.raises(ValueError, match="lambd"):
        barlow_twins_loss(torch.randn(4, 3), torch.randn(4, 3), -1.0)
