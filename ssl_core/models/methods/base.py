"""The interface every method implements, and the registry that finds methods by name.

A method owns its backbone, its heads and its loss. The training loop only calls
`training_step`, `after_step` and `embed`; it never asks which method it is running.

A method also says what the analyses may do with its representation, so that no analysis keeps
a table of method names: `representation_module` (the network `encode` reads), `probe_layers`
(the layer-wise probe's taps, the deepest being the embedding), `finetune_modules` (what
fine-tuning may unfreeze), and `no_layers` / `no_maps` (why there is no layer probe, or no
attention or saliency map, when there is none). The defaults fit a method that embeds with its
backbone's pooled output; a method that embeds otherwise (DDPM's UNet, I-JEPA's target encoder,
MAE's mean of patch tokens) overrides them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.backbones import BACKBONES, Backbone, build_backbone
from ssl_core.core.config import DataConfig
from ssl_core.core.registry import Registry

ALL_BACKBONES = ("convnet", "resnet18", "vit_tiny", "vit_mini")


@dataclasses.dataclass
class MethodConfig:
    """Hyperparameters shared by every method; each method subclasses this with its own.

    A run stores its method's settings whole in config.json when it starts training, so a later
    change of a default never changes what an existing run resumes or reloads. Runs that started
    before settings were stored whole hold only their overrides: `earlier_defaults` names, for
    each setting whose default has changed since, the default such runs trained with.
    """

    earlier_defaults: ClassVar[dict[str, Any]] = {}


class Method(nn.Module):
    name: ClassVar[str]  # registry key, e.g. "simclr"
    family: ClassVar[str]  # contrastive | baseline | ...
    description: ClassVar[str]  # one line for `ssl-explorer methods`
    uses_labels: ClassVar[bool] = False  # the supervised baseline sets True
    trainable: ClassVar[bool] = True  # False: the loop runs no steps (the `random` floor)
    backbones: ClassVar[tuple[str, ...]] = ALL_BACKBONES
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    # TrainConfig fields (lr, weight_decay, warmup_epochs, ...) this method trains with unless the
    # request sets them, each with the measurement that chose it; the rest keep core.config's
    # defaults. A run stores the values it used in config.json (`train_settings`).
    train_recipe: ClassVar[dict[str, Any]] = {}
    # Why the layer-wise probe and fine-tuning cannot read this method's representation (a
    # sentence for the user), or None when they can. Class-level, so it is answered from a run's
    # config.json without loading weights.
    no_layers: ClassVar[str | None] = None
    # Why no attention or saliency map can be drawn for this method's representation, or None:
    # then a ViT representation gets attention maps and a CNN one a saliency map.
    no_maps: ClassVar[str | None] = None
    # True for a method that trains a network of its own and ignores the backbone it is given
    # (DDPM's UNet): its floor is that network untrained, read out as the method reads it, not the
    # backbone's random init (bench/recipes.py measures it so).
    own_network: ClassVar[bool] = False

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

    @classmethod
    def cannot_learn(cls, data: DataConfig) -> str | None:
        """Why this method cannot learn anything from this data by construction (a sentence for
        the user, with what to do instead), or None. Asked before a run is created, so that no
        run shows a score that only looks like a result."""
        return None

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        """Make this method's views on the device; return {"loss": scalar, other scalars}."""
        raise NotImplementedError

    def after_step(self, step: int, total_steps: int, *, steps_per_epoch: int | None = None) -> None:
        """Momentum/EMA updates and schedules; called after each optimizer step (`step` counts
        from 0). `steps_per_epoch` is for schedules the papers state in epochs (DINO freezes its
        last layer for the first epoch); None where the caller has no epochs (a test, one batch)."""

    def settings(self) -> dict[str, Any]:
        """{"name": ..., every setting this method was built with}: what a run stores in
        config.json when it starts training."""
        return {"name": self.name, **dataclasses.asdict(self.cfg)}

    def lr_scales(self) -> dict[str, float]:
        """{parameter-name prefix: multiple of the run's learning rate} for parts of the method
        that train at another rate (BYOL's predictor); every other parameter trains at the run's
        rate. `training.optimizer.make_optimizer` reads it."""
        return {}

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

    # -- what the analyses ask -----------------------------------------------------------------
    def representation_module(self) -> nn.Module:
        """The network whose output `encode` pools into the representation: the backbone, unless
        the method embeds with another network (DDPM: its UNet; I-JEPA: its target encoder)."""
        return self.backbone

    def probe_layers(self, images: Tensor) -> dict[str, Tensor]:
        """Normalized images (B, 3, H, W) -> {layer name: (B, D_layer)} pooled features of the
        representation module, shallow to deep; the deepest equals `encode(images)`."""
        if self.no_layers:
            raise ValueError(self.no_layers)
        return self.representation_module().forward_layers(images)

    @property
    def layer_pooling(self) -> str:
        """How `probe_layers` pools each layer, in words (stored with the probe's scores)."""
        return self.representation_module().layer_pooling

    def finetune_modules(self, mode: str) -> list[nn.Module]:
        """The modules fine-tuning unfreezes: "full" everything `encode` reads, "last_block" the
        deepest block of it, "frozen" none. Only weights the method trained belong here."""
        if self.no_layers:
            raise ValueError(self.no_layers)
        if mode == "frozen":
            return []
        if mode == "last_block":
            return list(self.representation_module().last_block())
        if mode == "full":
            return [self.representation_module()]
        raise ValueError(f"unknown fine-tuning mode '{mode}'; known: frozen, last_block, full")


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: `@register_method class SimCLR(Method): name = "simclr" ...`."""
    return METHODS.register(cls.name)(cls)


def method_config(name: str, overrides: dict[str, Any] | None = None, *, stored: bool = False,
                  mirror_safe: bool = True) -> MethodConfig:
    """The method's Config with `overrides` applied; unknown keys name the valid ones. `stored`:
    the overrides are a run's config.json, where a setting it lacks is one the run trained with
    the default of its time (`MethodConfig.earlier_defaults`). `mirror_safe` False (the dataset's
    `ImageSet.mirror_safe`: digits): a new run's views get no horizontal flips (`unmirrored`)."""
    cls = METHODS.get(name)
    overrides = dict(overrides or {})
    overrides.pop("name", None)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"method '{name}' has no setting(s) {unknown}; settings: {sorted(fields)}")
    if stored:
        overrides = {**cls.Config.earlier_defaults, **overrides}
    elif not mirror_safe:
        overrides = unmirrored(cls.Config, overrides)
    return cls.Config(**overrides)


