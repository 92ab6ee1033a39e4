"""Where to read a trained DDPM: every noise level `encode_t` and UNet block `encode_block`, probed.

    python bench/ddpm_readout.py --datasets mnist5k,shapes --steps 600

DDPM's representation is a choice made after training: which timestep the image is noised to
before the UNet reads it, and which block's pooled output is kept. This trains one DDPM per dataset
(the method's defaults, bench/methods.py's data and batch), then embeds the images with every
(t, block) pair. The pair is chosen on the train split alone (weighted kNN, k=20, of a fifth of
the train images against the other four fifths), and the held-out test kNN of every pair is
reported beside it, so the choice never looks at the test images. Results:
bench/results/ddpm_readout_<device>.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from harness import add_budget_arguments
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.data import load_dataset
from ssl_core.models.checkpoint import load_method
from ssl_core.models.methods.ddpm import UNET_BLOCKS
from ssl_core.steps.embed import embed_images
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import build_for_run, train

RESULTS = Path(__file__).resolve().parent / "results"
TIMESTEPS = (0, 10, 25, 50, 100, 200, 400)


def readout_table(dataset: str, args, store: RunStore) -> list[dict]:
    steps_per_epoch = args.train_size // args.batch_size
    config = RunConfig(
        data=DataConfig(dataset=dataset, train_size=args.train_size, test_size=args.test_size),
        backbone=BackboneConfig("convnet"), method={"name": "ddpm"},
        train=TrainConfig(epochs=max(1, round(args.steps / steps_per_epoch)), batch_size=args.batch_size,
                          device=args.device, seed=0, knn_every=0, checkpoint_every=10**9, log_every=50))
    run = store.create(config)
    started = time.perf_counter()
    train(run, progress=False)
    print(f"{dataset}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    method = load_method(run, args.device)
    data = load_dataset(config.data)
    untrained = build_for_run(config, data, torch.device(args.device)).eval()  # the same seed's init
    train_y, test_y = data.train.labels.numpy(), data.test.labels.numpy()
    classes = int(max(train_y.max(), test_y.max())) + 1
    rng = np.random.default_rng(0)
    held = np.zeros(len(train_y), dtype=bool)
    held[rng.choice(len(train_y), len(train_y) // 5, replace=False)] = True
    rows = []
    for t in TIMESTEPS:
        for block in UNET_BLOCKS:
            scores = {}
            for name, net in (("", method), ("random_", untrained)):
                net.cfg.encode_t, net.cfg.encode_block = t, block
                train_x = embed_images(net, data.train.images, device=args.device).numpy()
                test_x = embed_images(net, data.test.images, device=args.device).numpy()
                scores[f"{name}train_knn"] = weighted_knn(train_x[~held], train_y[~held], train_x[held],
                                                          train_y[held], num_classes=classes)
                scores[f"{name}test_knn"] = weighted_knn(train_x, train_y, test_x, test_y, num_classes=classes)
            rows.append({"dataset": dataset, "encode_t": t, "encode_block": block, "dim": train_x.shape[1], **scores})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="mnist5k,shapes")
    add_budget_arguments(parser)
    args = parser.parse_args()
    where = "gpu" if args.device.startswith("cuda") else "cpu"
    lines = ["# DDPM: where to read the trained UNet", "",
             f"One DDPM per dataset, {args.steps} steps, batch {args.batch_size}, {args.train_size} train / "
             f"{args.test_size} test images, the method's defaults otherwise, seed 0, {where}.",
             f"Command: `python bench/ddpm_readout.py {' '.join(sys.argv[1:])}`", "",
             "Chosen on the train split alone: `train kNN` scores a fifth of the train images against the "
             "other four fifths; `test kNN` is the held-out score, shown for every pair but never used to "
             "choose. ★ marks each dataset's choice. `random`: the same UNet at its seeded initialisation, read "
             "the same way (its floor).", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            rows = readout_table(dataset, args, RunStore(tmp))
            best = max(rows, key=lambda r: r["train_knn"])
            lines += [f"## {dataset}", "", "| t | block | dim | train kNN | test kNN | random train kNN | random test kNN |",
                      "|---|---|---|---|---|---|---|"]
            for r in rows:
                mark = " ★" if r is best else ""
                lines.append(f"| {r['encode_t']} | {r['encode_block']}{mark} | {r['dim']} | {r['train_knn']:.3f} | "
                             f"{r['test_knn']:.3f} | {r['random_train_knn']:.3f} | {r['random_test_knn']:.3f} |")
            lines.append("")
            (RESULTS / f"ddpm_readout_{where}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
