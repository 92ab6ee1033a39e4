"""Encoders, registered by name. Each maps normalized images to one vector per image.

A backbone factory takes the run's image resolution and returns a `Backbone`:

    backbone = build_backbone("convnet", resolution=32)
    features = backbone(images)   # (B, 3, H, W) float, normalized -> (B, backbone.out_dim)
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from ssl_core.registry import Registry


class Backbone(nn.Module):
    """An encoder whose forward returns (B, out_dim) pooled features."""

    out_dim: int


BACKBONES: Registry[Callable[[int], Backbone]] = Registry("backbone")


def build_backbone(name: str, resolution: int = 32) -> Backbone:
    return BACKBONES.get(name)(resolution)


from ssl_core.backbones import convnet, resnet, vit  # noqa: E402,F401  (registers them)

__all__ = ["BACKBONES", "Backbone", "build_backbone"]
