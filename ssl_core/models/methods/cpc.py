"""Contrastive predictive coding: from the patches above, predict the encodings of patches below.

van den Oord, Li and Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018;
Hénaff et al., "Data-Efficient Image Recognition with Contrastive Predictive Coding" (CPC v2),
ICML 2020. Each image is cut into a grid of half-overlapping patches, the backbone encodes every
patch, a causal context network summarises the rows at and above each position, and a linear
map per offset predicts the encoding of the patch `offset` rows below; InfoNCE scores the true
patch against every other patch of the batch (`grid_info_nce`). As in CPC v2, the same is done
bottom-up and in both horizontal directions (the feature grid is rotated, the context network
shared), and each patch gets its own colour jitter and greyscale, so matching low-level colour
cues does not pay.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method


def grid_info_nce(predictions: Tensor, z: Tensor, offset: int) -> Tensor:
    """InfoNCE of predictions `offset` rows ahead on a patch grid (CPC eq. 4), as a scalar.

    z: (B, D, R, K) patch encodings. predictions: (B, D, R - offset, K), made at rows
    0 .. R - offset - 1; the prediction at (b, r, k) targets z[b, :, r + offset, k], and every
    other patch of the batch (B * R * K - 1 of them, its own image included) is a negative. Scores
    are plain dot products; the loss is the mean cross-entropy over all B * (R - offset) * K
    predictions.
    """
    if z.ndim != 4 or not 0 < offset < z.shape[2]:
        raise ValueError(f"z must be (B, D, R, K) with 0 < offset < R; got {tuple(z.shape)}, offset {offset}")
    b, d, rows, cols = z.shape
    if predictions.shape != (b, d, rows - offset, cols):
        raise ValueError(f"predictions must be {(b, d, rows - offset, cols)}; got {tuple(predictions.shape)}")
    candidates = z.float().permute(0, 2, 3, 1).reshape(-1, d)  # row b*R*K + r*K + k is patch (b, r, k)
    index = torch.arange(b * rows * cols, device=z.device).view(b, rows, cols)
    logits = predictions.float().permute(0, 2, 3, 1).reshape(-1, d) @ candidates.T
    return F.cross_entropy(logits, index[:, offset:].reshape(-1))


def patch_grid(x: Tensor, size: int, stride: int) -> Tensor:
    """Images (B, C, H, W) -> patches (B, R, K, C, size, size); patch (r, k) starts at pixel
    (r * stride, k * stride)."""
    if (x.shape[-2] - size) % stride or (x.shape[-1] - size) % stride or size > min(x.shape[-2:]):
        raise ValueError(f"{size}-px patches at stride {stride} do not tile {tuple(x.shape[-2:])} images")
    return x.unfold(2, size, stride).unfold(3, size, stride).permute(0, 2, 3, 1, 4, 5)


class CausalContext(nn.Module):
    """Feature grid (B, D, R, K) -> context (B, hidden, R, K): position (r, k) sees only rows <= r.

    Each layer is a (2, 3) convolution padded one row at the top only (a PixelCNN-style masked
    convolution over the grid), so context flows down and sideways but never up.
    """

    def __init__(self, in_dim: int, hidden_dim: int, layers: int = 2):
        super().__init__()
        self.inp = nn.Conv2d(in_dim, hidden_dim, 1)
        self.convs = nn.ModuleList(nn.Conv2d(hidden_dim, hidden_dim, (2, 3)) for _ in range(layers))

    def forward(self, z: Tensor) -> Tensor:
        h = self.inp(z)
        for conv in self.convs:
            h = h + conv(F.relu(F.pad(h, (1, 1, 1, 0))))  # pad (left, right, top, bottom)
        return h


@dataclasses.dataclass
class CPCConfig(MethodConfig):
    patch_size: int = 16  # at 32 px: a 3x3 grid (CPC v2: 64-px patches, 7x7 grid at 256 px)
    stride: int = 8  # half a patch, as in both papers
    # Rows between context and target. Half-overlapping patches share pixels with the row just
    # below, so offset 1 can be solved by matching pixels; from 2 on they share none (as in
    # lightning-bolts' CPC v2). Offset 1 did as well on shapes (kNN 0.18 vs 0.17 at 64 steps, within
    # noise) thanks to per-patch colour jitter, with 3x the predictions.
    min_offset: int = 2
    directions: int = 4  # 1: top-down only; 4: also bottom-up and both horizontals (CPC v2)
    context_dim: int = 256  # width of the context network
    context_layers: int = 2  # masked convolutions; 2 already see the whole 3x3 grid above
    # Whole-image view before cutting: crops and flips (CPC v2 crops and flips too).
    views: dict = dataclasses.field(default_factory=lambda: {
        "crop_scale": (0.5, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})
    # Colour jitter and greyscale per patch (CPC v2: colour dropping and jitter per patch); only
    # the colour fields of augment.ViewConfig are read, hue turning all the way round.
    patch_views: dict = dataclasses.field(default_factory=lambda: {"hue": 0.5})


@register_method
class CPC(Method):
    name = "cpc"
    family = "predictive-coding"
    description = "predict patch encodings below from a causal context of patches above, InfoNCE (Hénaff et al. 2020)"
    backbones = ("convnet", "resnet18")  # vit_tiny's 4-px patches would be 2 px on a 16-px patch
    Config = CPCConfig

    def __init__(self, backbone, cfg: CPCConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.patch_size > self.resolution or (self.resolution - cfg.patch_size) % cfg.stride:
            raise ValueError(f"{cfg.patch_size}-px patches at stride {cfg.stride} do not tile "
                             f"{self.resolution}-px images; pick patch_size and stride that do")
        rows = (self.resolution - cfg.patch_size) // cfg.stride + 1
        if cfg.directions not in (1, 2, 4):
            raise ValueError(f"directions must be 1, 2 or 4; got {cfg.directions}")
        if rows <= cfg.min_offset or cfg.min_offset < 1:
            raise ValueError(f"a {rows}-row patch grid leaves nothing to predict at min_offset {cfg.min_offset}")
        self.offsets = list(range(cfg.min_offset, rows))
        self.context = CausalContext(backbone.out_dim, cfg.context_dim, cfg.context_layers)
        # One prediction map W_k per (direction, offset), as the paper's W_k per offset.
        self.predictors = nn.ModuleList(nn.Conv2d(cfg.context_dim, backbone.out_dim, 1)
                                        for _ in range(cfg.directions * len(self.offsets)))
        self.view_cfg = augment.ViewConfig(**cfg.views)
        self.patch_cfg = augment.ViewConfig(**cfg.patch_views)

    def grid_features(self, patches: Tensor) -> Tensor:
        """Normalized patches (B, R, K, 3, s, s) -> their encodings as a grid (B, D, R, K)."""
        b, r, k = patches.shape[:3]
        z = self.backbone(patches.reshape(b * r * k, *patches.shape[3:]))
        return z.view(b, r, k, -1).permute(0, 3, 1, 2)

    def encode(self, images: Tensor) -> Tensor:
        # Mean of the patch encodings: the backbone saw only patches in training, so a patch at
        # the trained scale, not the whole image, is what its features describe. On shapes after
        # 64 steps: kNN 0.17 this way, 0.15 with the backbone on the whole image.
        return self.grid_features(patch_grid(images, self.cfg.patch_size, self.cfg.stride)).mean(dim=(2, 3))

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        """Each backbone layer of every patch, averaged over the patch grid, as `encode` averages."""
        patches = patch_grid(images, self.cfg.patch_size, self.cfg.stride)
        b, cells = patches.shape[0], patches.shape[1] * patches.shape[2]
        layers = self.backbone.forward_layers(patches.reshape(b * cells, *patches.shape[3:]))
        return {name: v.view(b, cells, -1).mean(dim=1) for name, v in layers.items()}

    @property
    def layer_pooling(self) -> str:
        return (f"{self.backbone.layer_pooling}, on each {self.cfg.patch_size}-px patch, averaged over the "
                "patch grid (as the embedding)")

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        patches = patch_grid(augment.make_views(images_u8, self.view_cfg, self.resolution),
                             self.cfg.patch_size, self.cfg.stride)
        # Colour jitter and greyscale drawn for each patch on its own (in [0, 1], before normalizing).
        c, flat = self.patch_cfg, patches.reshape(-1, *patches.shape[3:])
        flat = augment.color_jitter(flat, c.brightness, c.contrast, c.saturation, c.hue, p=c.jitter_p)
        flat = augment.random_grayscale(flat, c.grayscale_p)
        z = self.grid_features(self.normalize(flat).view_as(patches))
        losses = []
        for direction in range(self.cfg.directions):
            # Turning the grid by 90 degrees makes "down" each of the four directions in turn.
            zd = torch.rot90(z, direction * (4 // self.cfg.directions), dims=(2, 3))
            context = self.context(zd)
            for i, offset in enumerate(self.offsets):
                predictor = self.predictors[direction * len(self.offsets) + i]
                losses.append(grid_info_nce(predictor(context[:, :, :zd.shape[2] - offset]), zd, offset))
        return {"loss": torch.stack(losses).mean()}
