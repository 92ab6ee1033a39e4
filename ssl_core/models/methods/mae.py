"""MAE: hide most patches, encode the visible ones, redraw the hidden ones' pixels.

He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022. The encoder (the ViT)
sees only the 25% visible patches; a narrow decoder fills in mask tokens and predicts each
masked patch's pixels, normalized per patch; the loss counts masked patches only.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.backbones.vit import Block
from ssl_core.models.methods.base import Method, MethodConfig, register_method


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, T, patch_size**2 * C), patches in row-major order (as the ViT's
    patch embedding flattens them), each patch's pixels as (row, column, channel)."""
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image {h}x{w} is not a whole number of {patch_size}-px patches")
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), -1)


def random_masking(batch: int, num_patches: int, mask_ratio: float,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """Per image, a uniformly random subset of patches stays visible (MAE's shuffle-and-keep).

    Returns keep (B, K) visible patch indices, K = round(T * (1 - mask_ratio)) >= 1, and
    mask (B, T) bool, True where a patch is hidden. Draws from torch's global RNG on `device`.
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be in [0, 1); got {mask_ratio}")
    visible = max(1, round(num_patches * (1 - mask_ratio)))
    keep = torch.rand(batch, num_patches, device=device).argsort(dim=1)[:, :visible]
    mask = torch.ones(batch, num_patches, dtype=torch.bool, device=device)
    mask.scatter_(1, keep, False)
    return keep, mask


def mae_loss(pred: Tensor, patches: Tensor, mask: Tensor, norm_pix: bool = True, eps: float = 1e-6) -> Tensor:
    """Mean squared error per patch, averaged over the masked patches only (MAE eq. in sec. 3).

    pred, patches: (B, T, P) predicted and true pixels per patch; mask: (B, T) bool, True where
    hidden. norm_pix: each true patch is normalized by its own mean and variance first (the
    paper's better-performing target). Returns a scalar.
    """
    if pred.shape != patches.shape or pred.ndim != 3:
        raise ValueError(f"pred and patches must both be (B, T, P); "
                         f"got {tuple(pred.shape)} and {tuple(patches.shape)}")
    if mask.shape != pred.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (B, T) = {tuple(pred.shape[:2])}; "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    target = patches.float()
    if norm_pix:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + eps).sqrt()
    per_patch = (pred.float() - target).square().mean(dim=-1)
    weight = mask.float()
    return (per_patch * weight).sum() / weight.sum().clamp_min(1)


class MAEDecoder(nn.Module):
    """Encoded CLS + visible tokens (B, 1 + K, enc_dim) -> pixels of every patch (B, T, P).

    Mask tokens take the hidden places, every token gets a (learned) decoder position
    embedding, then a few pre-norm transformer blocks and a linear map to pixels.
    """

    def __init__(self, enc_dim: int, num_patches: int, patch_pixels: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, patch_pixels)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: Tensor, keep: Tensor, num_patches: int) -> Tensor:
        x = self.embed(tokens)
        b, dim = x.shape[0], x.shape[-1]
        patches = self.mask_token.to(x.dtype).expand(b, num_patches, dim).clone()
        patches.scatter_(1, keep[:, :, None].expand(-1, -1, dim), x[:, 1:])  # visible ones back in place
        x = torch.cat((x[:, :1], patches), dim=1) + self.pos_embed
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.norm(x))[:, 1:]


@dataclasses.dataclass
class MAEConfig(MethodConfig):
    mask_ratio: float = 0.75  # fraction of patches hidden, as in the paper: 16 of 64 stay visible
    decoder_dim: int = 128  # the paper's decoder is 512 wide for a 768-1024 encoder; ours 192
    decoder_depth: int = 2  # the paper: 8 blocks, but 1 block already linear-probes well (Table 1a)
    decoder_heads: int = 4
    norm_pix_loss: bool = True  # per-patch normalized pixel targets (the paper's default)
    # "mean": average of the patch tokens; "cls": the CLS token. Mean by default: MAE's loss
    # reaches the patch tokens, while the CLS token gets no signal of its own.
    pool: str = "mean"
    # Crops and flips only, as in the paper (0.2-1.0 crops); masking is the augmentation.
    views: dict = dataclasses.field(default_factory=lambda: {
        "crop_scale": (0.2, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})


@register_method
class MAE(Method):
    name = "mae"
    family = "masked-prediction"
    description = "the ViT sees 25% of patches, a small decoder redraws the hidden ones' pixels (He et al. 2022)"
    backbones = ("vit_tiny", "vit_mini")
    Config = MAEConfig

    def __init__(self, backbone, cfg: MAEConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls'; got {cfg.pool!r}")
        self.decoder = MAEDecoder(backbone.out_dim, backbone.num_patches, 3 * backbone.patch_size**2,
                                  cfg.decoder_dim, cfg.decoder_depth, cfg.decoder_heads)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        num_patches = self.backbone.num_patches
        keep, mask = random_masking(x.shape[0], num_patches, self.cfg.mask_ratio, x.device)
        pred = self.decoder(self.backbone.forward_tokens(x, keep), keep, num_patches)
        loss = mae_loss(pred, patchify(x, self.backbone.patch_size), mask, self.cfg.norm_pix_loss)
        return {"loss": loss}

    def encode(self, images: Tensor) -> Tensor:
        tokens = self.backbone.forward_tokens(images)  # the whole image, no masking
        return tokens[:, 0] if self.cfg.pool == "cls" else tokens[:, 1:].mean(dim=1)

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        return self.backbone.forward_layers(images, pool=self.cfg.pool)  # pooled as `encode` pools

    @property
    def layer_pooling(self) -> str:
        return self.backbone.layer_pooling if self.cfg.pool == "cls" else self.backbone.mean_layer_pooling
