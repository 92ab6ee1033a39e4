"""Tiny run configs that train in seconds on a CPU."""

from __future__ import annotations

from ssl_core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig


def tiny_config(method: str = "simclr", *, train_size: int = 96, test_size: int = 48, epochs: int = 2,
                batch_size: int = 32, **train_overrides) -> RunConfig:
    """shapes at 32 px, a few dozen images, a handful of steps."""
    return RunConfig(
        data=DataConfig(dataset="shapes", train_size=train_size, test_size=test_size),
        backbone=BackboneConfig(name="convnet"),
        method={"name": method},
        train=TrainConfig(**{"epochs": epochs, "batch_size": batch_size, "device": "cpu", "log_every": 1,
                             "knn_max_bank": train_size, "knn_max_queries": test_size, **train_overrides}),
    )
