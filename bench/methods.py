"""Every method, the same budget, on `shapes` and on the bundled real digits (`mnist5k`), on CPU.

    python bench/methods.py                          # all methods, both datasets
    python bench/methods.py --methods simclr,byol --datasets shapes --epochs 5

Each row trains one method from scratch (same images, epochs, batch size, seed and learning rate
for all), embeds the train and test images, and scores them with the weighted kNN (k=20) and a
linear probe. `random` (untrained encoder) and `pixels` are the floors; `supervised` the
ceiling. ViT-only methods (MAE, I-JEPA) are compared with a random-init ViT too.

Rows are appended to bench/results/methods_cpu.json as they finish and the Markdown table is
rewritten each time, so an interrupted benchmark resumes where it stopped (--fresh to start over).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from ssl_core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.embed import embed_run
from ssl_core.evaluate import evaluate_run
from ssl_core.methods import METHODS
from ssl_core.runs import RunStore
from ssl_core.train import train

RESULTS = Path(__file__).resolve().parent / "results"


def backbone_for(method: str) -> str:
    supported = METHODS.get(method).backbones
    return "convnet" if "convnet" in supported else supported[0]


def bench_one(method: str, backbone: str, dataset: str, args, store: RunStore) -> dict:
    config = RunConfig(
        data=DataConfig(dataset=dataset, train_size=args.train_size, test_size=args.test_size),
        backbone=BackboneConfig(backbone), method={"name": method},
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device="cpu",
                          seed=0, knn_every=0, checkpoint_every=10**9, log_every=10**9))
    run = store.create(config)
    started = time.perf_counter()
    train(run, progress=False)
    seconds = time.perf_counter() - started
    status = run.read_status()
    embed_run(run, device="cpu", progress=False)
    scores = evaluate_run(run)
    images = status["total_steps"] * min(args.batch_size, scores["num_train"])
    return {"method": method, "family": METHODS.get(method).family, "backbone": backbone, "dataset": dataset,
            "knn_top1": scores["knn_top1"], "linear_top1": scores["linear_top1"],
            "seconds": round(seconds, 1), "images_per_s": round(images / seconds, 1) if images else None,
            "steps": status["total_steps"]}


def write_table(rows: list[dict], args) -> None:
    lines = [f"# Methods on CPU: same budget for every method",
             "",
             f"{args.epochs} epochs, batch {args.batch_size}, AdamW lr {args.lr}, {args.train_size} train / "
             f"{args.test_size} test images at 32 px, seed 0; {torch.get_num_threads()} CPU threads, "
             f"torch {torch.__version__}, {platform.processor() or platform.machine()}.",
             f"Command: `python bench/methods.py {' '.join(args.argv)}`".rstrip(),
             "",
             "| dataset | method | family | backbone | kNN top-1 | linear top-1 | seconds | images/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], -(r["knn_top1"] or 0))):
        ips = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "-"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['family']} | {r['backbone']} | {r['knn_top1']:.3f} | "
                     f"{r['linear_top1']:.3f} | {r['seconds']:.0f} | {ips} |")
    (RESULTS / "methods_cpu.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help="comma-separated names, or all")
    parser.add_argument("--datasets", default="shapes,mnist5k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--train-size", type=int, default=4000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows")
    import sys

    args = parser.parse_args()
    args.argv = sys.argv[1:]
    methods = METHODS.names() if args.methods == "all" else args.methods.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "methods_cpu.json"
    rows = [] if args.fresh or not out.exists() else json.loads(out.read_text())
    done = {(r["method"], r["backbone"], r["dataset"]) for r in rows}
    jobs = [(m, backbone_for(m)) for m in methods]
    if any(b == "vit_tiny" for _, b in jobs) and "random" in methods:
        jobs.append(("random", "vit_tiny"))  # the floor for ViT-only methods
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        for dataset in args.datasets.split(","):
            for method, backbone in jobs:
                if (method, backbone, dataset) in done:
                    continue
                row = bench_one(method, backbone, dataset, args, store)
                print(json.dumps(row), flush=True)
                rows.append(row)
                out.write_text(json.dumps(rows, indent=2) + "\n")
                write_table(rows, args)


if __name__ == "__main__":
    main()
