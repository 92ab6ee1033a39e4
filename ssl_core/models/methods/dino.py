"""DINO: a student matches the centred, sharpened output distribution of its EMA teacher on other views.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021.
Collapse is avoided by centring (stops one dimension dominating) against sharpening (stops the
uniform output); the teacher is an EMA of the student (momentum 0.996 -> 1 on a cosine in the
paper; `momentum_share_left` scales the base by the run's length instead), and the paper's code
freezes the head's last layer for the first epoch (`freeze_last_layer_epochs`; off here, see it).

A slow starter: at initialisation the teacher's centred outputs are nearly uniform (on `shapes`,
convnet, entropy 8.06-8.26 against log K = 8.32) and what varies is mostly view-specific, so the
student first learns little; a 64-step CPU run stays at the random-init kNN or a little below.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.momentum import ema_update, frozen_copy, run_momentum
from ssl_core.models.methods.heads import mlp


def dino_loss(student: Tensor, teacher: Tensor, center: Tensor, student_temp: float,
              teacher_temp: float | Tensor) -> Tensor:
    """Cross-entropy between teacher and student distributions (DINO eq. 1 and algorithm 1).

    student: (S, B, K) logits of S views, the T global views first; teacher: (T, B, K) logits
    of the global views (detached); center: (K,) or (1, K). The teacher is centred and sharpened,
    softmax((teacher - center) / teacher_temp); the student is softmax(student / student_temp).
    Every teacher view t is paired with every student view s != t; returns the mean over pairs
    of the batch-mean cross-entropy -sum_k P_t log P_s. teacher_temp may be a 0-d tensor (a
    schedule kept on the device, not checked here, to avoid a host sync).
    """
    if student.ndim != 3 or teacher.ndim != 3 or student.shape[1:] != teacher.shape[1:]:
        raise ValueError(f"student must be (S, B, K) and teacher (T, B, K); got {tuple(student.shape)} "
                         f"and {tuple(teacher.shape)}")
    if teacher.shape[0] > student.shape[0] or (teacher.shape[0] == 1 and student.shape[0] == 1):
        raise ValueError(f"need at least as many student views as teacher views, and a pair of different "
                         f"views; got S={student.shape[0]}, T={teacher.shape[0]}")
    if student_temp <= 0 or (not isinstance(teacher_temp, Tensor) and teacher_temp <= 0):
        raise ValueError(f"temperatures must be positive; got {student_temp} and {teacher_temp}")
    targets = F.softmax((teacher.detach().float() - center.reshape(1, 1, -1)) / teacher_temp, dim=-1)
    log_probs = F.log_softmax(student.float() / student_temp, dim=-1)
    # (T, S): batch-mean cross-entropy of every teacher view against every student view.
    ce = -torch.einsum("tbk,sbk->ts", targets, log_probs) / student.shape[1]
    same_view = torch.eye(teacher.shape[0], student.shape[0], dtype=torch.bool, device=ce.device)
    return ce[~same_view].mean()


def update_center(center: Tensor, teacher: Tensor, momentum: float) -> Tensor:
    """DINO's centre: momentum * center + (1 - momentum) * the mean teacher logit vector.

    center: (K,); teacher: (..., K) logits of all teacher views. Returns the new (K,) centre.
    """
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1]; got {momentum}")
    batch_mean = teacher.detach().float().reshape(-1, teacher.shape[-1]).mean(dim=0)
    return center * momentum + batch_mean * (1 - momentum)


class DINOHead(nn.Module):
    """MLP (3 layers) -> bottleneck -> L2-normalize -> weight-normalized Linear to K outputs.

    The last layer's weight norm is fixed to 1 (DINO's norm_last_layer=True), so its outputs
    are cosines between the bottleneck and K learned directions. The MLP uses ReLU (heads.mlp)
    where DINO uses GELU; BatchNorm after its hidden layers is DINO's `use_bn_in_head` option.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 4096,
                 batch_norm: bool = False):
        super().__init__()
        self.mlp = mlp(in_dim, hidden_dim, bottleneck_dim, layers=3, batch_norm=batch_norm)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):  # DINO's initialisation
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.last_layer = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_layer, std=0.02)

    def forward(self, x: Tensor, freeze_last_layer: bool = False) -> Tensor:
        """freeze_last_layer: the last layer gets a zero gradient (DINO's first epoch). Zero, not
        none, so DistributedDataParallel still finds a gradient for every parameter; weight decay
        still shrinks it, which its row normalisation undoes: what it computes does not change."""
        z = F.normalize(self.mlp(x), dim=-1)
        weight = self.last_layer.detach() + 0 * self.last_layer if freeze_last_layer else self.last_layer
        return z @ F.normalize(weight, dim=1).T


