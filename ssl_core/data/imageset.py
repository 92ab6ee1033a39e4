"""`ImageSet`: the one form every dataset takes, whatever its source (in memory, or streamed from files)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_core.data.files import FileImages


@dataclass(frozen=True)
class ImageSet:
    """Images with labels, ids and optional per-image factors, split into train and test.

    All images share one size and are RGB, so every backbone sees 3 channels.

    images:      uint8 tensor (N, H, W, 3), on the CPU; or, for a folder streamed from disk, a
                 `FileImages` that decodes the rows it is indexed with into such a tensor.
    labels:      int64 tensor (N,), class index into `class_names`; -1 where unknown.
    is_train:    bool tensor (N,): True for the train split, False for the test split.
    ids:         N strings, unique; a file's relative path for folders, "train/17" otherwise.
    class_names: one name per class index.
    factors:     name -> numpy array (N,) of a known generative factor (shape colour, scale...)
                 or of a metadata column; integer codes for categorical ones.
    factor_levels: for categorical factors, name -> the level names indexed by the codes.
    mirror_safe: whether an image's mirror image (left to right) still shows what it shows:
                 photographs and drawn shapes do, digits and letters do not (a mirrored 2 is
                 no digit). Methods train such sets without horizontal flips
                 (`ssl_core.models.methods.base.method_config`).
    """

    name: str
    images: torch.Tensor | FileImages
    labels: torch.Tensor
    is_train: torch.Tensor
    ids: tuple[str, ...]
    class_names: tuple[str, ...]
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    factor_levels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mirror_safe: bool = True

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[3] != 3:
            raise ValueError(
                f"images must be uint8 (N, H, W, 3); got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (n,) or self.is_train.shape != (n,) or len(self.ids) != n:
            raise ValueError(
                f"labels {tuple(self.labels.shape)}, is_train {tuple(self.is_train.shape)} and "
                f"{len(self.ids)} ids must all have {n} entries like the images"
            )
        for key, values in self.factors.items():
            if len(values) != n:
                raise ValueError(f"factor '{key}' has {len(values)} values for {n} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: torch.Tensor | np.ndarray) -> "ImageSet":
        """The images at `index` (a bool mask or integer positions), all fields kept aligned."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        np_index = index.numpy()
        return ImageSet(
            name=self.name,
            images=self.images.subset(index) if isinstance(self.images, FileImages) else self.images[index],
            labels=self.labels[index],
            is_train=self.is_train[index],
            ids=tuple(self.ids[i] for i in np_index),
            class_names=self.class_names,
            factors={k: v[np_index] for k, v in self.factors.items()},
            factor_levels=self.factor_levels,
            mirror_safe=self.mirror_safe,
        )

    @property
    def train(self) -> "ImageSet":
        return self.subset(self.is_train)

    @property
    def test(self) -> "ImageSet":
        return self.subset(~self.is_train)
