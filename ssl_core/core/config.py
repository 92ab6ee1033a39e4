"""Run configuration: one dataclass per concern, saved whole as the run's config.json.

The CLI and the app only override fields; `RunConfig.to_dict()` is the single truth that makes a
run reproducible (together with the library versions recorded beside it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


DATA_LOADS = ("auto", "memory", "stream")


@dataclass
class DataConfig:
    dataset: str = "shapes"  # a registered name (see `ssl-explorer datasets`) or a folder path
    resolution: int = 32  # images are served at resolution x resolution
    train_size: int | None = None  # None: the dataset's own default (shapes: 20,000)
    test_size: int | None = None  # None: the dataset's own default (shapes: 5,000)
    seed: int = 0  # generates `shapes` and draws train/test splits; fixed apart from the run seed
    # `shapes` only: each shape turns uniformly all the way round (360), or within +-half this
    # many degrees of upright; rotation prediction can only learn where "up" means something.
    max_rotation: float = 360.0
    data_dir: str | None = None  # cache for online sets; None: $SSL_EXPLORER_DATA or ~/.cache
    download: bool = False  # online sets download only when this is set
    # Folders only. "memory": decode every image into RAM once (fastest per epoch); "stream": keep
    # them in their files and decode each batch in DataLoader workers (folders larger than RAM);
    # "auto": stream when the decoded images would take more than a quarter of this machine's RAM.
    # Both give identical pixels, so the choice changes memory and speed, never results.
    load: str = "auto"  # auto | memory | stream
    workers: int | None = None  # decoding processes when streaming; None: cores - 1, at most 8

    def __post_init__(self) -> None:
        if self.load not in DATA_LOADS:
            raise ValueError(f"unknown data load '{self.load}'; known: {', '.join(DATA_LOADS)}")
        if not 0 <= self.max_rotation <= 360:
            raise ValueError(f"max_rotation must be between 0 and 360 degrees; got {self.max_rotation}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be 0 or more; got {self.workers}")


@dataclass
class BackboneConfig:
    name: str = "convnet"  # convnet | resnet18 | vit_tiny | vit_mini


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 256
    lr: float = 2e-3  # peak learning rate after warm-up (AdamW)
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to zero
    seed: int = 0  # model init, shuffling and augmentation draws
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    checkpoint_every: int = 200  # steps between checkpoints (one is also written at each epoch end)
    # ...but no more often than this: a GPU epoch of CIFAR-10 takes 2 s and each save copies the
    # whole state off the GPU (measured on an H100: per-epoch saves cost ~35% of a 200-epoch run).
    # The first checkpoint, a stop and the end always save.
    checkpoint_min_seconds: float = 60.0
    log_every: int = 10  # steps between metrics.jsonl lines
    knn_every: int = 1  # epochs between held-out kNN checks (0: never during training)
    knn_max_bank: int = 5000  # train images in the periodic kNN bank (the final eval uses all)
    knn_max_queries: int = 1000  # held-out images queried by the periodic kNN check
    # Held-out images mapped at each kNN check (0: off), the first of the test split: the map as it
    # learns (steps/map_snapshots.py). 2,000: 3.5 s at the first check (import umap, a full UMAP), 0.6-0.7 s
    # at each after, 3-5% of a default CPU run's wall time (bench/results/map_snapshots_cpu.md).
    map_snapshots: int = 2000
    compile: bool = False  # torch.compile the method (GPU runs)

    def __post_init__(self) -> None:
        if self.map_snapshots < 0:
            raise ValueError(f"map_snapshots must be 0 (off) or more; got {self.map_snapshots}")


PROJECTION_BACKENDS = ("auto", "umap-learn", "cuml", "torchdr")


@dataclass
class ProjectConfig:
    # auto: cuML when it is installed and a CUDA GPU is present, else TorchDR likewise, else
    # umap-learn (CPU). The backend actually used, its version and timings go to
    # projection/params.json: it depends on the machine that ran the step, not on the run.
    backend: str = "auto"  # auto | umap-learn | cuml | torchdr
    n_neighbors: int = 15  # UMAP's neighbourhood size: larger keeps more global structure
    min_dist: float = 0.1  # how tightly UMAP packs neighbours together in the map

    def __post_init__(self) -> None:
        if self.backend not in PROJECTION_BACKENDS:
            raise ValueError(f"unknown projection backend '{self.backend}'; "
                             f"known: {', '.join(PROJECTION_BACKENDS)}")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    method: dict[str, Any] = field(default_factory=lambda: {"name": "simclr"})  # name + overrides
    train: TrainConfig = field(default_factory=TrainConfig)
    project: ProjectConfig = field(default_factory=ProjectConfig)  # absent in older runs: defaults

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        """Rebuild from config.json; unknown keys are an error (a hand-edit with a typo)."""
        return cls(
            data=_build(DataConfig, raw.get("data", {})),
            backbone=_build(BackboneConfig, raw.get("backbone", {})),
            method=dict(raw.get("method", {"name": "simclr"})),
            train=_build(TrainConfig, raw.get("train", {})),
            project=_build(ProjectConfig, raw.get("project", {})),
        )


def _build(kind: type, values: dict[str, Any]):
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {kind.__name__} field(s) {unknown}; known: {sorted(known)}")
    return kind(**values)
