"""What there is to train on and with: `ssl-explorer methods` and `ssl-explorer datasets`, each
read from its registry, so a newly registered method or dataset is listed at once."""

from __future__ import annotations

import argparse

from ssl_core.data import DATASETS
from ssl_core.models.methods import METHODS
from ssl_core.store.run_store import RunStore


def cmd_methods(args: argparse.Namespace, store: RunStore) -> int:
    rows = [(n, METHODS.get(n).family, ",".join(METHODS.get(n).backbones),
             METHODS.get(n).description + _recipe(METHODS.get(n).train_recipe)) for n in METHODS.names()]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}")
    return 0


def _recipe(recipe: dict) -> str:
    """' Trains with lr 0.0005, weight_decay 0.04 unless told otherwise.' for a method's own recipe."""
    if not recipe:
        return ""
    return f" Trains with {', '.join(f'{k} {v:g}' for k, v in recipe.items())} unless told otherwise."


def cmd_datasets(args: argparse.Namespace, store: RunStore) -> int:
    for name in DATASETS.names():
        doc = (DATASETS.get(name).__doc__ or "").strip().splitlines()
        print(f"{name:<14} {doc[0] if doc else ''}")
    print(f"{'PATH':<14} a folder of your images (class subfolders, or flat with labels.csv)")
    return 0
