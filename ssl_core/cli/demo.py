"""`ssl-explorer demo`: copy the bundled, already trained runs (pretrained/, shipped in the wheel)
into the runs folder, then serve the dashboard as `ssl-explorer app` does."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ssl_core.cli.app import cmd_app, shipped
from ssl_core.cli.console import log
from ssl_core.steps.embed import embed_run
from ssl_core.steps.index import index_run
from ssl_core.steps.readiness import missing_steps
from ssl_core.store import files
from ssl_core.store.run_store import RunStore


def cmd_demo(args: argparse.Namespace, store: RunStore) -> int:
    """Add the bundled runs that the runs folder lacks, then serve the dashboard; blocks until stopped."""
    added = install_demo_runs(store, shipped("pretrained", "ssl_explorer_demo"))
    log(f"demo runs in {store.root}: {', '.join(added) if added else 'already there'}")
    return cmd_app(args, store)


def install_demo_runs(store: RunStore, bundled: Path) -> list[str]:
    """Copy the bundled, already-trained runs (pretrained/) into the runs folder (once), then embed
    each that has no embeddings and build the search index of each that lacks one: the bundle
    leaves out what takes seconds to recompute (an untrained network's embeddings, the pixels
    of a generated dataset, and a flat FAISS index, which is a copy of the embeddings)."""
    added = []
    for source in sorted(p for p in bundled.iterdir() if (p / files.CONFIG).exists()):
        target = store.root / source.name
        if not target.exists():
            shutil.copytree(source, target)
            added.append(source.name)
        run = store.get(source.name)
        if "embed" in missing_steps(run):
            log(f"{source.name}: embedding its images (an untrained network: seconds)")
            embed_run(run, device="cpu", progress=False)
        if not run.index_path.exists():
            log(f"{source.name}: building its search index")
            index_run(run)
    return added
