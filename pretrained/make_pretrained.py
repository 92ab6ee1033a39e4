"""Regenerate the bundled demo runs in pretrained/ with this project's own training code.

    python pretrained/make_pretrained.py            # ~5 minutes on a 2-core CPU

Each run is trained on `shapes` (4,000 train / 1,000 test images at 32 px), embedded, scored,
mapped and indexed like any other run; then its checkpoint is slimmed to the method's weights
(no optimizer state), so the folder stays a few MB and the demo opens offline at once.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from ssl_core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.pipeline import run_all
from ssl_core.runs import RunStore, atomic_write_json

HERE = Path(__file__).resolve().parent
DATA = DataConfig(dataset="shapes", train_size=4000, test_size=1000)
RUNS = {  # name -> (method, backbone, epochs): 15 steps per epoch at batch 256
    "demo-simclr-shapes": ("simclr", "convnet", 30),
    "demo-supervised-shapes": ("supervised", "convnet", 15),
    "demo-random-shapes": ("random", "convnet", 1),
    "demo-autoencoder-shapes": ("autoencoder", "convnet", 30),
    # A trained and a random-init ViT for the Attention page: 34% of the trained one's CLS attention
    # falls inside the shape (the shapes' area: 16%), the random one's 16%.
    "demo-supervised-vit-shapes": ("supervised", "vit_mini", 12),
    "demo-random-vit-shapes": ("random", "vit_mini", 1),
}


def slim_checkpoint(path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    slim = {"method": state["method"], "num_classes": state["num_classes"], "step": state["step"],
            "total_steps": state["total_steps"]}
    torch.save(slim, path)


def main(names: list[str]) -> None:
    store = RunStore(HERE / ".build")
    for name in names or list(RUNS):
        method, backbone, epochs = RUNS[name]
        config = RunConfig(data=DATA, backbone=BackboneConfig(backbone), method={"name": method},
                           train=TrainConfig(epochs=epochs, batch_size=256, device="cpu", knn_every=5))
        from ssl_core.train import versions

        run = store.create(config, extra={"versions": versions(), "command": ["pretrained/make_pretrained.py"]})
        run_all(run, progress=True)
        slim_checkpoint(run.checkpoint_path)
        target = HERE / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(run.path, target)
        status = store.get(run.id).read_status()
        atomic_write_json(target / "status.json", {**status, "pid": None, "host": None})
        scores = json.loads((target / "eval.json").read_text())
        atomic_write_json(target / "eval.json", {**scores, "run_id": name})
        print(f"{name}: {(target / 'eval.json').read_text()}")
    shutil.rmtree(store.root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
