"""The analyses of runs, from the command line: `analyze` (probes per layer and factor,
fine-tuning, clusters, outliers, stored in the run), `compare` (two runs' embeddings),
`attention` (a picture of where a model looks) and `export` (runs to an HTML page or a CSV)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ssl_core.analyses import attention
from ssl_core.analyses.compare import compare_runs
from ssl_core.analyses.export import export
from ssl_core.analyses.runner import run_analyses
from ssl_core.cli.console import log
from ssl_core.store.atomic import atomic_write_bytes
from ssl_core.store.run_store import RunStore


def cmd_analyze(args: argparse.Namespace, store: RunStore) -> int:
    """Run the on-request analyses (layer and factor probes, fine-tuning, clusters, outliers)
    that the run lacks, or those named; print a JSON summary."""
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


def cmd_attention(args: argparse.Namespace, store: RunStore) -> int:
    """Attention maps (ViT) or embedding-similarity saliency (CNN) of one image, as a PNG; or, with
    --in-mask, the share of a ViT's attention that falls on the object (shapes runs)."""
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
        log(f"warning: run {runs[1].id} was trained on other data than run {runs[0].id}: row {args.index} "
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
    print(json.dumps(compare_runs(store.get(args.run_a), store.get(args.run_b), k=args.k)))
    return 0


def cmd_export(args: argparse.Namespace, store: RunStore) -> int:
    runs = [store.get(run_id) for run_id in args.run_ids]
    # Only HTML takes a while (one PNG per image); a CSV is written at once.
    with tqdm(total=100, desc="export", unit="%", file=sys.stderr, leave=False,
              disable=Path(args.out).suffix.lower() != ".html") as bar:
        def progress(fraction: float, text: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(text)  # refreshes the bar

        result = export(runs, args.out, progress, animation=args.animation)
    size = f"{result['bytes'] / 1e6:.1f} MB" if result["bytes"] >= 100_000 else f"{result['bytes']:,} bytes"
    print(f"wrote {result['path']} ({result['format']} of {', '.join(result['runs'])}, {size})")
    return 0
