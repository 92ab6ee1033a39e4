"""VAE: the KL term against torch.distributions, the ELBO's per-image sums, the KL warm-up,
the posterior mean as the representation, reconstructions and samples in [0, 1]."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ssl_core.models.methods import autoencoder, build_method, vae
from ssl_core.models.methods.vae import gaussian_kl, negative_elbo


def test_kl_matches_torch_distributions_and_is_zero_at_the_prior():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max() == 0


def test_elbo_sums_squared_error_per_image_and_weights_kl_by_beta():
    g = torch.Generator().manual_seed(1)
    recon, target = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    mu, logvar = torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)
    per_image = [sum(float(d) ** 2 for d in (recon[i] - target[i]).flatten()) for i in range(2)]
    loss, rec, kl = negative_elbo(recon, target, mu, logvar, beta=0.5)
    assert rec.item() == pytest.approx(sum(per_image) / 2, rel=1e-5)
    assert kl.item() == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-6)
    assert loss.item() == pytest.approx(rec.item() + 0.5 * kl.item(), rel=1e-6)
    with pytest.raises(ValueError, match="beta"):
        negative_elbo(recon, target, mu, logvar, beta=-1.0)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        gaussian_kl(mu, logvar[:, :3])


def test_the_decoder_is_the_autoencoders():
    assert vae.conv_decoder is autoencoder.conv_decoder


def test_kl_weight_warms_up_linearly_to_beta():
    method = build_method({"name": "vae", "kl_warmup": 0.5, "beta": 2.0}, "convnet", resolution=32, num_classes=2)
    assert float(method.kl_weight) == 0.0
    method.after_step(9, 100)  # 10 of the 50 warm-up steps done
    assert float(method.kl_weight) == pytest.approx(0.4)
    method.after_step(60, 100)
    assert float(method.kl_weight) == pytest.approx(2.0)
    assert float(build_method({"name": "vae"}, "convnet", resolution=32, num_classes=2).kl_weight) == 1.0


def test_encode_is_the_posterior_mean_and_outputs_are_images():
    torch.manual_seed(0)
    method = build_method({"name": "vae", "latent_dim": 16}, "convnet", resolution=32, num_classes=2).eval()
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    embedding = method.embed(images)
    assert embedding.shape == (3, 16) == (3, method.embedding_dim)
    torch.testing.assert_close(method.embed(images), embedding)  # no sampling in the representation
    x = method.normalize(images.permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(embedding, method.to_mu(method.backbone(x)))
    for out in (method.reconstruct(images), method.sample(5)):
        assert out.shape[1:] == (3, 32, 32) and out.min() >= 0 and out.max() <= 1
    g = torch.Generator().manual_seed(4)
    first = method.sample(2, generator=g)
    assert torch.equal(first, method.sample(2, generator=torch.Generator().manual_seed(4)))
