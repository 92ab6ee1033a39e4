"""The floor and the ceiling of every comparison: `random` (the untrained encoder) and
`supervised` (the same backbone trained with labels)."""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

from ssl_core.models import augment
from ssl_core.models.methods.base import Method, MethodConfig, register_method


@register_method
class RandomInit(Method):
    name = "random"
    family = "baseline"
    description = "the untrained encoder at its seeded initialisation: the floor of every comparison"
    trainable = False

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        raise RuntimeError("the random baseline is never trained")


@dataclasses.dataclass
class SupervisedConfig(MethodConfig):
    # Standard supervised augmentation: crops and flips, no colour changes.
    views: dict = dataclasses.field(default_factory=lambda: {
        "crop_scale": (0.35, 1.0), "jitter_p": 0.0, "grayscale_p": 0.0})
    label_smoothing: float = 0.0


@register_method
class Supervised(Method):
    name = "supervised"
    family = "baseline"
    description = "cross-entropy on the labels with a linear classifier: the ceiling to compare against"
    uses_labels = True
    Config = SupervisedConfig

    def __init__(self, backbone, cfg: SupervisedConfig, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        if self.num_classes < 2:
            raise ValueError(f"supervised training needs at least 2 classes; the dataset has {self.num_classes}")
        self.classifier = nn.Linear(backbone.out_dim, self.num_classes)
        self.view_cfg = augment.ViewConfig(**cfg.views)

    def training_step(self, images_u8: Tensor, labels: Tensor | None) -> dict[str, Tensor]:
        if labels is None or bool((labels < 0).any()):
            raise ValueError("the supervised baseline needs a label for every training image")
        x = self.normalize(augment.make_views(images_u8, self.view_cfg, self.resolution))
        logits = self.classifier(self.encode(x))
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg.label_smoothing)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return {"loss": loss, "train_acc": accuracy.detach()}
