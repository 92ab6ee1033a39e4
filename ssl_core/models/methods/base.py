"""The interface every method implements, and the registry that finds methods by name.

A method owns its backbone, its heads and its loss. The training loop only calls
`training_step`, `after_step` and `embed`; it never asks which method it is running.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.backbones import BACKBONES, Backbone, build_backbone
from ssl_core.core.registry import Registry

ALL_BACKBONES = ("convnet", "resnet18", "vit_tiny", "vit_mini")


@dataclasses.dataclass
class MethodConfig:
    """Hyperparameters shared by every method; each method subclasses this with its own."""


class Method(nn.Module):
    name: ClassVar[str]  # registry key, e.g. "simclr"
    family: ClassVar[str]  # contrastive | baseline | ...
    description: ClassVar[str]  # one line for `ssl-explorer methods`
    uses_labels: ClassVar[bool] = False  # the supervised baseline sets True
    trainable: ClassVar[bool] = True  # False: the loop runs no steps (the `random` floor)
    backbones: ClassVar[tuple[str, ...]] = ALL_BACKBONES
    Config: ClassVar[type[MethodConfig]] = MethodConfig

    def __init__(self, backbone: Backbone, cfg: MethodConfig, *, resolution: int, num_classes: int,
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.resolution = resolution
        self.num_classes = num_classes
        # Per-channel statistics of the train split; buffers, so they travel in the checkpoint
        # and an uploaded image is normalized exactly as the training images were.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """Make this method's views on the device; return {"loss": scalar, other scalars}."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int) -> None:
        """Momentum/EMA updates and schedules; called after each optimizer step."""

    def encode(self, images: Tensor) -> Tensor:
        """Normalized float images (B, 3, H, W) -> the representation (B, D)."""
        return self.backbone(images)

    def normalize(self, images: Tensor) -> Tensor:
        """Float images in [0, 1] (B, 3, H, W) -> normalized with the train split's statistics."""
        return (images - self.mean) / self.std

    @torch.no_grad()
    def embed(self, images_u8: Tensor) -> Tensor:
        """uint8 images (B, H, W, 3), un-augmented -> representation (B, D), float32."""
        x = self.normalize(augment.to_float(images_u8))
        return self.encode(x).float()

    @property
    def embedding_dim(self) -> int:
        return self.backbone.out_dim


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: `@register_method class SimCLR(Method): name = "simclr" ...`."""
    return METHODS.register(cls.name)(cls)


def method_config(name: str, overrides: dict[str, Any] | None = None) -> MethodConfig:
    """The method's Config with `overrides` applied; unknown keys name the valid ones."""
    cls = METHODS.get(name)
    overrides = dict(overrides or {})
    overrides.pop("name", None)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"method '{name}' has no setting(s) {unknown}; settings: {sorted(fields)}")
    return cls.Config(**overrides)


def check_compatible(method_name: str, backbone_name: str) -> None:
    """Raise ValueError when a method cannot train this backbone (e.g. MAE needs a ViT)."""
    cls = METHODS.get(method_name)
    BACKBONES.get(backbone_name)
    if backbone_name not in cls.backbones:
        raise ValueError(
            f"method '{method_name}' does not support backbone '{backbone_name}'; "
            f"it supports: {', '.join(cls.backbones)}"
        )


def build_method(method: dict[str, Any], backbone: str, *, resolution: int, num_classes: int,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25)) -> Method:
    """Build a method from its config dict ({"name": ..., overrides...}) and a backbone name."""
    name = method["name"]
    check_compatible(name, backbone)
    cfg = method_config(name, method)
    return METHODS.get(name)(build_backbone(backbone, resolution), cfg, resolution=resolution,
                             num_classes=num_classes, mean=mean, std=std)