def encode_crop(backbone: nn.Module, x: Tensor) -> Tensor:
    """Backbone features of crops of any size. A ViT gets its position embeddings bicubically
    resized to the crop's patch grid, as DINO does for its small local crops."""
    if not hasattr(backbone, "pos_embed") or x.shape[-1] == backbone.resolution:
        return backbone(x)
    grid = x.shape[-1] // backbone.patch_size
    patches = backbone.patch_embed(x).flatten(2).transpose(1, 2)  # (B, grid*grid, dim)
    cls_pos, patch_pos = backbone.pos_embed[:, :1], backbone.pos_embed[:, 1:]
    side, dim = math.isqrt(patch_pos.shape[1]), patch_pos.shape[2]
    patch_pos = F.interpolate(patch_pos.reshape(1, side, side, dim).permute(0, 3, 1, 2), size=(grid, grid),
                              mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, dim)
    tokens = torch.cat([backbone.cls_token.expand(len(x), -1, -1), patches], dim=1)
    tokens = tokens + torch.cat([cls_pos, patch_pos], dim=1)
    for block in backbone.blocks:
        tokens, _ = block(tokens)
    return backbone.norm(tokens)[:, 0]


# DINO's augmentations (BYOL's) at 32 px: crops, flips, colour jitter (0.4, 0.4, 0.2, hue) p=0.8,
# grayscale p=0.2; global views blur p=1.0 / 0.1 and solarize p=0.0 / 0.2, local views blur
# p=0.5. As in SimCLR's 32-px recipe here, global crops keep half the image and hue turns all
# the way round. Blur is off: its 0.1-2 px sigma at 224 px is 0.01-0.3 px at 32 px, a no-op
# that still costs a convolution.
_DINO_VIEW = {"crop_scale": (0.5, 1.0), "brightness": 0.4, "contrast": 0.4, "saturation": 0.2, "hue": 0.5,
              "blur_p": 0.0}


