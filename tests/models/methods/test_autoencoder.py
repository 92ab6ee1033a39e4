"""Autoencoder: the shared decoder's shapes, the loss, reconstructions in image units."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods import build_method
from ssl_core.models.methods.autoencoder import conv_decoder, reconstruction_mse


@pytest.mark.parametrize("resolution", [32, 64])
def test_decoder_draws_full_size_images(resolution):
    decoder = conv_decoder(10, resolution, width=32)
    assert decoder(torch.randn(2, 10)).shape == (2, 3, resolution, resolution)


def test_decoder_rejects_sizes_it_cannot_reach():
    with pytest.raises(ValueError, match="multiple of 8; got 36"):
        conv_decoder(10, 36)
    with pytest.raises(ValueError, match="width"):
        conv_decoder(10, 32, width=12)


def test_loss_is_the_mean_squared_error_and_zero_on_a_perfect_copy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    naive = sum(float((x - y) ** 2) for x, y in zip(a.flatten(), b.flatten())) / a.numel()
    assert reconstruction_mse(a, b).item() == pytest.approx(naive, rel=1e-6)
    assert reconstruction_mse(a, a).item() == 0
    with pytest.raises(ValueError, match="shape"):
        reconstruction_mse(a, b[:, :, :2])


def test_reconstructions_are_images_and_the_target_is_the_input_view():
    torch.manual_seed(0)
    method = build_method({"name": "autoencoder"}, "convnet", resolution=32, num_classes=2)
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    recon = method.eval().reconstruct(images)
    assert recon.shape == (4, 3, 32, 32) and recon.min() >= 0 and recon.max() <= 1
    # No augmentation at all: the loss is exactly the reconstruction error of the input.
    plain = build_method({"name": "autoencoder", "views": {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0),
                                                          "flip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0}},
                         "convnet", resolution=32, num_classes=2).eval()
    x = plain.normalize(images.permute(0, 3, 1, 2).float() / 255)
    expected = ((plain.decoder(plain.encode(x)) - x) ** 2).mean()
    torch.testing.assert_close(plain.training_step(images, None)["loss"], expected, rtol=1e-4, atol=1e-5)
