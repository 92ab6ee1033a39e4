"""`digits`: scikit-learn's 1,797 handwritten 8x8 digits (UCI optdigits), upsampled.

Ships with scikit-learn, so it works offline; tiny and fast, for smoke tests and demos.
"""

from __future__ import annotations

import numpy as np

from ssl_core.core.config import DataConfig
from ssl_core.data import DATASETS
from ssl_core.data.convert import split_and_build
from ssl_core.data.imageset import ImageSet


@DATASETS.register("digits")
def load_digits(cfg: DataConfig) -> ImageSet:
    """scikit-learn's 1,797 8x8 handwritten digits, upsampled; seeded stratified 80/20 split."""
    from sklearn.datasets import load_digits as sklearn_digits  # heavy: only when asked for

    bunch = sklearn_digits()
    # Pixel values are ink counts 0..16 over 4x4 blocks of the original scans.
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    # a mirrored digit is no digit
    return split_and_build("digits", images, labels, [str(c) for c in bunch.target_names], cfg, mirror_safe=False)