@dataclasses.dataclass
class DINOConfig(MethodConfig):
    # K prototypes (paper: 65,536) and BatchNorm in the head MLP (DINO's --use_bn_in_head, which its
    # ResNet runs use): LightlySSL's CIFAR-10 recipe, K 2048 with BN. Measured at 600 steps, one
    # invocation (bench/results/recipes_cpu.md): kNN top-1 on mnist5k 0.807 -> 0.875 (random init
    # 0.876), on shapes 0.127 -> 0.203 (random init 0.148); before, K 4096 without BN. On a ViT
    # too, although the paper's ViT heads have no BN: vit_mini, mnist5k, 600 steps, 0.485 with BN,
    # 0.354 without (random init 0.331).
    out_dim: int = 2048
    hidden_dim: int = 2048  # head MLP width, as in the paper
    bottleneck_dim: int = 256  # as in the paper
    head_batch_norm: bool = True
    earlier_defaults: ClassVar[dict[str, Any]] = {"out_dim": 4096, "head_batch_norm": False}
    student_temp: float = 0.1
    teacher_temp: float = 0.04  # after warm-up; the paper goes up to 0.07 for long runs
    warmup_teacher_temp: float = 0.04  # teacher temperature at step 0, linearly raised to teacher_temp
    warmup_teacher_temp_fraction: float = 0.3  # of the run (paper: 30 epochs of 100-300)
    center_momentum: float = 0.9
    base_momentum: float = 0.996  # teacher EMA at step 0, raised to 1 on a cosine, in long runs (the paper's)
    # Share of the initial (random) teacher still in it halfway through the run: sets the base
    # from the run's length (at most base_momentum; 0.1: 0.963 at 150 steps, 0.991 at 600, 0.996
    # from ~1,450). None: base_momentum at every length. None because no share beat the fixed base
    # at both budgets; mnist5k, convnet, kNN top-1 (random init 0.876), 150 steps: fixed 0.996
    # 0.845, share 0.001 0.831, 0.01 0.860, 0.1 0.871, 0.3 0.854 (shapes: 0.122 -> 0.141 with 0.1,
    # random 0.148); 570 steps: fixed 0.996 0.799, share 0.1 0.771
    # (bench/results/distillation_momentum_cpu.md).
    momentum_share_left: float | None = None
    # Epochs in which the last layer gets no update (paper's code: 1). 0 because it did not help
    # here: mnist5k, fixed 0.996, kNN top-1 0.845 -> 0.830 at 150 steps, 0.799 -> 0.803 at 570.
    freeze_last_layer_epochs: int = 0
    n_local_crops: int = 0  # multi-crop: small student-only views (paper: 10; 0 keeps CPU runs fast)
    local_crop_size: int = 16  # local views' side in px (paper: 96 of 224)
    # Global crop scale: paper (0.4, 1) with multi-crop, (0.14, 1) without; (0.5, 1) at 32 px.
    views1: dict = dataclasses.field(default_factory=lambda: {**_DINO_VIEW, "solarize_p": 0.0})
    views2: dict = dataclasses.field(default_factory=lambda: {**_DINO_VIEW, "solarize_p": 0.2})
    local_views: dict = dataclasses.field(default_factory=lambda: {**_DINO_VIEW, "crop_scale": (0.05, 0.4)})


