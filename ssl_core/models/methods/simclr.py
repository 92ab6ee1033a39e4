"""SimCLR: two augmented views of each image, pulled together against the rest of the batch.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020.
The loss is NT-Xent (InfoNCE over 2B-2 in-batch negatives).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.heads import simclr_projection


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Normalized-temperature cross entropy (SimCLR eq. 1), averaged over all 2B anchors.

    z1, z2: (B, D) projections of two views; row i of z1 and row i of z2 are the positive pair,
    every other row of either view is a negative. Returns a scalar.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    # An anchor is never its own negative.
    logits.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, positives)


@dataclasses.dataclass
class SimCLRConfig(MethodConfig):
    temperature: float = 0.2  # 0.5 in the paper's CIFAR runs at batch 512-4096; smaller batches like lower
    proj_hidden_dim: int = 512  # projection head width
    proj_dim: int = 128  # projection output, as in the paper
    # BatchNorm on the head's output (SimCLR v2's code, lightly's head). Off: with it and lightly's
    # temperature 0.5, mnist5k at 600 steps (bench/results/recipes_cpu.md; random init 0.876) fell
    # from kNN 0.905 to 0.884.
    proj_last_batch_norm: bool = False
    # Overrides of augment.ViewConfig. At 32 px a small object can cover a tenth of the frame,
    # so crops keep at least half the image (the paper's CIFAR runs: 0.08), and hue turns all the
    # way round so colour cannot identify an image (paper: 0.1). Measured on shapes, 128 steps:
    # kNN top-1 0.24 with both, 0.20 with crops alone, 0.16 with neither (random init: 0.15). On
    # mnist5k at 600 steps crops of 0.2-1 gave 0.894 against 0.905 (bench/results/recipes_cpu.md).
    views: dict = dataclasses.field(default_factory=lambda: {"crop_scale": (0.5, 1.0), "hue": 0.5})


@register_method
class SimCLR(Method):
    name = "simclr"
    family = "contrastive"
    description = "two augmented views per image, NT-Xent against in-batch negatives (Chen et al. 2020)"
    Config = SimCLRConfig

    def __init__(self, backbone, cfg: SimCLRConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.projector = simclr_projection(backbone.out_dim, cfg.proj_hidden_dim, cfg.proj_dim,
                                           last_batch_norm=cfg.proj_last_batch_norm)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        both = augment.make_views(torch.cat([images_u8, images_u8]), self.view_cfg, self.resolution)
        z1, z2 = self.projector(self.encode(self.normalize(both))).chunk(2)
        return {"loss": nt_xent(z1, z2, self.cfg.temperature)}
