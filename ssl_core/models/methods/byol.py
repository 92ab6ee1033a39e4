"""BYOL: an online network predicts a slowly moving (EMA) target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
No negatives: the predictor and the EMA target (momentum 0.99 -> 1 on a cosine) avoid collapse.
A slow starter: the online network first learns to predict a near-random target, whose output
is mostly view-specific; on `shapes` (convnet, AdamW 2e-3) its kNN falls below random init at
first and only climbs back to it after ~180 steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.heads import mlp
from ssl_core.models.methods.momentum import ema_update, frozen_copy, run_momentum


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Normalized MSE (BYOL eq. 2): mean over rows of ||p/|p| - z/|z|||^2 = 2 - 2 cos(p, z).

    p: (B, D) online predictions; z: (B, D) target projections of the other view, treated as
    constants (detached). Returns a scalar in [0, 4]; 0 when every p_i points along z_i.
    """
    if p.shape != z.shape or p.ndim != 2:
        raise ValueError(f"p and z must both be (B, D); got {tuple(p.shape)} and {tuple(z.shape)}")
    p = F.normalize(p.float(), dim=1)
    z = F.normalize(z.detach().float(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


def byol_projection(in_dim: int, hidden_dim: int = 1024, out_dim: int = 256) -> nn.Sequential:
    """BYOL's projector and predictor: Linear-BN-ReLU-Linear (paper: 4096 hidden, 256 out)."""
    return mlp(in_dim, hidden_dim, out_dim, layers=2, batch_norm=True)


# BYOL's augmentations (Grill et al., table 6) at 32 px. Both views: crops, flips, colour jitter
# (0.4, 0.4, 0.2, hue) with p=0.8, grayscale p=0.2; asymmetric blur p=1.0 / 0.1 and solarize
# p=0.0 / 0.2. As in SimCLR's 32-px recipe here, crops keep half the image (paper: 8%) and hue
# turns all the way round (paper: 0.1), so colour cannot identify a `shapes` image.
# Blur is off: the paper's sigma of 0.1-2.0 px belongs to 224-px images; scaled to 32 px it is
# 0.01-0.3 px, which changes nothing visible and still costs a convolution per view (solo-learn's
# CIFAR recipes drop it too). Set blur_p and blur_sigma in views1/views2 to put it back.
_BYOL_VIEW = {"crop_scale": (0.5, 1.0), "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.5,
              "blur_p": 0.0}


@dataclasses.dataclass
class BYOLConfig(MethodConfig):
    proj_hidden_dim: int = 1024  # projector and predictor width (paper: 4096 for a ResNet-50)
    proj_dim: int = 256  # projection size, as in the paper
    base_momentum: float = 0.99  # target EMA at step 0, raised to 1 on a cosine (paper: 0.996 for 300+ epochs)
    # Share of the initial (random) target still in it halfway through the run: sets the base from
    # the run's length (at most base_momentum), as DINO's may. None: base_momentum at every length.
    # Neither a share nor the paper's 0.996 beat 0.99 at both budgets; mnist5k, convnet, kNN top-1
    # (random init 0.876), 150 steps: 0.99 0.729, 0.996 0.765, share 0.001 0.719, 0.01 0.697, 0.1
    # 0.692, 0.3 0.715; 570 steps: 0.99 0.811, 0.996 0.790 (bench/results/distillation_momentum_cpu.md).
    momentum_share_left: float | None = None
    # At lr 2e-3 with the predictor at 1x (the recipe before) it stayed below its random-init floor
    # on mnist5k at 600 steps (kNN 0.798, random init 0.876), as does LightlySSL's own BYOL recipe
    # at that budget (0.785, bench/results/peer_parity_cpu.md); weight decay 0.05 made it worse.
    # The predictor's learning rate as a multiple of the run's: a predictor that adapts faster than
    # the encoder keeps BYOL from collapsing and speeds it up (Tian, Chen and Ganguli, "Understanding
    # self-supervised learning dynamics without contrastive pairs", ICML 2021; SimSiam's fixed-rate
    # predictor, Chen and He 2021). mnist5k, convnet, 600 steps at lr 5e-4, kNN top-1 (random init
    # 0.876): 0.891 at 1x, 0.913 at 10x (bench/results/recipes_cpu.md).
    predictor_lr_scale: float = 10.0
    views1: dict = dataclasses.field(default_factory=lambda: {**_BYOL_VIEW, "solarize_p": 0.0})
    views2: dict = dataclasses.field(default_factory=lambda: {**_BYOL_VIEW, "solarize_p": 0.2})
    earlier_defaults: ClassVar[dict[str, Any]] = {"predictor_lr_scale": 1.0}  # runs trained before it


@register_method
class BYOL(Method):
    name = "byol"
    family = "distillation"
    description = "predict an EMA target network's projection of another view, no negatives (Grill et al. 2020)"
    Config = BYOLConfig
    # mnist5k, convnet, 600 steps of batch 128, kNN top-1 (random init 0.876), predictor at 1x:
    # 0.867 at 2e-4, 0.859 at 5e-4, 0.798 at 2e-3, 0.760 at 5e-3 with flipped digits; 0.891 at 5e-4
    # and 0.838 at 2e-3 without (bench/results/recipes_cpu.md). The less it trained the closer it
    # stayed to its random init: 5e-4, with the faster predictor, is the first rate above it.
    train_recipe = {"lr": 5e-4}

    def __init__(self, backbone, cfg: BYOLConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if not 0 <= cfg.base_momentum <= 1:
            raise ValueError(f"base_momentum must be in [0, 1]; got {cfg.base_momentum}")
        if cfg.predictor_lr_scale <= 0:
            raise ValueError(f"predictor_lr_scale must be > 0; got {cfg.predictor_lr_scale}")
        if cfg.momentum_share_left is not None and not 0 < cfg.momentum_share_left < 1:
            raise ValueError(f"momentum_share_left must be in (0, 1) or None; got {cfg.momentum_share_left}")
        self.projector = byol_projection(backbone.out_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = byol_projection(cfg.proj_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.view_cfgs = (augment.ViewConfig(**cfg.views1), augment.ViewConfig(**cfg.views2))

    def lr_scales(self) -> dict[str, float]:
        return {"predictor": self.cfg.predictor_lr_scale} if self.cfg.predictor_lr_scale != 1 else {}

    def make_views(self, images_u8: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) -> normalized (2B, 3, R, R): the B first views, then the B second."""
        views = [augment.make_views(images_u8, v, self.resolution) for v in self.view_cfgs]
        return self.normalize(torch.cat(views))

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x = self.make_views(images_u8)
        p1, p2 = self.predictor(self.projector(self.backbone(x))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_backbone(x)).chunk(2)
        # Symmetrised as in the paper: each view's prediction targets the other view.
        loss = byol_loss(p1, z2) + byol_loss(p2, z1)
        return {"loss": loss}

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        momentum = run_momentum(step, total_steps, self.cfg.base_momentum, self.cfg.momentum_share_left)
        ema_update(self.target_backbone, self.backbone, momentum)
        ema_update(self.target_projector, self.projector, momentum)
