"""Barlow Twins: make the cross-correlation of two views' embeddings the identity matrix.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021.
The diagonal term makes each embedding dimension invariant to the augmentations; the
off-diagonal term decorrelates the dimensions, which rules out collapse without negatives,
a momentum encoder or a predictor.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.heads import mlp

def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float, eps: float = 1e-5) -> dict[str, Tensor]:
    """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2 (paper eq. 1-2).

    z1, z2: (B, D) embeddings of two views of the same B images. Each dimension is standardised
    over the batch (the paper's affine-free batch norm: biased variance, `eps` inside the root),
    so C = z1_n^T z2_n / B is the (D, D) cross-correlation matrix, with entries in [-1, 1].
    Returns {"loss": scalar, "on_diagonal", "off_diagonal": the two unweighted sums, detached}.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"the cross-correlation needs a batch of at least 2; got {z1.shape[0]}")
    if lambd < 0:
        raise ValueError(f"lambd must be >= 0; got {lambd}")

    def standardise(z: Tensor) -> Tensor:
        z = z.float()
        return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)

    c = standardise(z1).T @ standardise(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return {"loss": on_diag + lambd * off_diag, "on_diagonal": on_diag.detach(), "off_diagonal": off_diag.detach()}


def barlow_twins_projector(in_dim: int, hidden_dim: int = 1024, out_dim: int = 1024):
    """Three linear layers, BN + ReLU after the first two (paper sec. 2: 8192-8192-8192)."""
    return mlp(in_dim, hidden_dim, out_dim, layers=3, batch_norm=True)


@dataclasses.dataclass
class BarlowTwinsConfig(MethodConfig):
    # Paper: 8192 wide. On mnist5k at 600 steps 2048 wide fell to kNN 0.856 from 0.889 at 1024
    # (random init 0.876; bench/results/recipes_cpu.md), and a CPU run pays for the width.
    proj_hidden_dim: int = 1024
    proj_dim: int = 1024  # paper: 8192 (accuracy still rose with width there)
    # Off-diagonal weight: the paper's 5e-3, unscaled. Scaling it as 1/D from the paper's 8192
    # dims (0.04 at 1024) keeps lambd * D fixed but ignores the batch: the off-diagonal noise floor
    # is ~D^2 / B, so lambd * D / B is the paper's 0.02 at B = 256 with 5e-3, and 8x more with 0.04.
    # Measured on shapes (2048 images, batch 128, 64 steps, kNN top-1; random init 0.16):
    # 0.04 -> 0.13, 5e-3 -> 0.15, 1e-3 (= 1/D) -> 0.13.
    lambd: float = 5e-3
    # Both views: SimCLR's shapes-tuned recipe (crops keep half the image, hue all the way round);
    # the paper takes BYOL's augmentations, whose blur is dropped at 32 px.
    views: dict = dataclasses.field(default_factory=lambda: {"crop_scale": (0.5, 1.0), "hue": 0.5})
    # Applied on top of `views` for the second view only: BYOL's asymmetric solarization.
    second_view: dict = dataclasses.field(default_factory=lambda: {"solarize_p": 0.2})


@register_method
class BarlowTwins(Method):
    name = "barlow_twins"
    family = "redundancy-reduction"
    description = "cross-correlation of two views' embeddings pushed to the identity (Zbontar et al. 2021)"
    Config = BarlowTwinsConfig

    def __init__(self, backbone, cfg: BarlowTwinsConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.projector = barlow_twins_projector(backbone.out_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.view_cfgs = (augment.ViewConfig(**cfg.views), augment.ViewConfig(**{**cfg.views, **cfg.second_view}))

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        views = [self.normalize(augment.make_views(images_u8, v, self.resolution)) for v in self.view_cfgs]
        z1, z2 = self.projector(self.encode(torch.cat(views))).chunk(2)
        return barlow_twins_loss(z1, z2, self.cfg.lambd)
