"""Every method, the same budget, on `shapes` and on the bundled real digits (`mnist5k`), on CPU.

    python bench/methods.py                          # all methods, both datasets
    python bench/methods.py --methods simclr,byol --datasets shapes --epochs 5

Each row trains one method from scratch (same images, epochs, batch size, seed and learning rate
for all), embeds the train and test images, and scores them with the weighted kNN (k=20) and a
linear probe. `random` (untrained encoder) and `pixels` are the floors; `supervised` the
ceiling. ViT-only methods (MAE, I-JEPA) are compared with a random-init ViT too. A method that
trains a network of its own (`Method.own_network`: DDPM's UNet) gets a row of that network
untrained, read out as the method reads it (0 epochs), and that row is its floor.

Rows are appended to bench/results/methods_cpu.json as they finish and the Markdown table is
rewritten each time, so an interrupted benchmark resumes where it stopped (--fresh to start over).

On a machine with many cores, `--jobs 7 --threads 2` runs seven rows at once, each in its own
process pinned (taskset) to its own two cores, so each row still sees a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.steps.embed import embed_run, load_embeddings
from ssl_core.steps.evaluate import effective_rank, evaluate_run, weighted_knn
from ssl_core.models.methods import METHODS
from ssl_core.models.methods.base import train_settings as method_train_settings
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import train

RESULTS = Path(__file__).resolve().parent / "results"


def backbone_for(method: str, preferred: str = "convnet") -> str:
    """`preferred` where the method trains it, else its first backbone (MAE, I-JEPA: a ViT)."""
    supported = METHODS.get(method).backbones
    return preferred if preferred in supported else supported[0]


def bench_one(method: str, backbone: str, dataset: str, args, store: RunStore, *, settings: dict | None = None,
              train_settings: dict | None = None, data_settings: dict | None = None) -> dict:
    """Train one row from scratch, embed it and score it. `settings` override the method's
    Config, `train_settings` and `data_settings` the run's TrainConfig and DataConfig (the recipe
    sweep, bench/recipes.py, varies these)."""
    asked = {"lr": args.lr} if args.lr is not None else {}  # else the method's recipe, as `train` gives it
    train_cfg = {"epochs": args.epochs, "batch_size": args.batch_size, "device": args.device, "seed": 0,
                 "knn_every": 0, "checkpoint_every": 10**9, "log_every": 10,
                 **method_train_settings(method, {**asked, **(train_settings or {})})}
    config = RunConfig(
        data=DataConfig(dataset=dataset, train_size=args.train_size, test_size=args.test_size, **(data_settings or {})),
        backbone=BackboneConfig(backbone), method={"name": method, **(settings or {})},
        train=TrainConfig(**train_cfg))
    run = store.create(config)
    started = time.perf_counter()
    train(run, progress=False)
    seconds = time.perf_counter() - started
    status = run.read_status()
    embed_run(run, device=args.device, progress=False)
    if getattr(args, "knn_only", False):  # large runs: the linear probes would take minutes on the CPU
        train_x, train_y, _ = load_embeddings(run, "train")
        test_x, test_y, _ = load_embeddings(run, "test")
        classes = int(max(train_y.max(), test_y.max())) + 1
        scores = {"knn_top1": round(weighted_knn(train_x, train_y, test_x, test_y, num_classes=classes, k=20), 4),
                  "linear_top1": None, "num_train": len(train_x)}
    else:
        scores = evaluate_run(run)
    images = status["total_steps"] * min(train_cfg["batch_size"], scores["num_train"])
    # Evidence for a row that does not beat random init: did the loss fall, did the embedding
    # collapse (effective rank, Roy & Vetterli 2007, as RankMe uses it)?
    losses = [m["loss"] for m in run.read_metrics() if "loss" in m]
    test_vectors = load_embeddings(run, "test")[0]
    return {"method": method, "family": METHODS.get(method).family, "backbone": backbone, "dataset": dataset,
            "knn_top1": scores["knn_top1"], "linear_top1": scores["linear_top1"],
            "seconds": round(seconds, 1), "images_per_s": round(images / seconds, 1) if images else None,
            "steps": status["total_steps"],
            "loss_first": round(losses[0], 4) if losses else None, "loss_last": round(losses[-1], 4) if losses else None,
            "effective_rank": round(effective_rank(test_vectors), 1), "embedding_dim": int(test_vectors.shape[1])}


def bench_job(job: tuple[str, str, str, bool], args, store: RunStore) -> dict:
    """One row of the table: (method, backbone, dataset, untrained), the last True for the
    untrained row of a method that trains a network of its own (0 epochs; its floor)."""
    method, backbone, dataset, untrained = job
    if not untrained:
        return bench_one(method, backbone, dataset, args, store)
    return {**bench_one(method, backbone, dataset, args, store, train_settings={"epochs": 0}), "untrained": True}


def lr_words(lr: float | None) -> str:
    """How a table states the learning rate of its rows."""
    return f"lr {lr:g} for every method" if lr is not None else \
        f"each method's recipe (lr {TrainConfig.lr:g}, weight decay {TrainConfig.weight_decay:g} unless it says)"


def verdict(gap: float) -> str:
    """A row's kNN gap over its floor, marked: ✓ at least 3 points (the goal), ✗ below the floor."""
    return f"{gap:+.3f}" + (" ✓" if gap >= 0.03 else " ✗" if gap < 0 else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_table(rows: list[dict], args) -> None:
    threads = args.threads or torch.get_num_threads()
    parallel = f", {args.jobs} rows at a time, each pinned to its own {threads} cores" if args.jobs > 1 else ""
    where = "GPU" if args.device.startswith("cuda") else "CPU"
    hardware = torch.cuda.get_device_name() if where == "GPU" else cpu_name()
    lines = [f"# Methods on {where}: same budget for every method",
             "",
             f"{args.epochs} epochs, batch {args.batch_size}, AdamW {lr_words(args.lr)}, {args.train_size} train / "
             f"{args.test_size} test images at 32 px, seed 0; {threads} CPU threads per row{parallel}; "
             f"torch {torch.__version__}, {hardware}.",
             f"Command: `python bench/methods.py {' '.join(args.argv)}`".rstrip(),
             "",
             "",
             "Loss: the training loss at step 10 and at the last step (single steps, so noisy).",
             "Rank: effective rank of the test embeddings (1 = collapsed) out of their dimension.",
             "",
             "Floor: the random-init kNN of the row's backbone on its dataset (for DDPM, which trains a UNet of",
             "its own, that UNet untrained, read out as DDPM reads it: its `untrained` row); gap: the row's kNN",
             "minus it, ✓ at least 3 points (the goal), ✗ below the floor: at this budget that row has not",
             "learned anything kNN can use.",
             "",
             "| dataset | method | family | backbone | kNN top-1 | floor | gap | linear top-1 | seconds | images/s | "
             "loss first → last | rank / dim |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    floors = {(r["dataset"], r["backbone"]): r["knn_top1"] for r in rows if r["method"] == "random"}
    own_floors = {(r["dataset"], r["method"]): r["knn_top1"] for r in rows if r.get("untrained")}
    for r in sorted(rows, key=lambda r: (r["dataset"], -(r["knn_top1"] or 0))):
        floor = (own_floors.get((r["dataset"], r["method"])) if METHODS.get(r["method"]).own_network
                 else floors.get((r["dataset"], r["backbone"])))
        is_floor = r["method"] == "random" or r.get("untrained")
        gap = verdict(r["knn_top1"] - floor) if floor is not None and not is_floor else "-"
        floor = f"{floor:.3f}" if floor is not None else "-"
        ips = f"{r['images_per_s']:.0f}" if r["images_per_s"] else "-"
        loss = f"{r['loss_first']:.3g} → {r['loss_last']:.3g}" if r.get("loss_first") is not None else "-"
        rank = f"{r['effective_rank']:.0f} / {r['embedding_dim']}" if r.get("effective_rank") is not None else "-"
        linear = f"{r['linear_top1']:.3f}" if r["linear_top1"] is not None else "-"
        method = f"{r['method']} (untrained)" if r.get("untrained") else r["method"]
        lines.append(f"| {r['dataset']} | {method} | {r['family']} | {r['backbone']} | {r['knn_top1']:.3f} | "
                     f"{floor} | {gap} | {linear} | {r['seconds']:.0f} | {ips} | {loss} | {rank} |")
    (RESULTS / f"{args.output}.md").write_text("\n".join(lines) + "\n")


def run_in_subprocess(job: tuple[str, str, str, bool], cores: str, args) -> dict:
    """One row in its own process, pinned to `cores`: a fair share of a many-core machine."""
    method, backbone, dataset, untrained = job
    cmd = ["taskset", "-c", cores, sys.executable, str(Path(__file__).resolve()), "--one",
           f"{method}:{backbone}:{dataset}" + (":untrained" if untrained else ""), "--threads", str(args.threads), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--train-size", str(args.train_size),
           "--test-size", str(args.test_size), "--device", args.device] + (["--knn-only"] if args.knn_only else []) \
        + (["--lr", str(args.lr)] if args.lr is not None else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{job} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="all", help="comma-separated names, or all")
    parser.add_argument("--datasets", default="shapes,mnist5k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="for every method (default: each method's "
                        "recipe, Method.train_recipe, else 2e-3)")
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU table")
    parser.add_argument("--backbone", default="convnet", help="for every method that trains it (else its own)")
    parser.add_argument("--knn-only", action="store_true", help="skip the linear probes (large train sets)")
    parser.add_argument("--output", default=None, help="results name under bench/results (default methods_cpu "
                        "or methods_gpu)")
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows")
    parser.add_argument("--jobs", type=int, default=1, help="rows trained at once, each in its own pinned process")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per row (0: torch's default)")
    parser.add_argument("--first-core", type=int, default=0, help="with --jobs: leave the cores below this free")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # METHOD:BACKBONE:DATASET[:untrained], worker mode
    args = parser.parse_args()
    args.argv = sys.argv[1:]
    args.output = args.output or ("methods_gpu" if args.device.startswith("cuda") else "methods_cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        method, backbone, dataset, *untrained = args.one.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(bench_job((method, backbone, dataset, bool(untrained)), args, RunStore(tmp))), flush=True)
        return
    methods = METHODS.names() if args.methods == "all" else args.methods.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{args.output}.json"
    rows = [] if args.fresh or not out.exists() else json.loads(out.read_text())
    done = {(r["method"], r["backbone"], r["dataset"], bool(r.get("untrained"))) for r in rows}
    jobs = [(m, backbone_for(m, args.backbone), False) for m in methods]
    if any(b == "vit_tiny" for _, b, _ in jobs) and "random" in methods and args.backbone != "vit_tiny":
        jobs.append(("random", "vit_tiny", False))  # the floor for ViT-only methods
    jobs += [(m, b, True) for m, b, _ in jobs if METHODS.get(m).own_network]  # their own network's floor
    todo = [(m, b, d, u) for d in args.datasets.split(",") for m, b, u in jobs if (m, b, d, u) not in done]
    for job in list(todo):  # a pair that cannot learn by construction gets no row, only its reason
        reason = METHODS.get(job[0]).cannot_learn(DataConfig(dataset=job[2]))
        if reason:
            print(f"skipped {job[0]} on {job[2]}: {reason}", file=sys.stderr)
            todo.remove(job)

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        rows.append(row)
        out.write_text(json.dumps(rows, indent=2) + "\n")
        write_table(rows, args)

    if args.jobs <= 1:
        with tempfile.TemporaryDirectory() as tmp:
            store = RunStore(tmp)
            for job in todo:
                record(bench_job(job, args, store))
        return
    threads = args.threads or 1
    if args.first_core + args.jobs * threads > (os.cpu_count() or 1):
        raise SystemExit(f"--jobs {args.jobs} x --threads {threads} from core {args.first_core} needs more "
                         f"than {os.cpu_count()} cores")
    free = [",".join(str(args.first_core + j * threads + t) for t in range(threads)) for j in range(args.jobs)]
    # The slowest rows (ViTs, the diffusion UNet) start first so that they do not finish last.
    slow = {"mae", "ijepa", "ddpm", "dino", "cpc"}
    todo.sort(key=lambda job: job[0] not in slow or job[3])
    with ThreadPoolExecutor(args.jobs) as pool:
        pending = {}
        for job in todo:
            if not free:
                finished = next(iter_done(pending))
                free.append(pending.pop(finished))
                record(finished.result())
            cores = free.pop()
            pending[pool.submit(run_in_subprocess, job, cores, args)] = cores
        while pending:
            finished = next(iter_done(pending))
            pending.pop(finished)
            record(finished.result())


def iter_done(pending: dict):
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    yield from done


if __name__ == "__main__":
    main()
