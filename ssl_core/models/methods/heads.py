"""Projection and prediction heads: one MLP builder, thin factories with each paper's sizes."""

from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_batch_norm: bool = False) -> nn.Sequential:
    """Linear(-BN)-ReLU blocks then a final Linear (and BatchNorm, with `last_batch_norm`):
    in_dim -> hidden_dim ... -> out_dim."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least 1 layer; got {layers}")
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        blocks.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
        if batch_norm:
            blocks.append(nn.BatchNorm1d(hidden_dim))
        blocks.append(nn.ReLU(inplace=True))
        dim = hidden_dim
    blocks.append(nn.Linear(dim, out_dim, bias=not last_batch_norm))
    if last_batch_norm:
        blocks.append(nn.BatchNorm1d(out_dim))
    return nn.Sequential(*blocks)


def simclr_projection(in_dim: int, hidden_dim: int = 512, out_dim: int = 128,
                      last_batch_norm: bool = False) -> nn.Sequential:
    """SimCLR's 2-layer head (Chen et al. 2020, sec. 2.1: 128-d output); `last_batch_norm` adds
    the BatchNorm on the output that SimCLR v2's code and lightly's SimCLRProjectionHead use."""
    return mlp(in_dim, hidden_dim, out_dim, layers=2, last_batch_norm=last_batch_norm)
