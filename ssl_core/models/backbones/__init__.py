"""Encoders, registered by name. Each maps normalized images to one vector per image.

A backbone factory takes the run's image resolution and returns a `Backbone`:

    backbone = build_backbone("convnet", resolution=32)
    features = backbone(images)   # (B, 3, H, W) float, normalized -> (B, backbone.out_dim)
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from ssl_core.core.registry import Registry


class Backbone(nn.Module):
    """An encoder whose forward returns (B, out_dim) pooled features.

    Each backbone also declares its depth, for the layer-wise probe and for fine-tuning:
    `forward_layers` gives one pooled vector per probed layer, shallow to deep, `last_block`
    the modules that "fine-tune the last block" unfreezes, and `layer_groups` its parameters by
    depth, for fine-tuning at a rate that decays towards the input.
    """

    out_dim: int
    layer_pooling: str = "the backbone's output"  # how forward_layers pools each layer, in words

    def forward_layers(self, x: Tensor) -> dict[str, Tensor]:
        """(B, 3, H, W) normalized images -> {layer name: (B, D_layer)} pooled features, ordered
        from the first layer to the last; the last one is what `forward` returns."""
        return {"output": self(x)}

    def last_block(self) -> list[nn.Module]:
        """The modules of the deepest block (unfrozen when fine-tuning only the last block)."""
        return [self]

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The parameters by depth, input side first, for layer-wise rate decay when fine-tuning
        (`analyses.finetune`); one group (one rate for all) unless the backbone says otherwise."""
        return [list(self.parameters())]


BACKBONES: Registry[Callable[[int], Backbone]] = Registry("backbone")


def build_backbone(name: str, resolution: int = 32) -> Backbone:
    return BACKBONES.get(name)(resolution)


from ssl_core.models.backbones import convnet, resnet, vit  # noqa: E402,F401  (registers them)

__all__ = ["BACKBONES", "Backbone", "build_backbone"]
