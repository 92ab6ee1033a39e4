"""The recipe sweep: each method's variants (learning rate, heads, momentum, losses, views) at one
budget, beside the random-init floor of the same backbone on the same data.

    python bench/recipes.py --device cuda --workers 14            # the whole grid, on a GPU
    python bench/recipes.py --methods simclr,byol --datasets mnist5k --steps 150

Every row trains from scratch with bench/methods.py's `bench_one` (same data, batch, seed and
scoring as the methods table), so a variant that wins here is a default the methods table can
check. Rows go to bench/results/recipes_<device>.jsonl as they finish (an interrupted sweep
resumes), and the Markdown table beside it is rewritten at the end: per dataset and method, each
variant's kNN top-1 and its gap to the floor.

`--deadline` stops starting rows after that many seconds (what has finished is kept): a GPU lent
for a few minutes runs the grid in the order written below, base rows first.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Learning rates tried for every method beside its recipe's (AdamW, 1 epoch of warm-up; 2e-3 unless the
# method's Method.train_recipe says).
LRS = (5e-4, 5e-3)
WIDE = lambda d: {"proj_hidden_dim": d, "proj_dim": d}  # noqa: E731

# method -> [(variant name, method settings, train settings)], the base row first.
VARIANTS: dict[str, list[tuple[str, dict, dict]]] = {
    "simclr": [("final BN", {"proj_last_batch_norm": True}, {}), ("temperature 0.1", {"temperature": 0.1}, {}),
               ("temperature 0.5", {"temperature": 0.5}, {}),
               ("crops 0.2-1", {"views": {"crop_scale": (0.2, 1.0), "hue": 0.5}}, {})],
    "moco": [("symmetric", {"symmetric": True}, {}), ("momentum 0.9", {"momentum": 0.9}, {}),
             ("momentum 0.996 cosine", {"momentum": 0.996, "momentum_cosine": True}, {}),
             ("queue 1024", {"queue_size": 1024}, {})],
    "nce": [("rank 16", {"rank": 16}, {})],
    "byol": [("momentum 0.9", {"base_momentum": 0.9}, {}), ("momentum 0.996", {"base_momentum": 0.996}, {}),
             ("head 4096", {"proj_hidden_dim": 4096}, {}), ("wd 0.05", {}, {"weight_decay": 0.05}),
             ("predictor 1x", {"predictor_lr_scale": 1.0}, {})],
    "dino": [("momentum 0.99", {"base_momentum": 0.99}, {}), ("momentum 0.9", {"base_momentum": 0.9}, {}),
             ("head BN", {"head_batch_norm": True}, {}), ("K 1024", {"out_dim": 1024}, {}),
             ("teacher 0.07", {"teacher_temp": 0.07}, {}), ("4 local crops", {"n_local_crops": 4}, {}),
             ("freeze last 1", {"freeze_last_layer_epochs": 1}, {})],
    "barlow_twins": [("width 2048", WIDE(2048), {}), ("width 4096", WIDE(4096), {}),
                     ("lambda 2e-3", {"lambd": 2e-3}, {})],
    "vicreg": [("width 2048", WIDE(2048), {}), ("width 4096", WIDE(4096), {})],
    "cpc": [("offset 1", {"min_offset": 1}, {})],
    "rotation": [("linear head", {"head_hidden_dim": 0}, {})],
    "autoencoder": [],
    "vae": [("KL warm-up 0.3", {"kl_warmup": 0.3}, {}), ("KL warm-up 1.0", {"kl_warmup": 1.0}, {}),
            ("beta 0.5", {"beta": 0.5}, {})],
    "ddpm": [("t 25", {"encode_t": 25}, {}), ("t 300", {"encode_t": 300}, {}),
             ("block down3", {"encode_block": "down3"}, {}), ("block mid1", {"encode_block": "mid1"}, {}),
             ("block down2", {"encode_block": "down2"}, {})],
    "mae": [("lr 1e-3 warm-up 5", {}, {"lr": 1e-3, "warmup_epochs": 5}), ("mask 0.5", {"mask_ratio": 0.5}, {}),
            ("CLS pool", {"pool": "cls"}, {}), ("raw pixels", {"norm_pix_loss": False}, {})],
    "ijepa": [("smooth L1", {"loss": "smooth_l1"}, {}), ("EMA 0.99", {"ema_start": 0.99}, {}),
              ("smooth L1 lr 1e-3 warm-up 5", {"loss": "smooth_l1"}, {"lr": 1e-3, "warmup_epochs": 5})],
}
# The floors and the ceiling: every backbone's random init, raw pixels, supervised on each backbone.
FLOORS = [("random", "convnet"), ("random", "vit_tiny"), ("random", "resnet18"), ("random", "vit_mini"),
          ("pixels", "convnet")]
CEILINGS = [("supervised", b) for b in ("convnet", "resnet18", "vit_tiny", "vit_mini")]
# The floor of a method that trains a network of its own (`Method.own_network`, DDPM's UNet): that
# network untrained, read out as the method reads it, in a row of this name (0 epochs).
UNTRAINED = "untrained (its floor)"


def rows_for(dataset: str, methods: list[str]) -> list[list[dict]]:
    """The grid for one dataset in tiers, most needed first: the floors and ceilings with every
    method's default row, then the learning rates, then each method's own variants."""
    from ssl_core.core.config import DataConfig
    from ssl_core.models.methods import METHODS

    def row(method, backbone, variant="default", settings=None, train=None, data=None):
        return {"dataset": dataset, "method": method, "backbone": backbone, "variant": variant,
                "settings": settings or {}, "train": train or {}, "data": data or {}}

    def data_for(method):  # rotation cannot learn shapes at any angle: it gets near-upright shapes
        return {"max_rotation": 30} if METHODS.get(method).cannot_learn(DataConfig(dataset=dataset)) else {}

    picked = [m for m in VARIANTS if m in methods]
    backbone = lambda m: "convnet" if "convnet" in METHODS.get(m).backbones else "vit_tiny"  # noqa: E731
    first = [row(m, b) for m, b in FLOORS + CEILINGS]
    if dataset == "shapes":
        first.append(row("random", "convnet", "upright shapes", data={"max_rotation": 30}))
    first += [row(m, backbone(m), data=data_for(m)) for m in picked]
    first += [row(m, backbone(m), UNTRAINED, train={"epochs": 0}) for m in picked if METHODS.get(m).own_network]
    second = [row(m, backbone(m), f"lr {lr:g}", train={"lr": lr}, data=data_for(m)) for lr in LRS for m in picked]
    second += [row("supervised", b, "lr 5e-4", train={"lr": 5e-4}) for b in ("vit_tiny", "vit_mini")]
    third = [row(m, backbone(m), name, settings, train, data_for(m))
             for m in picked for name, settings, train in VARIANTS[m]]
    return [first, second, third]


def key(row: dict) -> tuple:
    return row["dataset"], row["method"], row["backbone"], row["variant"]


def run_row(row: dict, args_dict: dict) -> dict:
    """Worker: one row, in a process of its own (CUDA initialised once per worker)."""
    import torch

    from methods import bench_one
    from ssl_core.store.run_store import RunStore

    torch.set_num_threads(args_dict["threads"])
    args = argparse.Namespace(**args_dict)
    with tempfile.TemporaryDirectory() as tmp:
        scores = bench_one(row["method"], row["backbone"], row["dataset"], args, RunStore(tmp),
                           settings=row["settings"], train_settings=row["train"], data_settings=row["data"])
    return {**row, **scores}


def write_table(rows: list[dict], path: Path, args) -> None:
    from methods import verdict

    from ssl_core.models.methods import METHODS

    floors = {(r["dataset"], r["backbone"], json.dumps(r["data"], sort_keys=True)): r["knn_top1"]
              for r in rows if r["method"] == "random"}
    own_floors = {(r["dataset"], r["method"]): r["knn_top1"] for r in rows if r["variant"] == UNTRAINED}
    lines = ["# Recipe sweep: each method's variants beside its backbone's random-init floor", "",
             f"{args.steps_run} steps ({args.train_size} train / {args.test_size} test images, batch {args.batch_size}), "
             f"AdamW at each method's recipe unless the variant says, seed 0, device {args.device_name}.",
             f"Command: `python bench/recipes.py {' '.join(args.argv)}`", "",
             "Gap: kNN top-1 minus the random-init kNN of the same backbone on the same data (for DDPM, which "
             "trains a UNet of its own, that UNet untrained, read out as DDPM reads it); ✓ at least 3 "
             "points (the goal), ✗ below the floor.", "",
             "| dataset | method | backbone | variant | kNN top-1 | floor | gap | rank / dim | loss first → last |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["dataset"], r["method"], r["backbone"], -r["knn_top1"])):
        floor = floors.get((r["dataset"], r["backbone"], json.dumps(r["data"], sort_keys=True)))
        if METHODS.get(r["method"]).own_network:  # that network untrained; the convnet's until that row has run
            floor = own_floors.get((r["dataset"], r["method"]), floors.get((r["dataset"], "convnet", "{}")))
        is_floor = r["method"] == "random" or r["variant"] == UNTRAINED
        gap = verdict(r["knn_top1"] - floor) if floor is not None and not is_floor else "-"
        loss = f"{r['loss_first']:.3g} → {r['loss_last']:.3g}" if r.get("loss_first") is not None else "-"
        lines.append(f"| {r['dataset']} | {r['method']} | {r['backbone']} | {r['variant']} | {r['knn_top1']:.3f} | "
                     f"{floor if floor is not None else '-'} | {gap} | {r['effective_rank']:.0f} / "
                     f"{r['embedding_dim']} | {loss} |")
    # The notes below the table are written by hand, invocation by invocation: they stay.
    notes = path.read_text().partition("\n## Notes")[1:] if path.exists() else ()
    path.write_text("\n".join(lines) + "\n" + "".join(notes))


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/: methods.py, harness.py
    from harness import add_budget_arguments

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all")
    parser.add_argument("--datasets", default="mnist5k,shapes")
    add_budget_arguments(parser)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--deadline", type=float, default=0, help="seconds after which no row starts (0: none)")
    parser.add_argument("--rows", default=None, help="a JSON list of rows to run instead of the grid "
                        "({dataset, method, backbone, variant, settings, train, data}), in that order")
    parser.add_argument("--out", default=None, help="results path without suffix (default bench/results/recipes_<cpu|gpu>)")
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    from ssl_core.models.methods import METHODS

    steps_per_epoch = args.train_size // args.batch_size
    epochs = max(1, round(args.steps / steps_per_epoch))
    args.steps_run = epochs * steps_per_epoch  # whole epochs: --steps 2000 runs 133 epochs of 15, 1,995 steps
    where = "gpu" if args.device.startswith("cuda") else "cpu"
    out = Path(args.out) if args.out else RESULTS / f"recipes_{where}"
    out.parent.mkdir(parents=True, exist_ok=True)
    jsonl = out.with_suffix(".jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {key(r) for r in rows}
    methods = list(METHODS.names()) if args.methods == "all" else args.methods.split(",")
    if args.rows:
        grid = [{"settings": {}, "train": {}, "data": {}, **r} for r in json.loads(Path(args.rows).read_text())]
    else:
        tiers = [rows_for(d, methods) for d in args.datasets.split(",")]
        grid = [r for tier in range(3) for per_dataset in tiers for r in per_dataset[tier]]
    grid = [r for r in grid if key(r) not in done]
    worker_args = {"epochs": epochs, "batch_size": args.batch_size, "lr": None, "train_size": args.train_size,
                   "test_size": args.test_size, "device": args.device, "threads": args.threads, "knn_only": False}
    import torch
    args.device_name = torch.cuda.get_device_name() if where == "gpu" else "CPU"
    started = time.monotonic()
    print(f"{len(grid)} rows, {epochs} epochs of {steps_per_epoch} steps", flush=True)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending, queue = {}, list(grid)
        while queue or pending:
            late = args.deadline and time.monotonic() - started > args.deadline
            while queue and len(pending) < args.workers and not late:
                row = queue.pop(0)
                pending[pool.submit(run_row, row, worker_args)] = row
            if late:
                queue.clear()
            finished, _ = wait(list(pending), return_when=FIRST_COMPLETED, timeout=5)
            for future in finished:
                row = pending.pop(future)
                try:
                    result = future.result()
                except Exception as e:  # one broken variant must not stop the sweep
                    print(f"failed {key(row)}: {type(e).__name__}: {e}", flush=True)
                    continue
                rows.append(result)
                with jsonl.open("a") as f:
                    f.write(json.dumps(result) + "\n")
                print(f"{time.monotonic() - started:6.0f}s {key(result)} knn {result['knn_top1']:.3f}", flush=True)
    write_table(rows, out.with_suffix(".md"), args)


if __name__ == "__main__":
    main()