# Flips on images a mirror changes cost the views their label: mnist5k, convnet, 600 steps, kNN
# top-1 (random init 0.876) with flips / without: SimCLR 0.905 / 0.926, VICReg 0.905 / 0.942
# (bench/results/recipes_cpu.md).
_VIEW_KEYS = frozenset(f.name for f in dataclasses.fields(augment.ViewConfig))


def unmirrored(config: type[MethodConfig], overrides: dict[str, Any]) -> dict[str, Any]:
    """`overrides` with `flip_p` 0 in every view setting of `config` (a dict field of ViewConfig
    keys: views, views1, local_views...), for a dataset whose images a mirror changes. Overrides
    that set `flip_p` in any view are left as they are: the person decided."""
    defaults = config()
    views = [f.name for f in dataclasses.fields(config)
             if isinstance(getattr(defaults, f.name), dict) and set(getattr(defaults, f.name)) <= _VIEW_KEYS]
    if any(isinstance(overrides.get(v), dict) and "flip_p" in overrides[v] for v in views):
        return overrides
    return {**overrides, **{v: {**overrides.get(v, getattr(defaults, v)), "flip_p": 0.0} for v in views}}


def train_settings(method_name: str, requested: dict[str, Any]) -> dict[str, Any]:
    """The TrainConfig fields a new run of the method gets: its recipe, then what was asked for."""
    return {**METHODS.get(method_name).train_recipe, **requested}


def run_kind(method_name: str) -> str:
    """What a new run of the method records as its kind (`Run.kind`): "baseline" for a method
    that never trains (the random init, the pixels), else "trained"."""
    return "trained" if METHODS.get(method_name).trainable else "baseline"


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
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.25, 0.25, 0.25),
                 stored: bool = False, mirror_safe: bool = True) -> Method:
    """Build a method from its config dict ({"name": ..., overrides...}) and a backbone name;
    `stored` when the dict is a trained run's config.json, `mirror_safe` the dataset's (see
    `method_config`)."""
    name = method["name"]
    check_compatible(name, backbone)
    cfg = method_config(name, method, stored=stored, mirror_safe=mirror_safe)
    return METHODS.get(name)(build_backbone(backbone, resolution), cfg, resolution=resolution,
                             num_classes=num_classes, mean=mean, std=std)
