"""`ssl-explorer runs`: the runs folder as a table (or JSON), with what is wrong with a run
under it. It reads only the run folders, so it starts in a fraction of a second: keep the
library's models and steps out of this module."""

from __future__ import annotations

import argparse
import json

from ssl_core.store.run_store import RunStore


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
