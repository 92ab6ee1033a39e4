"""Autoencoder: the backbone's pooled features must carry enough to redraw the image.

Hinton & Salakhutdinov, "Reducing the Dimensionality of Data with Neural Networks", Science 2006.
Here the encoder is the backbone and the decoder a small upsampling CNN (DCGAN-style, Radford et
al. 2016); the loss is the mean squared error on normalized pixels. `conv_decoder` is shared with
the VAE (vae.py).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method


class ConvDecoder(nn.Module):
    """(B, in_dim) -> (B, 3, R, R): Linear -> (width, R/8, R/8) -> three x2 upsampling stages.

    Each stage is nearest-neighbour upsampling then conv3x3-BN-ReLU (no checkerboard artefacts,
    unlike strided transposed convolutions); widths halve per stage; a final conv3x3 gives RGB
    in the units of the normalized image (no squashing: normalized pixels are unbounded).
    """

    def __init__(self, in_dim: int, resolution: int, width: int = 256):
        super().__init__()
        if resolution % 8 != 0 or resolution < 8:
            raise ValueError(f"the decoder upsamples 3 times from R/8, so the resolution must be a "
                             f"multiple of 8; got {resolution}")
        if width < 8 or width % 8 != 0:
            raise ValueError(f"decoder width must be a multiple of 8 (it halves 3 times); got {width}")
        self.start = resolution // 8
        self.width = width
        self.fc = nn.Linear(in_dim, width * self.start * self.start)
        stages: list[nn.Module] = []
        ch = width
        for _ in range(3):
            stages += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(ch, ch // 2, 3, padding=1, bias=False),  # BN supplies the bias
                       nn.BatchNorm2d(ch // 2), nn.ReLU(inplace=True)]
            ch //= 2
        stages.append(nn.Conv2d(ch, 3, 3, padding=1))
        self.net = nn.Sequential(*stages)

    def forward(self, z: Tensor) -> Tensor:
        x = F.relu(self.fc(z)).view(-1, self.width, self.start, self.start)
        return self.net(x)


def conv_decoder(in_dim: int, resolution: int, width: int = 256) -> ConvDecoder:
    """The decoder of the autoencoder and the VAE: at width 256 and 32 px, 0.39M parameters in
    its convolutions plus the input layer (in_dim x 4096: 1.05M from a 256-d convnet feature)."""
    return ConvDecoder(in_dim, resolution, width)


def reconstruction_mse(recon: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over every pixel and channel. recon, target: (B, 3, H, W) -> scalar."""
    if recon.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    return F.mse_loss(recon.float(), target.float())


@dataclasses.dataclass
class AutoencoderConfig(MethodConfig):
    decoder_width: int = 256  # channels at the decoder's R/8 grid; halves at each x2 stage
    # Light augmentation (crops and flips, no colour changes): the target is the view itself, so
    # augmentation only widens the training set; colour changes would add nothing to learn.
    views: dict = dataclasses.field(default_factory=lambda: {
        "crop_scale": (0.5, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})


@register_method
class Autoencoder(Method):
    name = "autoencoder"
    family = "generative"
    description = "redraw the image from the backbone's pooled features with a small conv decoder; MSE on pixels"
    # A ViT works too: its pooled feature is the CLS token.
    Config = AutoencoderConfig

    def __init__(self, backbone, cfg: AutoencoderConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.decoder = conv_decoder(backbone.out_dim, self.resolution, cfg.decoder_width)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        return {"loss": reconstruction_mse(self.decoder(self.encode(x)), x)}

    @torch.no_grad()
    def reconstruct(self, images_u8: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) -> reconstructions, float (B, 3, H, W) in [0, 1]."""
        x = self.normalize(augment.to_float(images_u8))
        return (self.decoder(self.encode(x)).float() * self.std + self.mean).clamp(0, 1)
