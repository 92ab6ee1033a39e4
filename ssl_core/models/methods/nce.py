"""Noise-versus-data classification: tell real images from Gaussian noise with their statistics.

After Gutmann and Hyvärinen, "Noise-contrastive estimation: A new estimation principle for
unnormalized statistical models", AISTATS 2010: logistic regression between data and samples of
a known noise distribution. NCE's classifier logit is log p_model(x) - log p_noise(x), so
learning to separate the two learns the data density relative to the noise. Here the logit is a
linear head on the backbone's features (in NCE's spirit, not its exact estimator): a network
can only separate them by representing what the data has and the noise lacks.

What it can learn depends on the noise. Noise that differs in simple statistics (a wrong mean,
white pixel noise) is told apart by one filter and teaches nothing else. So the noise here is a
Gaussian with the batch's per-pixel mean and its full pixel covariance (rank B - 1, all colour
channels and positions jointly): it has the data's per-pixel means and variances, colour
correlations and power spectrum, so every second-order statistic matches and the classifier has
to use higher-order structure: edges that are sharp and sparse, one coherent object on one
texture, where a noise image is a dense superposition of random-signed batch images. Noise is
then clipped and rounded like an 8-bit image (which moves the statistics of pixels near 0 or
255 a little) and data and noise get the same augmentations, so range, quantisation and
resampling give nothing away.

Limits: the noise stays far from the data in higher-order terms, so once a few such cues (edge
sparsity, say) separate them the loss vanishes and learning stops, long before object
categories are needed; and the model is refitted per batch, so it only matches what B images
can estimate. `rank` < B - 1 keeps only the top principal components plus a diagonal residual
(per-pixel variances still match): a weaker model whose white residual makes the task easier.
Measured (bench/results/recipes_cpu*.md, convnet, batch 128, kNN top-1 against the random-init
convnet): mnist5k 0.760 after 600 steps and 0.695 after 1,995 (floor 0.876), shapes 0.150 after
600 (floor 0.148). NCE is kept as the classic it is; the app places such a run below its floor.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method


def fit_noise_model(x: Tensor, rank: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Fit a Gaussian to flattened images x (B, P); returns (mean (P,), basis (K, P), residual_std (P,)).

    Samples are mean + eps @ basis + residual_std * delta with eps (n, K), delta (n, P) standard
    normal, so their covariance is basis^T basis + diag(residual_std^2). rank None: the basis is
    the centred batch / sqrt(B - 1), i.e. the full unbiased sample covariance (K = B) and no
    residual. rank k: the top k principal directions, scaled by their standard deviations, and a
    residual that restores each pixel's sample variance exactly.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"expected flattened images (B >= 2, P); got {tuple(x.shape)}")
    if rank is not None and rank < 1:
        raise ValueError(f"rank must be >= 1 or None (the full sample covariance); got {rank}")
    x = x.float()
    mean = x.mean(0)
    centred = (x - mean) / (x.shape[0] - 1) ** 0.5
    if rank is None or rank >= x.shape[0] - 1:
        return mean, centred, torch.zeros_like(mean)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    basis = s[:rank, None] * vh[:rank]
    residual_var = centred.pow(2).sum(0) - basis.pow(2).sum(0)
    return mean, basis, residual_var.clamp_min(0).sqrt()


def sample_noise(mean: Tensor, basis: Tensor, residual_std: Tensor, n: int) -> Tensor:
    """n samples (n, P) of the Gaussian that `fit_noise_model` returned, from the global torch RNG."""
    eps = torch.randn(n, basis.shape[0], device=mean.device, dtype=mean.dtype)
    return mean + eps @ basis + residual_std * torch.randn(n, mean.shape[0], device=mean.device, dtype=mean.dtype)


def data_and_noise(images_u8: Tensor, rank: int | None = None) -> tuple[Tensor, Tensor]:
    """uint8 images (B, H, W, 3) -> (2B, H, W, 3) uint8: the B images, then B noise images drawn
    from the Gaussian fitted to them (`fit_noise_model`), clipped to [0, 255] and rounded like an
    8-bit image, so that neither out-of-range values nor non-integer levels give them away; and
    labels (2B,): 1.0 for data, 0.0 for noise."""
    if images_u8.dtype != torch.uint8 or images_u8.ndim != 4:
        raise ValueError(f"expected uint8 images (B, H, W, C); got {images_u8.dtype} {tuple(images_u8.shape)}")
    b = images_u8.shape[0]
    with torch.autocast(images_u8.device.type, enabled=False):  # float32 even in a bf16 run
        noise = sample_noise(*fit_noise_model(images_u8.reshape(b, -1).float(), rank), b)
    noise = noise.clamp(0, 255).round().to(torch.uint8).view_as(images_u8)
    labels = torch.cat([torch.ones(b, device=images_u8.device), torch.zeros(b, device=images_u8.device)])
    return torch.cat([images_u8, noise]), labels


@dataclasses.dataclass
class NCEConfig(MethodConfig):
    # Noise model: None = the batch's full pixel covariance (every second-order statistic
    # matches); k = top-k principal components + diagonal residual (an easier, weaker task).
    rank: int | None = None
    # Augmentation of data and noise images alike, after the noise is drawn (so crops and colour
    # changes are no cue either). SimCLR's shapes-tuned recipe.
    views: dict = dataclasses.field(default_factory=lambda: {"crop_scale": (0.5, 1.0), "hue": 0.5})


@register_method
class NCE(Method):
    name = "nce"
    family = "contrastive"
    description = "tell real images from Gaussian noise with their pixel covariance (after Gutmann & Hyvärinen 2010)"
    Config = NCEConfig

    def __init__(self, backbone, cfg: NCEConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.head = nn.Linear(backbone.out_dim, 1)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        both, is_data = data_and_noise(images_u8, self.cfg.rank)
        logits = self.head(self.encode(self.normalize(augment.make_views(both, self.view_cfg, self.resolution))))
        logits = logits.squeeze(1).float()
        accuracy = ((logits > 0).float() == is_data).float().mean()
        return {"loss": F.binary_cross_entropy_with_logits(logits, is_data), "nce_acc": accuracy.detach()}
