"""VAE: an autoencoder whose code is a Gaussian posterior, pulled toward a standard normal prior.

Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014. The encoder is the backbone plus
two linear heads (posterior mean and log-variance), the decoder is the autoencoder's
(`autoencoder.conv_decoder`); the loss is the negative ELBO per image: squared error summed over
pixels (a Gaussian decoder of variance 1/2 on normalized pixels) plus beta times the KL divergence.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.autoencoder import conv_decoder
from ssl_core.models.methods.base import Method, MethodConfig, register_method


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per sample, summed over latent dims (Kingma & Welling,
    appendix B). mu, logvar: (B, L) -> (B,)."""
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu and logvar must both be (B, L); got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def negative_elbo(recon: Tensor, target: Tensor, mu: Tensor, logvar: Tensor, beta: float | Tensor = 1.0
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, reconstruction term, KL term), each averaged over the batch.

    recon, target: (B, 3, H, W); mu, logvar: (B, L). The reconstruction term is the squared
    error summed over each image's pixels and channels; loss = reconstruction + beta * KL.
    beta may be a 0-d tensor (a schedule kept on the device, read without a host sync).
    """
    if recon.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
    if not isinstance(beta, Tensor) and beta < 0:
        raise ValueError(f"beta must be >= 0; got {beta}")
    rec = (recon.float() - target.float()).square().flatten(1).sum(dim=1).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return rec + beta * kl, rec, kl


@dataclasses.dataclass
class VAEConfig(MethodConfig):
    latent_dim: int = 128  # size of the Gaussian code; `encode` returns its mean
    beta: float = 1.0  # weight of the KL term: 1 is the ELBO; >1 is beta-VAE (Higgins et al. 2017)
    # Fraction of training over which the KL weight ramps linearly from 0 to beta (Bowman et al.
    # 2016's annealing, against posterior collapse early on); 0 = the plain ELBO from step 0.
    kl_warmup: float = 0.0
    decoder_width: int = 256  # channels at the decoder's R/8 grid (as the autoencoder's)
    views: dict = dataclasses.field(default_factory=lambda: {  # crops and flips, as the autoencoder
        "crop_scale": (0.5, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})


@register_method
class VAE(Method):
    name = "vae"
    family = "generative"
    description = "Gaussian code from the backbone, conv decoder, negative ELBO loss (Kingma & Welling 2014)"
    Config = VAEConfig

    def __init__(self, backbone, cfg: VAEConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if cfg.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive; got {cfg.latent_dim}")
        if not 0 <= cfg.kl_warmup <= 1:
            raise ValueError(f"kl_warmup is a fraction of training in [0, 1]; got {cfg.kl_warmup}")
        self.to_mu = nn.Linear(backbone.out_dim, cfg.latent_dim)
        self.to_logvar = nn.Linear(backbone.out_dim, cfg.latent_dim)
        self.decoder = conv_decoder(cfg.latent_dim, self.resolution, cfg.decoder_width)
        self.view_cfg = augment.ViewConfig(**cfg.views)
        # The KL weight now (moves during warm-up); a buffer so a resumed run continues from it.
        self.register_buffer("kl_weight", torch.tensor(0.0 if cfg.kl_warmup > 0 else cfg.beta))

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized images (B, 3, H, W) -> mean and log-variance (B, latent_dim), float32."""
        h = self.backbone(x)
        # Clamped so exp() cannot overflow in a bad early step.
        return self.to_mu(h).float(), self.to_logvar(h).float().clamp(-20, 10)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        x = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # the reparameterization trick
        loss, rec, kl = negative_elbo(self.decoder(z), x, mu, logvar, self.kl_weight)
        return {"loss": loss, "reconstruction": rec.detach(), "kl": kl.detach()}

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        if self.cfg.kl_warmup > 0:
            ramp = (step + 1) / max(1.0, self.cfg.kl_warmup * total_steps)
            self.kl_weight.fill_(self.cfg.beta * min(1.0, ramp))

    def encode(self, images: Tensor) -> Tensor:
        return self.posterior(images)[0]

    @property
    def embedding_dim(self) -> int:
        return self.cfg.latent_dim

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        """The backbone's layers, then the posterior mean "mu" (the embedding) read from the last."""
        layers = self.backbone.forward_layers(images)
        return {**layers, "mu": self.to_mu(list(layers.values())[-1]).float()}

    @property
    def layer_pooling(self) -> str:
        return f"{self.backbone.layer_pooling}; then the posterior mean (mu), the embedding"

    def finetune_modules(self, mode: str) -> list[nn.Module]:
        # The posterior mean is part of the representation: it learns whenever a backbone block does.
        modules = super().finetune_modules(mode)
        return modules + [self.to_mu] if modules else modules

    def _to_unit_range(self, x: Tensor) -> Tensor:
        return (x.float() * self.std + self.mean).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, images_u8: Tensor) -> Tensor:
        """uint8 (B, H, W, 3) -> decoded posterior means, float (B, 3, H, W) in [0, 1]."""
        return self._to_unit_range(self.decoder(self.encode(self.normalize(augment.to_float(images_u8)))))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from the prior N(0, I), float (n, 3, H, W) in [0, 1] (call .eval() first:
        the decoder has batch norm). `generator` (on the model's device) makes them repeatable."""
        z = torch.randn(n, self.cfg.latent_dim, device=self.mean.device, generator=generator)
        return self._to_unit_range(self.decoder(z))
