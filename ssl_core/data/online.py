"""Standard image sets fetched through torchvision: cifar10, cifar100, stl10, svhn, mnist,
fashion_mnist.

Nothing is downloaded unless `DataConfig.download` is set. Files are cached under
`DataConfig.data_dir`, else $SSL_EXPLORER_DATA, else ~/.cache/ssl-explorer/data, one folder per
set. A missing set fails at once with a FileNotFoundError saying where it was looked for and
what to do; an unreachable network fails within NETWORK_TIMEOUT_S.

torchvision is imported only here, and only when one of these sets is loaded, so that
`import ssl_core.data` stays light.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ssl_core.core.config import DataConfig
from ssl_core.data import DATASETS
from ssl_core.data.convert import choose, to_imageset
from ssl_core.data.imageset import ImageSet

DATA_ENV = "SSL_EXPLORER_DATA"
DEFAULT_DATA_DIR = Path("~/.cache/ssl-explorer/data")
NETWORK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class OnlineSet:
    torchvision_class: str  # the class in torchvision.datasets
    split_by_name: bool  # split="train"/"test" (STL-10, SVHN), else train=True/False
    download_mb: int  # what --download fetches, for the error message
    mirror_safe: bool = True  # see ImageSet.mirror_safe: digits are not


ONLINE_SETS = {
    "cifar10": OnlineSet("CIFAR10", False, 163),
    "cifar100": OnlineSet("CIFAR100", False, 161),
    "stl10": OnlineSet("STL10", True, 2640),  # one archive, with the unlabelled split
    "svhn": OnlineSet("SVHN", True, 246, mirror_safe=False),
    "mnist": OnlineSet("MNIST", False, 12, mirror_safe=False),
    "fashion_mnist": OnlineSet("FashionMNIST", False, 30),
}

# Keeps the operator schemas defined by `import_torchvision` alive: torch drops the
# definitions of a torch.library.Library when it is garbage-collected.
_STAND_IN_OPS: list[Any] = []


def import_torchvision():
    """Import torchvision, getting past a build whose C++ ops cannot load.

    A torchvision wheel built for CUDA, installed beside a CPU-only torch, cannot load its ops
    library (_C.so). torchvision is meant to carry on without it (`extension._has_ops()` is then
    False and every op raises its own "Couldn't load custom C++ ops"), but its
    _meta_registrations.py unconditionally registers fake kernels for the ops `nms` and `qnms`,
    which fails with "operator torchvision::nms does not exist". Every other registration there
    and in _autograd_registrations.py is skipped when `_has_ops()` is False, so defining those two
    schemas (as torchvision's C++ defines them), with no kernels, is all the import needs.
    Datasets and transforms work; calling nms still raises torchvision's own clear error.
    The schemas are defined only after a plain import has failed: defining them first would
    clash with a working _C.so.
    """
    try:
        import torchvision  # optional (the `vision` extra): only the online datasets need it
    except RuntimeError as err:
        if "torchvision::nms" not in str(err) and "torchvision::qnms" not in str(err):
            raise
        import torch  # only on this path: importing the data package stays light

        library = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _STAND_IN_OPS.append(library)
        # Forget the half-imported package, so the next import runs its __init__ afresh.
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision  # optional (the `vision` extra): only the online datasets need it
    return torchvision


def data_root(cfg: DataConfig) -> Path:
    """Where online sets are cached: cfg.data_dir, else $SSL_EXPLORER_DATA, else ~/.cache."""
    return Path(cfg.data_dir or os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR).expanduser()


def _download_url(dataset_class: type) -> str:
    """The first URL a torchvision dataset class downloads from."""
    if hasattr(dataset_class, "mirrors"):  # MNIST, FashionMNIST
        return dataset_class.mirrors[0] + dataset_class.resources[0][0]
    if hasattr(dataset_class, "split_list"):  # SVHN
        return dataset_class.split_list["train"][0]
    return dataset_class.url  # CIFAR10, CIFAR100, STL10


@contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    # torchvision's downloads use urllib without a timeout: a dead network would hang.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _check_reachable(name: str, url: str) -> None:
    """Fail fast when the download host cannot be reached, before torchvision's retries."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname, port), timeout=NETWORK_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(
            f"cannot download dataset '{name}': {parsed.hostname} is unreachable ({err}). "
            "Check the network connection, or copy the files from a machine that has one."
        ) from err


def _open_split(name: str, train: bool, cfg: DataConfig):
    """The torchvision dataset object for one official split, downloading if allowed."""
    spec = ONLINE_SETS[name]
    datasets = import_torchvision().datasets
    dataset_class = getattr(datasets, spec.torchvision_class)
    root = data_root(cfg) / name
    split = "train" if train else "test"
    kwargs = {"split": split} if spec.split_by_name else {"train": train}
    try:
        return dataset_class(str(root), download=False, **kwargs)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        if not cfg.download:
            raise FileNotFoundError(
                f"dataset '{name}' ({split} split) was not found (or is corrupted) in {root}. "
                f"Either pass --download (DataConfig.download=True) on a machine with internet "
                f"to fetch it (about {spec.download_mb} MB), or copy the files that torchvision's "
                f"{spec.torchvision_class} expects into {root}."
            ) from err
    root.mkdir(parents=True, exist_ok=True)
    _check_reachable(name, _download_url(dataset_class))
    with _network_timeout(NETWORK_TIMEOUT_S):
        try:
            return dataset_class(str(root), download=True, **kwargs)
        except (OSError, RuntimeError) as err:  # urllib's errors are OSErrors
            raise ConnectionError(
                f"downloading dataset '{name}' into {root} failed: {err}"
            ) from err


def _arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W, C) or (N, H, W), labels int64 (N,)) from a torchvision set."""
    images = np.asarray(dataset.data)
    labels = np.asarray(dataset.targets if hasattr(dataset, "targets") else dataset.labels)
    if images.ndim == 4 and images.shape[1] == 3:  # STL-10 and SVHN store channels first
        images = images.transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def load_online(name: str, cfg: DataConfig) -> ImageSet:
    """Official train and test splits, each optionally subsampled (stratified, cfg.seed)."""
    train_rng, test_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(2)
    )
    parts, ids = [], []
    for split, size, rng in (
        ("train", cfg.train_size, train_rng),
        ("test", cfg.test_size, test_rng),
    ):
        dataset = _open_split(name, split == "train", cfg)
        images, labels = _arrays(dataset)
        keep = choose(labels, size, rng, dataset=name, split=split)
        parts.append((images[keep], labels[keep]))
        # ids keep the official index, so "test/17" is the 18th image of the official test split.
        ids += [f"{split}/{i}" for i in keep]
    # SVHN names no classes; its labels are the digits (torchvision maps the '10' for 0 to 0).
    class_names = getattr(dataset, "classes", None) or [str(d) for d in range(10)]
    return to_imageset(
        name,
        np.concatenate([parts[0][0], parts[1][0]]),
        np.concatenate([parts[0][1], parts[1][1]]),
        len(parts[0][1]),
        ids,
        class_names,
        cfg.resolution,
        mirror_safe=ONLINE_SETS[name].mirror_safe,
    )


def _register(name: str) -> None:
    @DATASETS.register(name)
    def load(cfg: DataConfig) -> ImageSet:
        return load_online(name, cfg)

    load.__doc__ = f"{name} via torchvision.datasets.{ONLINE_SETS[name].torchvision_class}."


for _name in ONLINE_SETS:
    _register(_name)
