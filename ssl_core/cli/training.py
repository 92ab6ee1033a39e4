"""`ssl-explorer train`: a new run from the command line's options (checked as the Train page
checks them), or `--resume` of an interrupted one; trained, then embedded, scored, mapped and
indexed. Under torchrun every process runs this command and rank 0 owns the run folder."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any, Sequence

from ssl_core.cli.console import log
from ssl_core.core.runtime import resolve_device
from ssl_core.store.run_store import RunStore
from ssl_core.training import distributed
from ssl_core.training.loop import TrainingFailed, TrainingInterrupted, train
from ssl_core.workflows.pipeline import POST_STEPS, run_all, run_post_steps
from ssl_core.workflows.train_request import TrainRequest, create_training_run

# What `train` takes for a new run; a resumed run continues as its config.json says, so these
# are refused with --resume instead of being silently ignored. (flag, argparse dest)
RUN_OPTIONS = (("--method", "method"), ("--dataset", "dataset"), ("--backbone", "backbone"),
               ("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr"),
               ("--weight-decay", "weight_decay"), ("--warmup-epochs", "warmup_epochs"), ("--seed", "seed"),
               ("--device", "device"), ("--resolution", "resolution"), ("--train-size", "train_size"),
               ("--test-size", "test_size"), ("--data-seed", "data_seed"), ("--max-rotation", "max_rotation"),
               ("--data-dir", "data_dir"),
               ("--load", "load"), ("--workers", "workers"), ("--checkpoint-every", "checkpoint_every"),
               ("--knn-every", "knn_every"), ("--map-snapshots", "map_snapshots"), ("--set", "set"))


def cmd_train(args: argparse.Namespace, store: RunStore) -> int:
    """Train; how training ended is the exit status: 130 stopped (resumable), 1 failed. Only this
    command trains, so only it turns the training loop's two exceptions into messages."""
    try:
        return _train(args, store)
    except TrainingInterrupted as e:
        print(f"interrupted: {e}; resume with `ssl-explorer train --resume {e.run_id}`", file=sys.stderr)
        return 130
    except TrainingFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace, store: RunStore) -> int:
    skip = [s for s in (args.skip or "").split(",") if s]
    if distributed.launched_by_torchrun():
        return _train_distributed(args, store, skip)
    if args.resume:
        run = store.get(args.resume)
        _refuse_changes_on_resume(args, run.id)
        status = run.check_resumable()["status"]  # checked again under the run's lock
        log(f"resuming run {run.id} (was {status})")
        run_all(run, resume=True, skip=skip, progress=not args.no_progress, log=log)
        print(run.id)
        return 0
    run = _create_run(args, store, skip)
    log(f"run {run.id} in {store.root}")
    run_all(run, skip=skip, progress=not args.no_progress, log=log)
    scores = run.read_eval()
    if scores and scores.get("knn_top1") is not None:
        log(f"kNN top-1 {scores['knn_top1']:.3f}, linear top-1 {scores['linear_top1']:.3f}")
    elif scores and scores.get("effective_rank") is not None:  # no labels: the label-free scores stand in
        log(f"{scores.get('note') or 'no labels'}; effective rank {scores['effective_rank']:.1f} "
            f"of {scores.get('embedding_dim')}, uniformity {scores['uniformity']:.3f}")
    print(run.id)
    return 0


def _refuse_changes_on_resume(args: argparse.Namespace, run_id: str) -> None:
    given = [flag for flag, dest in RUN_OPTIONS if getattr(args, dest, None) not in (None, [])]
    given += ["--download"] * bool(args.download) + ["--compile"] * bool(args.compile)
    if given:
        raise ValueError(f"--resume continues run {run_id} exactly as its config.json says, so "
                         f"{', '.join(given)} cannot change it; start a new run with the settings you want")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _method_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE (e.g. --set temperature=0.5); got {pair!r}")
        overrides[key] = _parse_value(value)
    return overrides


def _typed(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line (not None): the rest keep their defaults."""
    return {key: value for key, value in options.items() if value is not None}


def _create_run(args: argparse.Namespace, store: RunStore, skip: list[str]):
    """A new run folder from the command line's options, refused before it exists with every
    reason `TrainRequest.problems()` finds (the Train page's check)."""
    request = TrainRequest(
        **_typed({"method": args.method, "backbone": args.backbone, "dataset": args.dataset}),
        method_settings=_method_overrides(args.set or []),
        data=_typed({"resolution": args.resolution, "train_size": args.train_size, "test_size": args.test_size,
                    "seed": args.data_seed, "max_rotation": args.max_rotation, "data_dir": args.data_dir,
                    "download": args.download or None,
                    "load": args.load, "workers": args.workers}),
        train=_typed({"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "device": args.device, "checkpoint_every": args.checkpoint_every,
                     "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
                     "knn_every": args.knn_every, "map_snapshots": args.map_snapshots,
                     "compile": args.compile or None}),
        skip=tuple(skip))
    config = request.config()
    device = resolve_device(config.train.device)
    ctx = distributed.context()
    return create_training_run(store, config, sys.argv[1:] if sys.argv else [], device_resolved=str(device),
                               **({"processes": ctx.world_size} if ctx.active else {}))


def _train_distributed(args: argparse.Namespace, store: RunStore, skip: list[str]) -> int:
    """One process of a torchrun launch: rank 0 makes (or checks) the run folder and tells the
    others its id; all train; rank 0 alone runs the post-training steps."""
    ctx = distributed.setup(args.device or "auto")
    held = contextlib.ExitStack()  # rank 0 holds the run's lock for every rank
    try:
        run_id, error = None, None
        if ctx.is_main:
            try:
                if args.resume:
                    run = store.get(args.resume)
                    _refuse_changes_on_resume(args, run.id)
                    held.enter_context(run.lock("train"))
                    run.check_resumable()
                else:
                    run = _create_run(args, store, skip)
                    held.enter_context(run.lock("train"))
                run_id = run.id
                log(f"run {run.id} in {store.root}, {ctx.world_size} processes")
            except Exception as e:  # every rank must hear of it, or the others wait forever
                error = f"{type(e).__name__}: {e}"
        run_id = distributed.broadcast_text(run_id if error is None else "\0" + error)
        if run_id.startswith("\0"):
            raise ValueError(run_id[1:])
        run = store.get(run_id)
        steps = [s for s in POST_STEPS if s not in set(skip)]
        train(run, resume=bool(args.resume), progress=not args.no_progress, then=steps[0] if steps else None)
        if ctx.is_main and steps:
            run_post_steps(run, steps, device=run.config.train.device, progress=not args.no_progress, log=log)
        if ctx.is_main:
            print(run.id)
        return 0
    finally:
        held.close()
        distributed.cleanup()
