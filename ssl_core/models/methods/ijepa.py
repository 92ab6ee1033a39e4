"""I-JEPA: from one large context block, predict the representations of four target blocks.

Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive
Architecture", CVPR 2023. The context encoder (the ViT) sees the context block minus the target
regions; an EMA copy (the target encoder) sees the whole image; a narrow transformer predictor
turns context tokens plus positioned mask tokens into the targets' layer-normed features.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.backbones.vit import Block
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.momentum import cosine_momentum, ema_update, frozen_copy


def _block_side(scale: tuple[float, float], aspect: tuple[float, float], grid: int) -> tuple[int, int]:
    """One block size (rows, cols) for the whole batch, as the paper's collator draws it. Drawn
    from the global CPU generator: the sizes shape the tensors, so they are needed on the host."""
    s = torch.empty(1).uniform_(*scale).item()
    a = math.exp(torch.empty(1).uniform_(math.log(aspect[0]), math.log(aspect[1])).item())
    area = s * grid * grid
    rows = min(grid, max(1, round(math.sqrt(area / a))))
    cols = min(grid, max(1, round(math.sqrt(area * a))))
    return rows, cols


def _place_blocks(batch: int, count: int, rows: int, cols: int, grid: int, device: torch.device) -> Tensor:
    """Patch indices (B, count, rows * cols) of `count` blocks per image at random positions."""
    top = torch.randint(0, grid - rows + 1, (batch, count, 1, 1), device=device)
    left = torch.randint(0, grid - cols + 1, (batch, count, 1, 1), device=device)
    r = torch.arange(rows, device=device).view(1, 1, rows, 1)
    c = torch.arange(cols, device=device).view(1, 1, 1, cols)
    return ((top + r) * grid + left + c).flatten(2)


def sample_masks(batch: int, grid: int, device: torch.device, num_targets: int = 4,
                 target_scale=(0.15, 0.2), target_aspect=(0.75, 1.5), context_scale=(0.85, 1.0)
                 ) -> tuple[Tensor, Tensor]:
    """I-JEPA's multi-block masks on a grid x grid patch grid.

    Returns context (B, K) patch indices and targets (B, num_targets, N) patch indices. All
    targets share one size per batch; the context is one square block per image with every
    target patch removed, cut to the smallest count in the batch (K) by a random subset, as the
    paper's collator truncates. An image whose context the targets cover entirely would keep
    one target patch (K >= 1); at these scales that is rare.
    """
    rows, cols = _block_side(target_scale, target_aspect, grid)
    targets = _place_blocks(batch, num_targets, rows, cols, grid, device)
    side, _ = _block_side(context_scale, (1.0, 1.0), grid)
    in_context = torch.zeros(batch, grid * grid, device=device)
    in_context.scatter_(1, _place_blocks(batch, 1, side, side, grid, device)[:, 0], 1.0)
    in_context.scatter_(1, targets.flatten(1), 0.0)
    k = max(1, int(in_context.sum(dim=1).min()))  # one host sync: K shapes the encoder's input
    # Context patches score in [1, 1.5), others in [0, 0.5): top-k is a random subset of context.
    scores = in_context + 0.5 * torch.rand(batch, grid * grid, device=device)
    return scores.topk(k, dim=1).indices.sort(dim=1).values, targets


def ijepa_loss(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """Regression of predicted on target token features: "mse" (the paper's L2) or "smooth_l1"
    (what the official code, facebookresearch/ijepa, trains with). pred, target: (B, N, D) -> scalar."""
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be (B, N, D); "
                         f"got {tuple(pred.shape)} and {tuple(target.shape)}")
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred.float(), target.float())
    if kind != "mse":
        raise ValueError(f"unknown I-JEPA loss '{kind}'; known: mse, smooth_l1")
    return F.mse_loss(pred.float(), target.float())


class Predictor(nn.Module):
    """Context tokens (B, K, enc_dim) at positions (B, K) -> predicted features (B, N, enc_dim)
    at target positions (B, N): a narrow ViT over context tokens and positioned mask tokens."""

    def __init__(self, enc_dim: int, num_patches: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, enc_dim)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, context_idx: Tensor, target_idx: Tensor) -> Tensor:
        pos = self.pos_embed.expand(context.shape[0], -1, -1)
        at = lambda idx: pos.gather(1, idx[:, :, None].expand(-1, -1, pos.shape[-1]))  # noqa: E731
        x = torch.cat((self.embed(context) + at(context_idx), self.mask_token + at(target_idx)), dim=1)
        for block in self.blocks:
            x, _ = block(x)
        return self.head(self.norm(x[:, context.shape[1]:]))


@dataclasses.dataclass
class IJEPAConfig(MethodConfig):
    num_targets: int = 4  # target blocks per image, as in the paper
    target_scale: tuple = (0.15, 0.2)  # each target block's share of the patch grid (paper)
    target_aspect: tuple = (0.75, 1.5)  # target block width/height (paper)
    context_scale: tuple = (0.85, 1.0)  # the square context block, before targets are cut out
    predictor_dim: int = 96  # narrow, as the paper's (384 wide for ViT-H's 1280)
    predictor_depth: int = 4  # the paper: 12 for ViT-H; scaled with the 12-block ViT-Tiny
    predictor_heads: int = 3
    ema_start: float = 0.996  # target encoder momentum, raised toward ema_end over training
    ema_end: float = 1.0
    loss: str = "mse"  # mse (the paper) | smooth_l1 (the official code)
    # Crops only: I-JEPA uses no hand-made view augmentation beyond resized crops (0.3-1.0).
    views: dict = dataclasses.field(default_factory=lambda: {
        "crop_scale": (0.3, 1.0), "flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0})


@register_method
class IJEPA(Method):
    name = "ijepa"
    family = "predictive-coding"
    description = "predict target blocks' features (EMA encoder) from a context block (Assran et al. 2023)"
    backbones = ("vit_tiny", "vit_mini")
    Config = IJEPAConfig

    def __init__(self, backbone, cfg: IJEPAConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if not 0 <= cfg.ema_start <= cfg.ema_end <= 1:
            raise ValueError(f"need 0 <= ema_start <= ema_end <= 1; got {cfg.ema_start}, {cfg.ema_end}")
        self.grid = math.isqrt(backbone.num_patches)
        self.predictor = Predictor(backbone.out_dim, backbone.num_patches, cfg.predictor_dim,
                                   cfg.predictor_depth, cfg.predictor_heads)
        self.target_encoder = frozen_copy(backbone)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        cfg, b = self.cfg, x.shape[0]
        context_idx, target_idx = sample_masks(b, self.grid, x.device, cfg.num_targets, tuple(cfg.target_scale),
                                               tuple(cfg.target_aspect), tuple(cfg.context_scale))
        m, n = target_idx.shape[1:]
        with torch.no_grad():
            h = self.target_encoder.forward_tokens(x)[:, 1:]
            h = F.layer_norm(h.float(), h.shape[-1:])
            target = h.gather(1, target_idx.flatten(1)[:, :, None].expand(-1, -1, h.shape[-1]))
        context = self.backbone.forward_tokens(x, context_idx)[:, 1:]  # the CLS token is not used
        # One predictor pass per target block, all blocks batched: (B*M, K + N) tokens.
        rep = lambda t: t.repeat_interleave(m, dim=0)  # noqa: E731
        pred = self.predictor(rep(context), rep(context_idx), target_idx.reshape(b * m, n))
        return {"loss": ijepa_loss(pred, target.reshape(b * m, n, -1), cfg.loss),
                "context_patches": torch.tensor(float(context_idx.shape[1]))}

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        # Cosine schedule from ema_start to ema_end (BYOL's; the paper's code raises it linearly),
        # read after the step just taken.
        m = cosine_momentum(step + 1, max(1, total_steps), self.cfg.ema_start, self.cfg.ema_end)
        ema_update(self.target_encoder, self.backbone, m)

    def encode(self, images: Tensor) -> Tensor:
        # The paper evaluates the target encoder, its patch tokens average-pooled.
        return self.target_encoder.forward_tokens(images)[:, 1:].mean(dim=1)

    def representation_module(self) -> nn.Module:
        return self.target_encoder  # what `encode` reads: probes, fine-tuning and maps use it too

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        return self.target_encoder.forward_layers(images, pool="mean")  # pooled as `encode` pools

    @property
    def layer_pooling(self) -> str:
        return self.target_encoder.mean_layer_pooling
