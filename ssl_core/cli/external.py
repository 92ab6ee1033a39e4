"""Runs made from work done outside ssl-explorer: `import` (embeddings computed elsewhere, with
their images) and `encode` (your own encoder's embeddings of a dataset). Either gives a run the
app explores like a trained one; the new run's id is printed last."""

from __future__ import annotations

import argparse

from ssl_core.cli.console import log
from ssl_core.core.config import DataConfig
from ssl_core.data import dataset_reference
from ssl_core.models.encoders import encoder_spec
from ssl_core.steps.readiness import refuse
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.encode import encode_dataset
from ssl_core.workflows.importer import import_embeddings
from ssl_core.workflows.train_request import dataset_problem


def cmd_import(args: argparse.Namespace, store: RunStore) -> int:
    result = import_embeddings(
        store, images=args.images, embeddings=args.embeddings, labels=args.labels, name=args.name,
        match=args.match, resolution=args.resolution, skip_invalid=args.skip_invalid,
        vector_column=args.vector_column, image_column=args.image_column, label_column=args.label_column,
        seed=args.seed, progress=lambda fraction, text: log(f"[{fraction:4.0%}] {text}"))
    for line in [*result.notes, *(f"warning: {w}" for w in result.warnings)]:
        log(line)
    print(result.run.id)
    return 0


def cmd_encode(args: argparse.Namespace, store: RunStore) -> int:
    spec = encoder_spec(library="torchscript" if args.torchscript else args.library,
                        weights=args.torchscript or args.weights, architecture=args.arch,
                        input_size=args.input_size, normalize=args.normalize)
    refuse(dataset_problem(args.dataset))  # the Train page's and `train`'s check
    data = DataConfig(dataset=dataset_reference(args.dataset), resolution=args.resolution, train_size=args.train_size,
                      test_size=args.test_size, seed=args.data_seed, data_dir=args.data_dir)
    run = encode_dataset(store, data, spec, name=args.name, device=args.device, log=log,
                         progress=None if not args.no_progress else lambda fraction, text: None)
    print(run.id)
    return 0