@register_method
class DINO(Method):
    name = "dino"
    family = "distillation"
    description = "match an EMA teacher's centred, sharpened softmax over prototypes (Caron et al. 2021)"
    Config = DINOConfig
    # The paper's base rate (5e-4 at batch 256). 600 steps of batch 128, convnet, kNN top-1 against
    # random init: mnist5k 0.904 at 5e-4, 0.875 at the default 2e-3 (floor 0.876); shapes 0.189 at
    # 5e-4, 0.203 at 2e-3 (floor 0.148): above the floor on both only at 5e-4
    # (bench/results/recipes_cpu.md).
    train_recipe = {"lr": 5e-4}

    def __init__(self, backbone, cfg: DINOConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.n_local_crops < 0 or cfg.local_crop_size < 1:
            raise ValueError(f"n_local_crops must be >= 0 and local_crop_size >= 1; got "
                             f"{cfg.n_local_crops} and {cfg.local_crop_size}")
        if min(cfg.student_temp, cfg.teacher_temp, cfg.warmup_teacher_temp) <= 0:
            raise ValueError(f"temperatures must be positive; got student {cfg.student_temp}, teacher "
                             f"{cfg.teacher_temp}, warm-up teacher {cfg.warmup_teacher_temp}")
        if cfg.momentum_share_left is not None and not 0 < cfg.momentum_share_left < 1:
            raise ValueError(f"momentum_share_left must be in (0, 1) or None; got {cfg.momentum_share_left}")
        if cfg.freeze_last_layer_epochs < 0:
            raise ValueError(f"freeze_last_layer_epochs must be >= 0; got {cfg.freeze_last_layer_epochs}")
        if not 0 <= cfg.warmup_teacher_temp_fraction <= 1:
            raise ValueError(f"warmup_teacher_temp_fraction must be in [0, 1]; "
                             f"got {cfg.warmup_teacher_temp_fraction}")
        self.head = DINOHead(backbone.out_dim, cfg.hidden_dim, cfg.bottleneck_dim, cfg.out_dim,
                             cfg.head_batch_norm)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(cfg.out_dim))
        # Fraction of the run done; a buffer so the temperature schedule survives a resume.
        self.register_buffer("progress", torch.zeros(()))
        # Whether the next step leaves the last layer alone; set by after_step, which knows the
        # epoch. None until then: a fresh run (progress 0) starts frozen, a resumed one does not
        # (not a buffer, so checkpoints of earlier versions still load; a run resumed inside its
        # first epoch updates the last layer on its first resumed step).
        self.last_layer_frozen: bool | None = None
        self.global_views = (augment.ViewConfig(**cfg.views1), augment.ViewConfig(**cfg.views2))
        self.local_view = augment.ViewConfig(**cfg.local_views)

    def current_teacher_temp(self) -> Tensor | float:
        """The teacher temperature now: linear from warmup_teacher_temp to teacher_temp."""
        c = self.cfg
        if not c.warmup_teacher_temp_fraction:
            return c.teacher_temp
        ramp = (self.progress / c.warmup_teacher_temp_fraction).clamp(max=1)
        return c.warmup_teacher_temp + (c.teacher_temp - c.warmup_teacher_temp) * ramp

    def make_views(self, images_u8: Tensor) -> tuple[Tensor, Tensor | None]:
        """uint8 (B, H, W, 3) -> normalized global views (2B, 3, R, R), view 1 then view 2, and
        local views (n_local_crops * B, 3, r, r) at local_crop_size (None without multi-crop)."""
        x = torch.cat([augment.make_views(images_u8, v, self.resolution) for v in self.global_views])
        local = None
        if self.cfg.n_local_crops:
            local = augment.make_views(images_u8.repeat(self.cfg.n_local_crops, 1, 1, 1), self.local_view,
                                       self.cfg.local_crop_size)
            local = self.normalize(local)
        return self.normalize(x), local

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        b = len(images_u8)
        x, local = self.make_views(images_u8)
        if self.last_layer_frozen is None:
            self.last_layer_frozen = self.cfg.freeze_last_layer_epochs > 0 and float(self.progress) == 0
        frozen = self.last_layer_frozen
        student = self.head(self.backbone(x), frozen).view(2, b, -1)
        if local is not None:
            local_out = self.head(encode_crop(self.backbone, local), frozen).view(self.cfg.n_local_crops, b, -1)
            student = torch.cat([student, local_out])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(x)).view(2, b, -1).float()
        temp = self.current_teacher_temp()
        cross_entropy = dino_loss(student, teacher, self.center, self.cfg.student_temp, temp)
        targets = F.softmax((teacher - self.center) / temp, dim=-1)
        teacher_entropy = -(targets * targets.clamp_min(1e-12).log()).sum(dim=-1).mean()
        self.center.copy_(update_center(self.center, teacher, self.cfg.center_momentum))
        # Reported loss: KL(teacher || student) = cross-entropy - teacher entropy. Same gradient
        # (the teacher entropy is a constant for the student), but it measures what the student
        # controls: the cross-entropy also climbs as centring spreads the teacher out (toward log K
        # early on), even while the student gets closer. DINO's fig. 7 monitors both terms.
        return {"loss": cross_entropy - teacher_entropy, "cross_entropy": cross_entropy.detach(),
                "teacher_entropy": teacher_entropy}

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        momentum = run_momentum(step, total_steps, self.cfg.base_momentum, self.cfg.momentum_share_left)
        ema_update(self.teacher_backbone, self.backbone, momentum)
        ema_update(self.teacher_head, self.head, momentum)
        self.progress.fill_((step + 1) / max(total_steps, 1))
        # Without epochs (steps_per_epoch None) only the first step was frozen.
        freeze_steps = self.cfg.freeze_last_layer_epochs * (steps_per_epoch or 0)
        self.last_layer_frozen = step + 1 < freeze_steps
