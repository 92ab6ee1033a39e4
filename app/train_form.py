"""The Train page's form as data: what was chosen, as the `TrainRequest` that `ssl-explorer
train` makes from its options. What is wrong with a request, and the RunConfig it makes, are the
library's (`TrainRequest.problems`, `TrainRequest.config`): the page and the CLI refuse the same
requests with the same sentences, so a run started here is one the CLI could have started.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssl_core.core.config import TrainConfig
from ssl_core.models.methods.base import train_settings
from ssl_core.steps.readiness import POST_STEPS
from ssl_core.workflows.train_request import TrainRequest

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainChoices:
    method: str = "simclr"
    backbone: str = "convnet"
    dataset: str = "shapes"  # a registered name or a folder path
    download: bool = False  # online sets only
    load: str = "auto"  # folders only: auto | memory | stream (DataConfig.load)
    epochs: int = 10
    batch_size: int = 256
    lr: float | None = None  # None: the method's recipe (Method.train_recipe), else core.config's
    seed: int = 0
    device: str = "auto"
    resolution: int = 32
    train_size: int | None = None  # None: the dataset's default
    test_size: int | None = None
    max_rotation: float = 360.0  # shapes only (DataConfig.max_rotation)
    after_training: tuple[str, ...] = field(default=POST_STEPS)  # steps the job runs after training

    @property
    def skip(self) -> tuple[str, ...]:
        return tuple(step for step in POST_STEPS if step not in self.after_training)

    def request(self) -> TrainRequest:
        return TrainRequest(
            method=self.method, backbone=self.backbone, dataset=self.dataset,
            data={"resolution": self.resolution, "train_size": self.train_size, "test_size": self.test_size,
                  "download": self.download, "load": self.load,
                  **({"max_rotation": self.max_rotation} if self.dataset == "shapes" else {})},
            train={"epochs": self.epochs, "batch_size": self.batch_size, "seed": self.seed, "device": self.device,
                   **({} if self.lr is None else {"lr": self.lr})},
            skip=self.skip)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def recipe_lr(method: str) -> float:
    """The learning rate a run of `method` gets when the form leaves it empty."""
    return train_settings(method, {}).get("lr", TrainConfig.lr)
