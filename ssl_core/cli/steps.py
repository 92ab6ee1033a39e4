"""The steps stored in a run, from the command line: `eval` (its scores), `embed`, `project` and
`index` (each run again on its own), and `neighbors` (a search of its index). A step that needs
embeddings the run lacks embeds first. `embed` also runs under torchrun, one share of the images
per process (`torchrun --nproc_per_node 4 -m ssl_core.cli embed RUN_ID`)."""

from __future__ import annotations

import argparse
import json

from ssl_core.cli.console import log
from ssl_core.core.runtime import resolve_device
from ssl_core.steps.embed import Shard, embed_run
from ssl_core.steps.evaluate import evaluate_run
from ssl_core.steps.index import neighbors
from ssl_core.store import files
from ssl_core.store.run_store import RunStore
from ssl_core.training import distributed
from ssl_core.workflows.pipeline import run_post_steps


def _ensure_embeddings(run, device: str) -> None:
    if not (run.embeddings_dir / files.vectors("test")).exists():
        log(f"run {run.id} has no embeddings yet: embedding first")
        run_post_steps(run, ["embed"], device=device, log=log)


def cmd_eval(args: argparse.Namespace, store: RunStore) -> int:
    run = store.get(args.run_id)
    scores = None if args.recompute else run.read_eval()
    if scores is None:
        with run.lock("eval"):
            _ensure_embeddings(run, args.device)
            scores = evaluate_run(run)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_step(args: argparse.Namespace, store: RunStore) -> int:
    if args.command == "embed" and distributed.launched_by_torchrun():
        return _embed_distributed(args, store)
    run = store.get(args.run_id)
    if args.command != "embed":
        _ensure_embeddings(run, args.device)
    results = run_post_steps(run, [args.command], device=args.device, log=log)
    print(json.dumps(results[args.command], indent=2))
    return 0


def _embed_distributed(args: argparse.Namespace, store: RunStore) -> int:
    """One process of a torchrun launch: each embeds its share; rank 0 holds the run (its lock
    and status, as `embed` in one process does) and writes the embeddings once all are in."""
    ctx = distributed.setup(args.device)
    try:
        shard = Shard(ctx.rank, ctx.world_size, distributed.barrier)
        run = store.get(args.run_id)  # every rank: an unknown id fails everywhere at once
        if ctx.is_main:
            results = run_post_steps(run, ["embed"], device=args.device, log=log, shard=shard)
            print(json.dumps(results["embed"], indent=2))
        else:
            embed_run(run, device=resolve_device(args.device), progress=False, shard=shard)
        return 0
    finally:
        distributed.cleanup()


def cmd_neighbors(args: argparse.Namespace, store: RunStore) -> int:
    result = neighbors(store.get(args.run_id), args.index, args.k)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    def name(item: dict) -> str:
        return item["label_name"] or ("unlabelled" if item["label"] < 0 else "")

    q = result["query"]
    print(f"query row {q['row']}: {q['id']} ({q['split']}), label {q['label']} {name(q)}".rstrip())
    print(f"{'RANK':<5} {'ROW':<7} {'ID':<16} {'SPLIT':<6} {'LABEL':<18} DISTANCE")
    for rank, h in enumerate(result["neighbors"], 1):
        label = f"{h['label']} {name(h)}".strip()
        print(f"{rank:<5} {h['row']:<7} {h['id']:<16} {h['split']:<6} {label:<18} {h['distance']:.4f}")
    if result["same_label"] is None:
        print("no labels: the query image is unlabelled, so no neighbour can share its label")
    else:
        print(f"{result['same_label']} of {len(result['neighbors'])} share the query's label")
    return 0
