"""DDPM: the schedule against a loop, the forward process, deterministic per-image embeddings
from a pooled UNet block, timestep and noise draws from torch's global RNG."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods import build_method
from ssl_core.models.methods.ddpm import add_noise, ddpm_loss, linear_alpha_bars


def test_alpha_bars_match_a_running_product():
    alpha_bars = linear_alpha_bars(1000, 1e-4, 0.02)
    product = 1.0
    for t in range(1000):
        product *= 1 - (1e-4 + (0.02 - 1e-4) * t / 999)
        if t in (0, 99, 999):
            assert alpha_bars[t].item() == pytest.approx(product, rel=1e-9)
    assert bool((alpha_bars[1:] < alpha_bars[:-1]).all())
    with pytest.raises(ValueError, match="beta"):
        linear_alpha_bars(10, 0.1, 0.01)


def test_forward_process_interpolates_signal_and_noise():
    alpha_bars = torch.tensor([0.64, 0.36])
    x0, noise = torch.full((2, 1, 2, 2), 2.0), torch.full((2, 1, 2, 2), -1.0)
    out = add_noise(x0, noise, torch.tensor([0, 1]), alpha_bars)
    torch.testing.assert_close(out[:, 0, 0, 0], torch.tensor([0.8 * 2 - 0.6, 0.6 * 2 - 0.8]))


def test_loss_is_zero_only_for_the_true_noise():
    eps = torch.randn(2, 3, 4, 4)
    assert ddpm_loss(eps, eps).item() == 0
    assert ddpm_loss(eps + 1, eps).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        ddpm_loss(eps[:1], eps)


@pytest.fixture(scope="module")
def method():
    torch.manual_seed(0)
    return build_method({"name": "ddpm", "width": 16}, "convnet", resolution=32, num_classes=2)


def test_embedding_is_the_pooled_block_and_depends_on_the_image_alone(method):
    method.eval()
    x = torch.randn(3, 3, 32, 32)
    together = method.encode(x)
    assert together.shape == (3, 64) == (3, method.embedding_dim)
    torch.testing.assert_close(method.encode(x[2:]), together[2:])  # same image, other batch
    torch.testing.assert_close(method.encode(x), together)  # fixed noise: repeatable
    t = torch.full((1,), method.cfg.encode_t)
    x_t = add_noise(x[:1], method.encode_noise, t, method.alpha_bars)
    torch.testing.assert_close(method.unet.features(x_t, t, method.cfg.encode_block).mean((2, 3)), together[:1])


def test_steps_draw_timesteps_and_noise_from_the_global_rng(method):
    method.train()
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.manual_seed(5)
        first = method.training_step(images, None)["loss"]
        torch.manual_seed(5)
        again = method.training_step(images, None)["loss"]
        torch.manual_seed(6)
        other = method.training_step(images, None)["loss"]
    assert first.item() == again.item() != other.item()


def test_the_unet_predicts_noise_and_is_what_trains(method):
    assert method.unet(torch.randn(2, 3, 32, 32), torch.tensor([0, 999])).shape == (2, 3, 32, 32)
    method.zero_grad()
    method.training_step(torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8), None)["loss"].backward()
    assert method.unet.stem.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in method.backbone.parameters())  # the given backbone is unused


@pytest.mark.parametrize("block", ["down1", "down2", "down3", "mid1", "mid2"])
def test_encode_block_pools_that_block_of_the_layer_probe(block):
    torch.manual_seed(0)
    method = build_method({"name": "ddpm", "width": 16, "encode_block": block}, "convnet", resolution=32,
                          num_classes=2).eval()
    x = torch.randn(2, 3, 32, 32)
    embedded = method.encode(x)
    assert embedded.shape == (2, method.embedding_dim)
    layers = method.probe_layers(x)
    assert list(layers)[-1] == block  # the deepest probe layer is the embedding
    torch.testing.assert_close(embedded, layers[block])


def test_an_unknown_encode_block_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="down1, down2, down3, mid1, mid2"):
        build_method({"name": "ddpm", "encode_block": "up1"}, "convnet", resolution=32, num_classes=2)
