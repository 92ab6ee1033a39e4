"""DDPM: learn to denoise; a block of the denoiser, read at a set noise level, is the representation.

Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (linear betas 1e-4..0.02,
T = 1000, epsilon prediction). Reading representations from a denoiser follows Xiang et al.,
"Denoising Diffusion Autoencoders are Unified Self-supervised Learners", ICCV 2023. The method
brings its own network, a small UNet: it trains that, not the backbone the registry passes.
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


def linear_alpha_bars(steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Cumulative products of (1 - beta_t) over DDPM's linear beta schedule: (steps,) float64."""
    if steps < 1 or not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need steps >= 1 and 0 < beta_start <= beta_end < 1; "
                         f"got {steps}, {beta_start}, {beta_end}")
    return torch.cumprod(1 - torch.linspace(beta_start, beta_end, steps, dtype=torch.float64), dim=0)


def add_noise(x0: Tensor, noise: Tensor, t: Tensor, alpha_bars: Tensor) -> Tensor:
    """q(x_t | x_0): sqrt(a_t) x0 + sqrt(1 - a_t) noise (DDPM eq. 4). x0, noise: (B, C, H, W);
    t: (B,) integer timesteps; alpha_bars: (T,)."""
    a = alpha_bars.to(x0.device, torch.float32)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer sinusoids of the timestep (as DDPM's UNet): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat((angles.sin(), angles.cos()), dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between; 1x1 skip when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, time_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, in_ch), nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch)
        self.norm2, self.conv2 = nn.GroupNorm(8, out_ch), nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


UNET_BLOCKS = ("down1", "down2", "down3", "mid1", "mid2")


class UNet(nn.Module):
    """Noisy image (B, 3, R, R) and timesteps (B,) -> predicted noise (B, 3, R, R).

    One ResBlock per level at R, R/2, R/4 (widths w, 2w, 4w), two at the R/4 bottleneck, and the
    mirror path up with skip connections. `features` returns one block of the way down, which
    `encode` pools.
    """

    def __init__(self, width: int = 32, time_dim: int = 128):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.time_dim = time_dim
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(3, w1, 3, padding=1)
        self.down1, self.down2, self.down3 = (ResBlock(w1, w1, time_dim), ResBlock(w1, w2, time_dim),
                                              ResBlock(w2, w3, time_dim))
        self.pool1, self.pool2 = nn.Conv2d(w1, w1, 3, 2, 1), nn.Conv2d(w2, w2, 3, 2, 1)  # strided downsampling
        self.mid1, self.mid2 = ResBlock(w3, w3, time_dim), ResBlock(w3, w3, time_dim)
        self.up3, self.up2, self.up1 = (ResBlock(2 * w3, w2, time_dim), ResBlock(2 * w2, w1, time_dim),
                                        ResBlock(2 * w1, w1, time_dim))
        self.out = nn.Sequential(nn.GroupNorm(8, w1), nn.SiLU(), nn.Conv2d(w1, 3, 3, padding=1))
        self.block_dims = {"down1": w1, "down2": w2, "down3": w3, "mid1": w3, "mid2": w3}

    def _down(self, x: Tensor, t: Tensor, until: str = "mid2") -> tuple[Tensor, dict[str, Tensor]]:
        """(the time embedding, {block: output (B, C, H, W)}) along the path to the bottleneck,
        from down1 (R), down2 (R/2), down3 (R/4) through mid1 and mid2, stopping after `until`."""
        if until not in UNET_BLOCKS:
            raise ValueError(f"unknown UNet block '{until}'; known: {', '.join(UNET_BLOCKS)}")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h, out = self.stem(x), {}
        for name in UNET_BLOCKS:
            pool = {"down2": self.pool1, "down3": self.pool2}.get(name)  # strided downsampling
            out[name] = h = getattr(self, name)(pool(h) if pool is not None else h, temb)
            if name == until:
                break
        return temb, out

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        temb, h = self._down(x, t)
        up = lambda h: F.interpolate(h, scale_factor=2, mode="nearest")  # noqa: E731
        u = self.up3(torch.cat((h["mid2"], h["down3"]), dim=1), temb)
        u = self.up2(torch.cat((up(u), h["down2"]), dim=1), temb)
        u = self.up1(torch.cat((up(u), h["down1"]), dim=1), temb)
        return self.out(u)

    def features(self, x: Tensor, t: Tensor, block: str = "mid2") -> Tensor:
        """One block's output on the way to the bottleneck, (B, C, H, W), computing no block after it."""
        return self._down(x, t, block)[1][block]

    def forward_layers(self, x: Tensor, t: Tensor, until: str = "mid2") -> dict[str, Tensor]:
        """{"down1", "down2", ... `until`: (B, channels)}: each block of the path to the bottleneck,
        up to `until`, globally average-pooled."""
        return {name: h.mean(dim=(2, 3)) for name, h in self._down(x, t, until)[1].items()}

    def down_path(self) -> list[nn.Module]:
        """The modules the path to the bottleneck runs through, in order (not the up path)."""
        return [self.time_mlp, self.stem, self.down1, self.pool1, self.down2, self.pool2, self.down3,
                self.mid1, self.mid2]


def ddpm_loss(eps_pred: Tensor, eps: Tensor) -> Tensor:
    """DDPM's simple objective: MSE between predicted and true noise. (B, C, H, W) -> scalar."""
    if eps_pred.shape != eps.shape:
        raise ValueError(f"predicted noise {tuple(eps_pred.shape)} and noise {tuple(eps.shape)} differ in shape")
    return F.mse_loss(eps_pred.float(), eps.float())


@dataclasses.dataclass
class DDPMConfig(MethodConfig):
    timesteps: int = 1000  # T, as in the paper
    beta_start: float = 1e-4  # linear beta schedule, as in the paper
    beta_end: float = 0.02
    width: int = 32  # UNet widths 32-64-128 at R, R/2, R/4 (~1.4M parameters)
    # Where `encode` reads the UNet: the timestep the image is noised to, and the block whose output
    # is pooled (down1, down2, down3 at R, R/2, R/4; mid1 or mid2, the bottleneck). Chosen by
    # bench/ddpm_readout.py on the train split alone, averaged over mnist5k and shapes at 600
    # steps: t=200 at down3, train kNN 0.366, against 0.320 for the earlier t=100 at the bottleneck
    # (Xiang et al. 2023 likewise find a middle block and a small-to-middle t best).
    encode_t: int = 200
    encode_noise_seed: int = 0  # the one fixed noise image every encoded image gets
    encode_block: str = "down3"
    earlier_defaults: ClassVar[dict[str, Any]] = {"encode_t": 100, "encode_block": "mid2"}
    views: dict = dataclasses.field(default_factory=lambda: {  # flips only, as the paper on CIFAR-10
        "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})


@register_method
class DDPM(Method):
    name = "ddpm"
    family = "generative"
    description = ("denoising diffusion with its own small UNet; the representation is a pooled UNet block "
                   "of a noised image (Ho et al. 2020)")
    # It trains its own UNet and ignores the backbone; the registry needs one name, so one.
    backbones = ("convnet",)
    own_network = True
    Config = DDPMConfig
    no_maps = ("DDPM's embeddings come from a block of its UNet, not from a ViT or CNN backbone; attention "
               "maps and saliency are drawn for those")

    def __init__(self, backbone, cfg: DDPMConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.encode_block not in UNET_BLOCKS:
            raise ValueError(f"unknown encode_block '{cfg.encode_block}'; known: {', '.join(UNET_BLOCKS)}")
        if not 0 <= cfg.encode_t < cfg.timesteps:
            raise ValueError(f"encode_t must be in [0, {cfg.timesteps}); got {cfg.encode_t}")
        if self.resolution % 4:
            raise ValueError(f"the UNet halves the image twice, so the resolution must be a multiple of 4; "
                             f"got {self.resolution}")
        self.unet = UNet(cfg.width)
        self.register_buffer("alpha_bars", linear_alpha_bars(cfg.timesteps, cfg.beta_start, cfg.beta_end).float(),
                             persistent=False)
        g = torch.Generator().manual_seed(cfg.encode_noise_seed)
        # The same noise for every image, so an embedding depends on the image alone (not on
        # its batch or position in it) and neighbours differ only by their images.
        self.register_buffer("encode_noise", torch.randn(1, 3, self.resolution, self.resolution, generator=g),
                             persistent=False)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x0 = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        t = torch.randint(0, self.cfg.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        return {"loss": ddpm_loss(self.unet(add_noise(x0, noise, t, self.alpha_bars), t), noise)}

    def _noised(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized images -> (the images noised to `encode_t` with the fixed noise, t (B,))."""
        t = torch.full((images.shape[0],), self.cfg.encode_t, device=images.device, dtype=torch.long)
        return add_noise(images, self.encode_noise.expand_as(images), t, self.alpha_bars), t

    def encode(self, images: Tensor) -> Tensor:
        """The output of UNet block `encode_block` (by default down3, R/4 x R/4 x 4w), averaged over
        space, for the image noised to `encode_t` with the fixed noise."""
        return self.unet.features(*self._noised(images), self.cfg.encode_block).mean(dim=(2, 3))

    @property
    def embedding_dim(self) -> int:
        return self.unet.block_dims[self.cfg.encode_block]

    # The analyses read the UNet that embeds, never the convnet the registry passed (untrained).
    def representation_module(self) -> nn.Module:
        return self.unet

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        return self.unet.forward_layers(*self._noised(images), until=self.cfg.encode_block)

    @property
    def layer_pooling(self) -> str:
        return (f"global average pool of each UNet block on the way to {self.cfg.encode_block}, the image "
                f"noised to t={self.cfg.encode_t} as for the embedding")

    def finetune_modules(self, mode: str) -> list[nn.Module]:
        if mode == "full":
            path = self.unet.down_path()
            return path[:path.index(getattr(self.unet, self.cfg.encode_block)) + 1]
        if mode == "last_block":
            return [getattr(self.unet, self.cfg.encode_block)]
        return super().finetune_modules(mode)
