"""pixels: 2x2-averaged normalized pixels, never touched by training or the backbone's weights."""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods import build_method


def test_embedding_is_the_normalized_image_averaged_over_2x2_blocks():
    method = build_method({"name": "pixels"}, "convnet", resolution=32, num_classes=2,
                          mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.25))
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    embedding = method.embed(images)
    assert embedding.shape == (2, 768) == (2, method.embedding_dim)
    x = (images.permute(0, 3, 1, 2).float() / 255 - method.mean) / method.std
    for c, i, j in [(0, 0, 0), (1, 7, 3), (2, 15, 15)]:
        block = x[:, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((1, 2))
        torch.testing.assert_close(embedding[:, c * 256 + i * 16 + j], block)


def test_ignores_the_backbone_and_is_never_trained():
    images = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    a = build_method({"name": "pixels", "size": 8}, "convnet", resolution=32, num_classes=2)
    b = build_method({"name": "pixels", "size": 8}, "convnet", resolution=32, num_classes=2)
    with torch.no_grad():
        for p in b.backbone.parameters():
            p.add_(1.0)
    torch.testing.assert_close(a.embed(images), b.embed(images))
    assert a.embed(images).shape == (2, 3 * 8 * 8)
    assert not a.trainable
    with pytest.raises(RuntimeError, match="never trained"):
        a.training_step(images, None)
