"""MoCo v2: queries contrast a momentum encoder's key of another view against a FIFO queue of old keys.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020; v2 (MLP
head, temperature 0.2, stronger augmentation): Chen et al., "Improved Baselines with Momentum
Contrastive Learning", arXiv:2003.04297, 2020.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method
from ssl_core.models.methods.momentum import cosine_momentum, ema_update, frozen_copy
from ssl_core.models.methods.heads import mlp


def moco_infonce(q: Tensor, k: Tensor, queue: Tensor, temperature: float, ignore: Tensor | None = None) -> Tensor:
    """InfoNCE with a queue of negatives (MoCo eq. 1), averaged over the B queries.

    q: (B, D) queries; k: (B, D) keys, row i the positive of query i (detached: keys carry no
    gradient); queue: (K, D) negatives, unit rows; ignore: optional (B, K) bool, True where
    queue_j is no negative of query i (drops the term). q and k are L2-normalized here. Returns
    mean_i -log exp(q_i.k_i / t) / (exp(q_i.k_i / t) + sum_j exp(q_i.queue_j / t)).
    """
    if q.shape != k.shape or q.ndim != 2:
        raise ValueError(f"q and k must both be (B, D); got {tuple(q.shape)} and {tuple(k.shape)}")
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must be (K, {q.shape[1]}); got {tuple(queue.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    q = F.normalize(q.float(), dim=1)
    k = F.normalize(k.detach().float(), dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (B, 1)
    negatives = q @ queue.detach().float().T  # (B, K)
    if ignore is not None:
        if ignore.shape != negatives.shape:
            raise ValueError(f"ignore must be (B, K) = {tuple(negatives.shape)}; got {tuple(ignore.shape)}")
        negatives = negatives.masked_fill(ignore, float("-inf"))
    logits = torch.cat([positive, negatives], dim=1) / temperature
    # The positive is column 0 for every query.
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


@torch.no_grad()
def enqueue(queue: Tensor, ptr: Tensor, keys: Tensor, ids: Tensor | None = None,
            queue_ids: Tensor | None = None) -> None:
    """FIFO, in place: write keys (B, D) over the B oldest rows of queue (K, D) starting at `ptr`
    (a 0-d long tensor, the oldest row), wrapping round, and advance `ptr`; `ids` (B,) go to the
    same rows of `queue_ids` (K,) when given.

    A tensor pointer keeps the update on the device (no host sync). With B > K only the last K
    keys are kept.
    """
    size = queue.shape[0]
    keys = keys[-size:]
    rows = (ptr + torch.arange(len(keys), device=queue.device)) % size
    queue[rows] = keys.to(queue.dtype)
    if ids is not None and queue_ids is not None:
        queue_ids[rows] = ids[-size:]
    ptr.copy_((ptr + len(keys)) % size)


def image_ids(images_u8: Tensor) -> Tensor:
    """uint8 (B, ...) -> (B,) int64 fingerprints: equal images, equal ids; others differ (almost surely).

    A fixed pseudo-random weight per pixel value, summed exactly in int64 (no overflow below
    ~10^7 values per image), so it runs on the device with no host sync.
    """
    flat = images_u8.reshape(len(images_u8), -1).long()
    weights = torch.arange(flat.shape[1], device=flat.device) * 2654435761 % (1 << 31) + 1
    return (flat * weights).sum(dim=1)


def moco_projection(in_dim: int, hidden_dim: int, out_dim: int = 128, batch_norm: bool = True) -> nn.Sequential:
    """MoCo's 2-layer head (Chen et al. 2020: 2048 hidden, 128 out): Linear(-BN)-ReLU-Linear.

    v2 has no BatchNorm; v3 (Chen, Xie, He 2021) and SimCLR put one after the hidden layer.
    """
    return mlp(in_dim, hidden_dim, out_dim, layers=2, batch_norm=batch_norm)


@dataclasses.dataclass
class MoCoConfig(MethodConfig):
    temperature: float = 0.2  # MoCo v2 (v1: 0.07)
    # Negatives kept: 65,536 for ImageNet's 1.28M images (5%). Keep it well under the train set
    # size, or a query meets keys of its own image from an earlier epoch among its negatives.
    queue_size: int = 4096
    momentum: float = 0.99  # key encoder EMA (paper: 0.999 over 200+ epochs; short runs need it faster)
    momentum_cosine: bool = False  # raise the momentum to 1 on BYOL's cosine over the run
    proj_hidden_dim: int | None = None  # head width; None: the backbone's width (v2: 2048 = ResNet-50's)
    proj_dim: int = 128  # projection size, as in the paper
    # BatchNorm in the head, as in MoCo v3 and SimCLR (v2: none). Without it, a freshly built
    # encoder maps all images to nearly one direction (mean cosine 0.78 between images vs 0.30
    # with it, convnet), so the first keys to fill the queue are near-copies of every positive
    # and the loss climbs for the first queue fills. Measured on shapes (64 steps, convnet):
    # kNN 0.197 with BN, 0.174 without (random init: 0.162).
    proj_batch_norm: bool = True
    # Also contrast view 2's queries with view 1's keys (MoCo v3; 2x the loss terms). Off: within
    # noise on mnist5k at 600 steps, kNN 0.889 with it, 0.884 without (bench/results/recipes_cpu.md).
    symmetric: bool = False
    # Shuffling BN (MoCo sec. 3.3), on one device: queries and keys go through the encoders in
    # this many sub-batches, the keys' shuffled, so BatchNorm statistics cannot tell a query
    # which key is its positive. 1: off. Skipped for backbones without BatchNorm (the ViT).
    bn_splits: int = 4
    # MoCo v2's augmentation is SimCLR's (ViewConfig's defaults), with SimCLR's 32-px changes
    # here: crops keep half the image and hue turns all the way round, so colour cannot identify
    # an image (on shapes, kNN 0.174 vs 0.099 with the defaults, no-BN head). Its blur (p=0.5,
    # sigma 0.1-2 px at 224 px) stays off: at 32 px that sigma would be 0.01-0.3 px.
    views: dict = dataclasses.field(default_factory=lambda: {"crop_scale": (0.5, 1.0), "hue": 0.5})


@register_method
class MoCo(Method):
    name = "moco"
    family = "contrastive"
    description = "InfoNCE against a FIFO queue of keys from a momentum encoder (MoCo v2, He/Chen et al. 2020)"
    Config = MoCoConfig
    # The rate that gives the larger of the two smaller gaps to the random-init floor. 600 steps of
    # batch 128, convnet, kNN top-1: mnist5k 0.903 at 5e-4, 0.885 at 1e-3, 0.884 at 2e-3, 0.875 at
    # 5e-3 (floor 0.876); shapes 0.218 at 5e-4, 0.230 at 2e-3 (floor 0.148). Gaps at 5e-4: +2.7
    # and +7.0; at 2e-3: +0.8 and +8.2 (bench/results/recipes_cpu.md).
    train_recipe = {"lr": 5e-4}

    def __init__(self, backbone, cfg: MoCoConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.queue_size < 1 or cfg.bn_splits < 1:
            raise ValueError(f"queue_size and bn_splits must be >= 1; got {cfg.queue_size} and {cfg.bn_splits}")
        if not 0 <= cfg.momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1]; got {cfg.momentum}")
        self.projector = moco_projection(backbone.out_dim, cfg.proj_hidden_dim or backbone.out_dim, cfg.proj_dim,
                                         cfg.proj_batch_norm)
        self.key_backbone = frozen_copy(self.backbone)
        self.key_projector = frozen_copy(self.projector)
        # Random unit keys until real ones arrive, as in the official code.
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, cfg.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        # Which image each queued key came from (-1: none), so a query never meets a key of its
        # own image among its negatives. On ImageNet the queue spans 5% of an epoch and this
        # cannot happen; on small sets, or when a batch repeats, the queue holds older keys of
        # the very image, as similar to the query as its positive: false negatives.
        self.register_buffer("queue_ids", torch.full((cfg.queue_size,), -1, dtype=torch.long))
        self.view_cfg = augment.ViewConfig(**cfg.views)
        self._has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in backbone.modules())

    def make_views(self, images_u8: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, H, W, 3) -> two normalized views (B, 3, R, R) each."""
        both = augment.make_views(torch.cat([images_u8, images_u8]), self.view_cfg, self.resolution)
        x1, x2 = self.normalize(both).chunk(2)
        return x1, x2

    def _project(self, backbone: nn.Module, projector: nn.Module, x: Tensor, shuffle: bool) -> Tensor:
        """projector(backbone(x)), run in `bn_splits` sub-batches (shuffled first if asked)."""
        splits = self.cfg.bn_splits if self._has_bn else 1
        if splits == 1:
            return projector(backbone(x))
        order = torch.randperm(len(x), device=x.device) if shuffle else None
        if order is not None:
            x = x[order]
        out = torch.cat([projector(backbone(part)) for part in x.chunk(splits)])
        if order is not None:
            out = out[torch.argsort(order)]  # back to the input order
        return out

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x1, x2 = self.make_views(images_u8)
        ids = image_ids(images_u8)
        queries_in, keys_in = (torch.cat([x1, x2]), torch.cat([x2, x1])) if self.cfg.symmetric else (x1, x2)
        q = self._project(self.backbone, self.projector, queries_in, shuffle=False)
        with torch.no_grad():
            k = self._project(self.key_backbone, self.key_projector, keys_in, shuffle=True)
            k = F.normalize(k.float(), dim=1)
        if self.cfg.symmetric:
            ids = torch.cat([ids, ids])
        own_image = ids[:, None] == self.queue_ids[None, :]  # (B, K)
        # A copy: the queue changes in place below, and autograd keeps what the loss read.
        loss = moco_infonce(q, k, self.queue.clone(), self.cfg.temperature, ignore=own_image)
        enqueue(self.queue, self.queue_ptr, k, ids, self.queue_ids)
        return {"loss": loss}

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        m = self.cfg.momentum
        if self.cfg.momentum_cosine:
            m = cosine_momentum(step, total_steps, m)
        ema_update(self.key_backbone, self.backbone, m)
        ema_update(self.key_projector, self.projector, m)
