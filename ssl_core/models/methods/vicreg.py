"""VICReg: invariance between two views, plus a variance hinge and a covariance penalty on each.

Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022. The variance term keeps every embedding dimension's batch
standard deviation at or above 1 (no collapse); the covariance term decorrelates dimensions
(no dimensional collapse); neither needs negatives, a momentum encoder or shared batch norm.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.heads import mlp


def variance_term(z: Tensor, eps: float = 1e-4) -> Tensor:
    """mean_j relu(1 - sqrt(Var(z_j) + eps)) over the D dimensions of z (B, D); unbiased variance."""
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(1 - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """sum_{i != j} Cov(z)_ij^2 / D for z (B, D), with the unbiased (B - 1) covariance."""
    z = z - z.mean(dim=0)
    cov = z.T @ z / (z.shape[0] - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / z.shape[1]


def vicreg_loss(z1: Tensor, z2: Tensor, invariance: float = 25.0, variance: float = 25.0,
                covariance: float = 1.0, eps: float = 1e-4) -> dict[str, Tensor]:
    """The weighted sum of the three terms (paper eq. 6) and each unweighted term.

    z1, z2: (B, D) embeddings of two views of the same B images. Invariance is the mean squared
    error between them; the variance and covariance terms are computed on each view and summed
    (the variance terms are averaged, as in the official code). Returns {"loss": scalar,
    "invariance", "variance", "covariance": detached scalars}.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape[0] < 2:
        raise ValueError(f"variance and covariance need a batch of at least 2; got {z1.shape[0]}")
    if min(invariance, variance, covariance) < 0 or eps <= 0:
        raise ValueError(f"weights must be >= 0 and eps > 0; got {invariance}, {variance}, {covariance}, eps {eps}")
    z1, z2 = z1.float(), z2.float()
    inv = F.mse_loss(z1, z2)
    var = (variance_term(z1, eps) + variance_term(z2, eps)) / 2
    cov = covariance_term(z1) + covariance_term(z2)
    loss = invariance * inv + variance * var + covariance * cov
    return {"loss": loss, "invariance": inv.detach(), "variance": var.detach(), "covariance": cov.detach()}


def vicreg_expander(in_dim: int, hidden_dim: int = 1024, out_dim: int = 1024):
    """Three linear layers, BN + ReLU after the first two (paper sec. 4.1: 8192-8192-8192)."""
    return mlp(in_dim, hidden_dim, out_dim, layers=3, batch_norm=True)


@dataclasses.dataclass
class VICRegConfig(MethodConfig):
    invariance: float = 25.0  # lambda in the paper
    variance: float = 25.0  # mu
    covariance: float = 1.0  # nu
    eps: float = 1e-4  # inside the square root of the variance hinge
    proj_hidden_dim: int = 1024  # paper: 8192; scaled down for 32 px and CPU runs
    proj_dim: int = 1024  # paper: 8192
    # Both views: SimCLR's shapes-tuned recipe (crops keep half the image, hue all the way round);
    # the paper takes BYOL's augmentations, whose blur is dropped at 32 px.
    views: dict = dataclasses.field(default_factory=lambda: {"crop_scale": (0.5, 1.0), "hue": 0.5})
    # Applied on top of `views` for the second view only: BYOL's asymmetric solarization.
    second_view: dict = dataclasses.field(default_factory=lambda: {"solarize_p": 0.2})


@register_method
class VICReg(Method):
    name = "vicreg"
    family = "redundancy-reduction"
    description = "invariance + variance hinge + covariance decorrelation of two views (Bardes et al. 2022)"
    Config = VICRegConfig

    def __init__(self, backbone, cfg: VICRegConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.expander = vicreg_expander(backbone.out_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.view_cfgs = (augment.ViewConfig(**cfg.views), augment.ViewConfig(**{**cfg.views, **cfg.second_view}))

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        views = [self.normalize(augment.make_views(images_u8, v, self.resolution)) for v in self.view_cfgs]
        z1, z2 = self.expander(self.encode(torch.cat(views))).chunk(2)
        c = self.cfg
        return vicreg_loss(z1, z2, c.invariance, c.variance, c.covariance, c.eps)
