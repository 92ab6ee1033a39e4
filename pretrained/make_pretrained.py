"""Regenerate the bundled demo runs in pretrained/ with this project's own training code.

    python pretrained/make_pretrained.py [NAME ...]            # train, score, analyse, bundle
    python pretrained/make_pretrained.py --refresh [NAME ...]  # score and analyse again, no training

Each run is trained on `shapes` (4,000 train / 1,000 test images at 32 px), embedded, scored,
mapped and indexed like any other run; then its checkpoint is slimmed to the method's weights
(no optimizer state), and it is bundled without its search index, which `ssl-explorer demo`
rebuilds in a second: the folder stays a few MB and the demo opens offline.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.workflows.pipeline import run_all
from ssl_core.workflows.train_request import create_training_run
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.run_store import RunStore

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


def analyses_for(backbone: str) -> list[str]:
    """Every analysis, stored with the demo so its pages open filled in; fine-tuning only on the
    convnet runs (on a ViT it takes minutes of CPU per mode)."""
    from ssl_core.analyses.runner import ANALYSES

    return [name for name in ANALYSES if backbone == "convnet" or name != "finetune"]


def score(run) -> None:
    """eval.json and the analyses, computed again on a run whose embeddings are stored."""
    from ssl_core.analyses.runner import JOB_FILE, LOG_FILE, not_applicable, run_analyses
    from ssl_core.steps.evaluate import evaluate_run

    evaluate_run(run)
    skip = not_applicable(run)
    run_analyses(run, [n for n in analyses_for(run.config.backbone.name) if n not in skip], recompute=True,
                 device="cpu", progress=None)
    for name in (JOB_FILE, LOG_FILE):  # a job record names this machine's pid: not part of the demo
        (run.analysis_dir / name).unlink(missing_ok=True)


def publish(run, name: str) -> None:
    """Copy a finished run into pretrained/NAME with its id, pid and host made the bundled ones."""
    target = HERE / name
    shutil.rmtree(target, ignore_errors=True)
    # Not the search index: `ssl-explorer demo` builds it in a second (a flat index is a copy of
    # the embeddings, as large as they are).
    shutil.copytree(run.path, target, ignore=shutil.ignore_patterns("index", ".job.lock"))
    status = run.read_status()
    atomic_write_json(target / "status.json", {**status, "pid": None, "host": None})
    for path in (target / "eval.json", *(target / "analysis").glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "run_id" in record:
            atomic_write_json(path, {**record, "run_id": name})
    print(f"{name}: {(target / 'eval.json').read_text()}")


def main(names: list[str], refresh: bool = False) -> None:
    store = RunStore(HERE / (".refresh" if refresh else ".build"))
    for name in names or list(RUNS):
        if refresh:  # score the bundled run again with today's evaluation code, no retraining
            shutil.rmtree(store.root / name, ignore_errors=True)
            shutil.copytree(HERE / name, store.root / name)
            run = store.get(name)
            score(run)
            publish(run, name)
            continue
        method, backbone, epochs = RUNS[name]
        config = RunConfig(data=DATA, backbone=BackboneConfig(backbone), method={"name": method},
                           train=TrainConfig(epochs=epochs, batch_size=256, device="cpu", knn_every=5))
        run = create_training_run(store, config, ["pretrained/make_pretrained.py"])
        run_all(run, progress=True)
        slim_checkpoint(run.checkpoint_path)
        score(run)
        publish(store.get(run.id), name)
    shutil.rmtree(store.root, ignore_errors=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a != "--refresh"], refresh="--refresh" in args)
