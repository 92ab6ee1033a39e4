"""The Train page's form as data: what was chosen, what is wrong with it, the RunConfig it makes.

Mirrors `ssl-explorer train` (ssl_core/cli.py, cmd_train): the form overrides the same fields
of the same dataclasses and refuses the same bad combinations before a run folder exists, so a
run started here is one the CLI could have started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.workflows.pipeline import POST_STEPS

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
    lr: float = 2e-3
    seed: int = 0
    device: str = "auto"
    resolution: int = 32
    train_size: int | None = None  # None: the dataset's default
    test_size: int | None = None
    after_training: tuple[str, ...] = field(default=POST_STEPS)  # steps the job runs after training

    @property
    def skip(self) -> tuple[str, ...]:
        return tuple(step for step in POST_STEPS if step not in self.after_training)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def problems(choices: TrainChoices) -> list[str]:
    """Why this form cannot start a run, one sentence each; empty when it can."""
    from ssl_core.data import DATASETS
    from ssl_core.models.methods import check_compatible

    found = []
    try:
        check_compatible(choices.method, choices.backbone)
    except (KeyError, ValueError) as e:
        found.append(str(e).strip("'\""))
    if not choices.dataset.strip():
        found.append("give the path of a folder of images, or choose a dataset")
    elif choices.dataset not in DATASETS and not Path(choices.dataset).expanduser().is_dir():
        found.append(f"no folder at '{choices.dataset}' (the path is read on the machine running "
                     "the app); give the path of a folder of images, or choose a dataset")
    if choices.device.startswith("cuda") and not cuda_available():
        found.append("device 'cuda' was chosen but this machine has no CUDA GPU that torch can use; "
                     "choose 'cpu' or 'auto'")
    for value, name in ((choices.epochs, "epochs"), (choices.batch_size, "batch size"),
                        (choices.resolution, "resolution")):
        if value < 1:
            found.append(f"{name} must be at least 1; got {value}")
    for value, name in ((choices.train_size, "train size"), (choices.test_size, "test size")):
        if value is not None and value < 1:
            found.append(f"{name} must be at least 1 (or left empty for the dataset's default); got {value}")
    if not choices.lr > 0:
        found.append(f"learning rate must be positive; got {choices.lr}")
    if choices.after_training and "embed" not in choices.after_training:
        found.append("the steps after training read the embeddings: keep 'embed' or skip them all")
    return found


def build_config(choices: TrainChoices) -> RunConfig:
    """The RunConfig `ssl-explorer train` would build from the same options."""
    from ssl_core.data import dataset_reference

    return RunConfig(
        data=DataConfig(dataset=dataset_reference(choices.dataset), resolution=choices.resolution,
                        train_size=choices.train_size, test_size=choices.test_size, download=choices.download,
                        load=choices.load),
        backbone=BackboneConfig(name=choices.backbone),
        method={"name": choices.method},
        train=TrainConfig(epochs=choices.epochs, batch_size=choices.batch_size, lr=choices.lr,
                          seed=choices.seed, device=choices.device),
    )
