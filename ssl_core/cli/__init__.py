"""`ssl-explorer`: everything the app does, from the command line.

    ssl-explorer train --method simclr --dataset shapes --backbone convnet --epochs 2 --device cpu
    ssl-explorer runs
    ssl-explorer eval RUN_ID
    ssl-explorer neighbors RUN_ID --index 17 -k 8

Progress and logs go to stderr; results go to stdout (`train` prints the new run's id last).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from ssl_core.store.runs import RunStore, default_runs_dir


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


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_train(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.training import distributed
    from ssl_core.workflows.pipeline import run_all

    skip = [s for s in (args.skip or "").split(",") if s]
    if distributed.launched_by_torchrun():
        return _train_distributed(args, store, skip)
    if args.resume:
        run = store.get(args.resume)
        _refuse_changes_on_resume(args, run.id)
        status = run.check_resumable()["status"]  # checked again under the run's lock
        _log(f"resuming run {run.id} (was {status})")
        run_all(run, resume=True, skip=skip, progress=not args.no_progress, log=_log)
        print(run.id)
        return 0
    run = _create_run(args, store, skip)
    _log(f"run {run.id} in {store.root}")
    run_all(run, skip=skip, progress=not args.no_progress, log=_log)
    scores = run.read_eval()
    if scores and scores.get("knn_top1") is not None:
        _log(f"kNN top-1 {scores['knn_top1']:.3f}, linear top-1 {scores['linear_top1']:.3f}")
    elif scores and scores.get("effective_rank") is not None:  # no labels: the label-free scores stand in
        _log(f"{scores.get('note') or 'no labels'}; effective rank {scores['effective_rank']:.1f} "
             f"of {scores.get('embedding_dim')}, uniformity {scores['uniformity']:.3f}")
    print(run.id)
    return 0


# What `train` takes for a new run; a resumed run continues as its config.json says, so these
# are refused with --resume instead of being silently ignored. (flag, argparse dest)
RUN_OPTIONS = (("--method", "method"), ("--dataset", "dataset"), ("--backbone", "backbone"),
               ("--epochs", "epochs"), ("--batch-size", "batch_size"), ("--lr", "lr"),
               ("--weight-decay", "weight_decay"), ("--warmup-epochs", "warmup_epochs"), ("--seed", "seed"),
               ("--device", "device"), ("--resolution", "resolution"), ("--train-size", "train_size"),
               ("--test-size", "test_size"), ("--data-seed", "data_seed"), ("--data-dir", "data_dir"),
               ("--load", "load"), ("--workers", "workers"), ("--checkpoint-every", "checkpoint_every"),
               ("--knn-every", "knn_every"), ("--set", "set"))


def _refuse_changes_on_resume(args: argparse.Namespace, run_id: str) -> None:
    given = [flag for flag, dest in RUN_OPTIONS if getattr(args, dest, None) not in (None, [])]
    given += ["--download"] * bool(args.download) + ["--compile"] * bool(args.compile)
    if given:
        raise ValueError(f"--resume continues run {run_id} exactly as its config.json says, so "
                         f"{', '.join(given)} cannot change it; start a new run with the settings you want")


def _typed(options: dict[str, Any]) -> dict[str, Any]:
    """The options given on the command line (not None): the rest keep their defaults."""
    return {key: value for key, value in options.items() if value is not None}


def _create_run(args: argparse.Namespace, store: RunStore, skip: list[str]):
    """A new run folder from the command line's options, refused before it exists with every
    reason `TrainRequest.problems()` finds (the Train page's check)."""
    from ssl_core.training import distributed
    from ssl_core.models.methods.base import run_kind
    from ssl_core.core.runtime import resolve_device, versions
    from ssl_core.workflows.train_request import TrainRequest

    request = TrainRequest(
        **_typed({"method": args.method, "backbone": args.backbone, "dataset": args.dataset}),
        method_settings=_method_overrides(args.set or []),
        data=_typed({"resolution": args.resolution, "train_size": args.train_size, "test_size": args.test_size,
                    "seed": args.data_seed, "data_dir": args.data_dir, "download": args.download or None,
                    "load": args.load, "workers": args.workers}),
        train=_typed({"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "device": args.device, "checkpoint_every": args.checkpoint_every,
                     "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
                     "knn_every": args.knn_every, "compile": args.compile or None}),
        skip=tuple(skip))
    config = request.config()
    device = resolve_device(config.train.device)
    extra = {"versions": versions(), "device_resolved": str(device), "command": sys.argv[1:] if sys.argv else [],
             "kind": run_kind(request.method)}
    ctx = distributed.context()
    if ctx.active:
        extra["processes"] = ctx.world_size
    return store.create(config, extra=extra)


def _train_distributed(args: argparse.Namespace, store: RunStore, skip: list[str]) -> int:
    """One process of a torchrun launch: rank 0 makes (or checks) the run folder and tells the
    others its id; all train; rank 0 alone runs the post-training steps."""
    from ssl_core.training import distributed
    from ssl_core.workflows.pipeline import POST_STEPS, run_post_steps
    from ssl_core.training.loop import train

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
                _log(f"run {run.id} in {store.root}, {ctx.world_size} processes")
            except Exception as e:  # every rank must hear of it, or the others wait forever
                error = f"{type(e).__name__}: {e}"
        run_id = distributed.broadcast_text(run_id if error is None else "\0" + error)
        if run_id.startswith("\0"):
            raise ValueError(run_id[1:])
        run = store.get(run_id)
        steps = [s for s in POST_STEPS if s not in set(skip)]
        train(run, resume=bool(args.resume), progress=not args.no_progress, then=steps[0] if steps else None)
        if ctx.is_main and steps:
            run_post_steps(run, steps, device=run.config.train.device, progress=not args.no_progress, log=_log)
        if ctx.is_main:
            print(run.id)
        return 0
    finally:
        held.close()
        distributed.cleanup()


def cmd_runs(args: argparse.Namespace, store: RunStore) -> int:
    runs = store.list()
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=2))
        return 0
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    rows = [("RUN", "STATUS", "METHOD", "DATASET", "BACKBONE", "PROGRESS", "KNN TOP-1", "CREATED")]
    for r in runs:
        progress = f"{r.step or 0}/{r.total_steps}" if r.total_steps is not None else "-"
        knn = f"{r.knn_top1:.3f}" if r.knn_top1 is not None else "-"
        rows.append((r.id, r.status, r.method, r.dataset, r.backbone, progress, knn, r.created[:19]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    for r in runs:
        if r.broken:
            print(f"broken: {r.id}: {r.broken}")
        elif r.status in ("failed", "interrupted") and r.error:
            print(f"{r.status}: {r.id}: {r.error}")
        elif r.error:  # a finished run whose later step failed: its results are intact
            print(f"note: {r.id}: {r.error}")
        for warning in r.warnings:
            print(f"warning: {r.id}: {warning}")
    return 0


def _ensure_embeddings(run, device: str) -> None:
    if not (run.embeddings_dir / "test.npy").exists():
        from ssl_core.workflows.pipeline import run_post_steps

        _log(f"run {run.id} has no embeddings yet: embedding first")
        run_post_steps(run, ["embed"], device=device, log=_log)


def cmd_eval(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.steps.evaluate import evaluate_run

    run = store.get(args.run_id)
    scores = None if args.recompute else run.read_eval()
    if scores is None:
        with run.lock("eval"):
            _ensure_embeddings(run, args.device)
            scores = evaluate_run(run)
    print(json.dumps(scores, indent=2))
    return 0


def cmd_analyze(args: argparse.Namespace, store: RunStore) -> int:
    """Run the on-request analyses (layer and factor probes, fine-tuning, clusters, outliers)
    that the run lacks, or those named; print a JSON summary."""
    from tqdm.auto import tqdm

    from ssl_core.analyses.runner import run_analyses

    run = store.get(args.run_id)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    with tqdm(total=1000, desc="analyze", unit="‰", disable=args.no_progress, file=sys.stderr,
              bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}") as bar:
        def progress(fraction: float, text: str) -> None:
            bar.n = round(1000 * fraction)
            bar.set_postfix_str(text[:60], refresh=False)
            bar.refresh()

        result = run_analyses(run, names, recompute=args.recompute, device=args.device, progress=progress)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_neighbors(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.steps.index import neighbors

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


def cmd_attention(args: argparse.Namespace, store: RunStore) -> int:
    """Attention maps (ViT) or embedding-similarity saliency (CNN) of one image, as a PNG; or, with
    --in-mask, the share of a ViT's attention that falls on the object (shapes runs)."""
    from ssl_core.analyses import attention
    from ssl_core.store.runs import atomic_write_bytes

    runs = [store.get(args.run_id)] + ([store.get(args.run_b)] if args.run_b else [])
    if args.in_mask:
        for run in runs:
            print(json.dumps(attention.in_mask_attention(run, limit=args.limit)))
        return 0
    if args.index is None or args.out is None:
        raise ValueError("give the image's row with --index and the picture's path with --out "
                         "(or --in-mask for the in-mask attention share)")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold is the fraction of attention mass to keep, in (0, 1] (e.g. 0.6); "
                         f"got {args.threshold}")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file; got {out}")
    if len(runs) == 2 and runs[1].config.data != runs[0].config.data:
        _log(f"warning: run {runs[1].id} was trained on other data than run {runs[0].id}: row {args.index} "
             "is a different image there")
    rows = []
    for run in runs:
        maps = attention.run_attention(run, [args.index])
        rows.append((attention.row_label(run, maps, args.index), attention.panels(maps, 0, args.threshold)))
        print(f"{run.id}: {maps.note}")
    atomic_write_bytes(out, attention.picture(rows))
    print(f"wrote {out}")
    return 0


def cmd_compare(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.analyses.compare import compare_runs

    print(json.dumps(compare_runs(store.get(args.run_a), store.get(args.run_b), k=args.k)))
    return 0


def cmd_export(args: argparse.Namespace, store: RunStore) -> int:
    from tqdm.auto import tqdm

    from ssl_core.analyses.export import export

    runs = [store.get(run_id) for run_id in args.run_ids]
    # Only HTML takes a while (one PNG per image); a CSV is written at once.
    with tqdm(total=100, desc="export", unit="%", file=sys.stderr, leave=False,
              disable=Path(args.out).suffix.lower() != ".html") as bar:
        def progress(fraction: float, text: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(text)  # refreshes the bar

        result = export(runs, args.out, progress)
    size = f"{result['bytes'] / 1e6:.1f} MB" if result["bytes"] >= 100_000 else f"{result['bytes']:,} bytes"
    print(f"wrote {result['path']} ({result['format']} of {', '.join(result['runs'])}, {size})")
    return 0


def cmd_step(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.workflows.pipeline import run_post_steps

    run = store.get(args.run_id)
    if args.command != "embed":
        _ensure_embeddings(run, args.device)
    results = run_post_steps(run, [args.command], device=args.device, log=_log)
    print(json.dumps(results[args.command], indent=2))
    return 0


def cmd_import(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.workflows.importer import import_embeddings

    result = import_embeddings(
        store, images=args.images, embeddings=args.embeddings, labels=args.labels, name=args.name,
        match=args.match, resolution=args.resolution, skip_invalid=args.skip_invalid,
        vector_column=args.vector_column, image_column=args.image_column, label_column=args.label_column,
        seed=args.seed, progress=lambda fraction, text: _log(f"[{fraction:4.0%}] {text}"))
    for line in [*result.notes, *(f"warning: {w}" for w in result.warnings)]:
        _log(line)
    print(result.run.id)
    return 0


def cmd_encode(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.core.config import DataConfig
    from ssl_core.data import dataset_reference
    from ssl_core.models.encoders import encoder_spec
    from ssl_core.steps.readiness import refuse
    from ssl_core.workflows.encode import encode_dataset
    from ssl_core.workflows.train_request import dataset_problem

    spec = encoder_spec(library="torchscript" if args.torchscript else args.library,
                        weights=args.torchscript or args.weights, architecture=args.arch,
                        input_size=args.input_size, normalize=args.normalize)
    refuse(dataset_problem(args.dataset))  # the Train page's and `train`'s check
    data = DataConfig(dataset=dataset_reference(args.dataset), resolution=args.resolution, train_size=args.train_size,
                      test_size=args.test_size, seed=args.data_seed, data_dir=args.data_dir)
    run = encode_dataset(store, data, spec, name=args.name, device=args.device, log=_log,
                         progress=None if not args.no_progress else lambda fraction, text: None)
    print(run.id)
    return 0


def cmd_methods(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.models.methods import METHODS

    rows = [(n, METHODS.get(n).family, ",".join(METHODS.get(n).backbones), METHODS.get(n).description)
            for n in METHODS.names()]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}")
    return 0


def cmd_datasets(args: argparse.Namespace, store: RunStore) -> int:
    from ssl_core.data import DATASETS

    for name in DATASETS.names():
        doc = (DATASETS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<14} {doc[0] if doc else ''}")
    print(f"{'PATH':<14} a folder of your images (class subfolders, or flat with labels.csv)")
    return 0


REPOSITORY = Path(__file__).resolve().parents[2]
APP_SCRIPT = REPOSITORY / "app" / "streamlit_app.py"
PRETRAINED = REPOSITORY / "pretrained"


LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
ALL_INTERFACES = ("0.0.0.0", "::", "")


def allowed_hosts(address: str, extra: Sequence[str] = ()) -> list[str]:
    """The names the app answers to, as Streamlit's server.allowedHosts (ports ignored): this
    machine's loopback names, the address it listens on (this machine's name when that is every
    interface) and `extra` ('*': any). A request with another Host header gets no session: a page
    of another site whose name was re-pointed at this machine (DNS rebinding) cannot drive it."""
    import socket

    hosts = [*LOCAL_HOSTS, socket.gethostname() if address in ALL_INTERFACES else address, *extra]
    return list(dict.fromkeys(host.strip().lower() for host in hosts if host.strip()))


def cmd_app(args: argparse.Namespace, store: RunStore) -> int:
    """Serve the dashboard (streamlit) over the runs folder; blocks until stopped."""
    if not APP_SCRIPT.exists():
        raise FileNotFoundError(f"the app is not at {APP_SCRIPT}; run from a clone of the repository "
                                "(`pip install -e .`)")
    if args.command == "demo":
        added = install_demo_runs(store)
        _log(f"demo runs in {store.root}: {', '.join(added) if added else 'already there'}")
    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
               "--server.address", args.address, "--server.port", str(args.port),
               "--server.headless", "true", "--server.maxUploadSize", "10",
               "--browser.gatherUsageStats", "false"]
    hosts = allowed_hosts(args.address, args.allowed_host)
    for host in hosts:
        command += ["--server.allowedHosts", host]
    _log(f"ssl-explorer app on http://{args.address}:{args.port} (runs: {store.root}; answers to "
         f"{', '.join(hosts)}: add a name with --allowed-host)")
    env = {**os.environ, "SSL_EXPLORER_RUNS": str(store.root.resolve())}
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the server (same pid), so a signal that stops `ssl-explorer app` stops the app.
    os.execve(sys.executable, command, env)


def install_demo_runs(store: RunStore) -> list[str]:
    """Copy the bundled, already-trained runs of pretrained/ into the runs folder (once)."""
    added = []
    for source in sorted(p for p in PRETRAINED.iterdir() if (p / "config.json").exists()):
        target = store.root / source.name
        if not target.exists():
            shutil.copytree(source, target)
            added.append(source.name)
    return added


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS,
                        help="where runs live (default: $SSL_EXPLORER_RUNS or ./runs)")
    parser = argparse.ArgumentParser(prog="ssl-explorer", description=__doc__.split("\n\n")[0],
                                     parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", parents=[common], help="train a method on a dataset, then embed, score, map and index")
    t.add_argument("--method", help="see `ssl-explorer methods` (default simclr)")
    t.add_argument("--dataset", help="a name from `ssl-explorer datasets`, or a folder path (default shapes)")
    t.add_argument("--backbone", help="convnet | resnet18 | vit_tiny | vit_mini (default convnet)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--warmup-epochs", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto | cpu | cuda (default auto)")
    t.add_argument("--resolution", type=int, help="image size in px (default 32)")
    t.add_argument("--train-size", type=int, help="number of train images (default: the dataset's)")
    t.add_argument("--test-size", type=int, help="number of test images (default: the dataset's)")
    t.add_argument("--data-seed", type=int, help="seed of generated data and splits (default 0)")
    t.add_argument("--data-dir", help="cache of online datasets (default $SSL_EXPLORER_DATA)")
    t.add_argument("--download", action="store_true", help="download an online dataset if absent")
    t.add_argument("--load", choices=("auto", "memory", "stream"),
                   help="folders: decode all images into RAM, or stream them from their files batch by "
                        "batch (default auto: stream when they would fill over a quarter of RAM)")
    t.add_argument("--workers", type=int, help="decoding processes when streaming (default: cores - 1, at most 8)")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    t.add_argument("--knn-every", type=int, help="epochs between held-out kNN checks (0: never)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method setting, e.g. temperature=0.5")
    t.add_argument("--skip", help="comma-separated steps to skip after training: embed,eval,project,index")
    t.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted or failed run from its checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("runs", parents=[common], help="list runs with status, method, dataset and kNN top-1")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_runs)

    e = sub.add_parser("eval", parents=[common], help="scores of a run as one JSON object")
    e.add_argument("run_id")
    e.add_argument("--recompute", action="store_true", help="score again even if eval.json exists")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)

    an = sub.add_parser("analyze", parents=[common],
                        help="layer-wise and factor probes, fine-tuning, clusters, outliers of a run (stored in "
                             "its analysis/ folder), as JSON")
    an.add_argument("run_id")
    an.add_argument("--only", help="comma-separated analyses (default: every one not stored yet): "
                                   "layers,factors,finetune,clusters,outliers")
    an.add_argument("--recompute", action="store_true", help="run them again even if stored")
    an.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    an.add_argument("--no-progress", action="store_true", help="no progress bar")
    an.set_defaults(func=cmd_analyze)

    n = sub.add_parser("neighbors", parents=[common], help="nearest images of one image of a run")
    n.add_argument("run_id")
    n.add_argument("--index", type=int, required=True, help="row of the image: train rows, then test rows")
    n.add_argument("-k", type=int, default=8)
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=cmd_neighbors)

    cmp = sub.add_parser("compare", parents=[common],
                       help="how alike two runs' embeddings of the same images are (CKA, k-NN overlap), as JSON")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("-k", type=int, default=10, help="neighbours per image for the overlap")
    cmp.set_defaults(func=cmd_compare)

    x = sub.add_parser("export", parents=[common],
                       help="write runs to a file: .html one run's map or 2-4 runs compared; .csv their scores")
    x.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    x.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.html (standalone page, opens offline) or FILE.csv (one row per run)")
    x.set_defaults(func=cmd_export)

    at = sub.add_parser("attention", parents=[common],
                        help="attention maps (ViT) or embedding-similarity saliency (CNN) of one image, as a PNG")
    at.add_argument("run_id")
    at.add_argument("--index", type=int, help="row of the image: train rows, then test rows")
    at.add_argument("--out", help="the PNG to write")
    at.add_argument("--run-b", metavar="RUN_ID", help="a second run drawn below the first, on the same image")
    at.add_argument("--threshold", type=float,
                    help="also show the fewest patches holding this fraction of the attention mass (ViT), e.g. 0.6")
    at.add_argument("--in-mask", action="store_true",
                    help="print the share of the ViT's attention inside the object's mask over the test images "
                         "(shapes runs) as JSON, instead of a picture")
    at.add_argument("--limit", type=int, help="with --in-mask: only the first N test images")
    at.set_defaults(func=cmd_attention)

    for name, text in (("embed", "embed the run's images with its encoder"),
                       ("project", "compute the run's 2-D UMAP map"),
                       ("index", "build the run's FAISS search index")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("run_id")
        s.add_argument("--device", default="auto")
        s.set_defaults(func=cmd_step)

    for name, text in (("app", "open the dashboard in the browser"),
                       ("demo", "add the bundled demo runs to the runs folder, then open the dashboard")):
        a = sub.add_parser(name, parents=[common], help=text)
        a.add_argument("--port", type=int, default=8501)
        a.add_argument("--address", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1: this machine only)")
        a.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="another name the app is reached by (this machine's on the network, a proxy's; "
                            "'*': any); repeatable. Requests for other names are refused (DNS rebinding)")
        a.set_defaults(func=cmd_app)

    i = sub.add_parser("import", parents=[common], help="make a run from embeddings computed elsewhere and their images")
    i.add_argument("--images", required=True, help="a folder of images, or a .parquet with a column of image bytes")
    i.add_argument("--embeddings", required=True, help=".npy (N x D), or .parquet/.csv with one vector column")
    i.add_argument("--labels", help=".csv/.parquet: id column (or row order), `label`, `split`, metadata columns")
    i.add_argument("--name", help="display name of the run (also part of its id)")
    i.add_argument("--match", default="auto", choices=("auto", "name", "order"),
                   help="embeddings to images: by file name (needs an id column) or by sorted order (default: "
                        "by name when the embeddings have ids)")
    i.add_argument("--resolution", type=int, default=64, help="size of the stored images in px (default 64)")
    i.add_argument("--skip-invalid", action="store_true",
                   help="leave out rows with NaN/infinite vectors or unreadable images (named in warnings)")
    i.add_argument("--vector-column", help="the embeddings table's vector column (default: the only one)")
    i.add_argument("--image-column", help="the parquet's image-bytes column (default: the only one)")
    i.add_argument("--label-column", help="the column of class labels (default: `label`)")
    i.add_argument("--seed", type=int, default=0, help="seed of the train/test split and the map")
    i.set_defaults(func=cmd_import)

    c = sub.add_parser("encode", parents=[common], help="make a run from your own encoder (local weights) on a dataset")
    model = c.add_mutually_exclusive_group(required=True)
    model.add_argument("--arch", help="a torchvision (or, with --library timm, timm) architecture, e.g. resnet18")
    model.add_argument("--torchscript", metavar="FILE", help="a TorchScript encoder file")
    c.add_argument("--weights", metavar="FILE", help="the architecture's state dict (torch.save(model.state_dict()))")
    c.add_argument("--library", default="torchvision", choices=("torchvision", "timm"))
    c.add_argument("--dataset", default="shapes", help="a name from `ssl-explorer datasets`, or a folder path")
    c.add_argument("--resolution", type=int, default=32, help="resolution of the dataset's images (default 32)")
    c.add_argument("--input-size", type=int, help="size fed to the encoder (default 224; TorchScript: --resolution)")
    c.add_argument("--normalize", default="imagenet", choices=("imagenet", "none"))
    c.add_argument("--train-size", type=int)
    c.add_argument("--test-size", type=int)
    c.add_argument("--data-seed", type=int, default=0)
    c.add_argument("--data-dir", help="cache of online datasets (default $SSL_EXPLORER_DATA)")
    c.add_argument("--device", default="auto")
    c.add_argument("--name", help="display name of the run")
    c.add_argument("--no-progress", action="store_true")
    c.set_defaults(func=cmd_encode)

    sub.add_parser("methods", parents=[common], help="list methods").set_defaults(func=cmd_methods)
    sub.add_parser("datasets", parents=[common], help="list built-in datasets").set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = RunStore(getattr(args, "runs_dir", None) or default_runs_dir())
    try:
        return args.func(args, store)
    except KeyError as e:  # unknown names: the message lists the valid ones
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
    except OSError as e:
        from ssl_core.store.runs import os_error_message

        # The library's own FileNotFoundErrors carry a sentence and no path; the OS's carry a path.
        message = os_error_message(e) if e.filename is not None else str(e)
        print(f"error: {message}", file=sys.stderr)
        return 2 if isinstance(e, FileNotFoundError) else 1
    except (ValueError, IndexError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from ssl_core.training.loop import TrainingFailed, TrainingInterrupted

        if isinstance(e, TrainingInterrupted):
            print(f"interrupted: {e}; resume with `ssl-explorer train --resume {e.run_id}`", file=sys.stderr)
            return 130
        if isinstance(e, TrainingFailed):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:  # Ctrl-C outside training (embed, map, analyses): what was stored stays
        print("interrupted: stopped by Ctrl-C; files written before it are kept", file=sys.stderr)
        return 130

