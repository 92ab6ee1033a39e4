"""`ssl-explorer`: everything the app does, from the command line.

    ssl-explorer train --method simclr --dataset shapes --backbone convnet --epochs 2 --device cpu
    ssl-explorer runs
    ssl-explorer eval RUN_ID
    ssl-explorer neighbors RUN_ID --index 17 -k 8

Progress and logs go to stderr; results go to stdout (`train` prints the new run's id last).

Each command names the function that runs it as a string, "module:function" (its `handler`), and
is not imported here: building the parser and `--help` import nothing of the library, and `main`
imports only the command module it runs (see `ssl_core.cli.main`).
"""

from __future__ import annotations

import argparse
from importlib import metadata


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--runs-dir", default=argparse.SUPPRESS,
                        help="where runs live (default: $SSL_EXPLORER_RUNS or ./runs)")
    parser = argparse.ArgumentParser(prog="ssl-explorer", description=__doc__.split("\n\n")[0],
                                     parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ssl-explorer {installed_version()}")
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
    t.add_argument("--max-rotation", type=float, metavar="DEGREES",
                   help="shapes: turn each shape within +-half this of upright (default 360: any angle)")
    t.add_argument("--data-dir", help="cache of online datasets (default $SSL_EXPLORER_DATA)")
    t.add_argument("--download", action="store_true", help="download an online dataset if absent")
    t.add_argument("--load", choices=("auto", "memory", "stream"),
                   help="folders: decode all images into RAM, or stream them from their files batch by "
                        "batch (default auto: stream when they would fill over a quarter of RAM)")
    t.add_argument("--workers", type=int, help="decoding processes when streaming (default: cores - 1, at most 8)")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    t.add_argument("--knn-every", type=int, help="epochs between held-out kNN checks (0: never)")
    t.add_argument("--map-snapshots", type=int,
                   help="held-out images mapped at each kNN check, the map as it learns (default 2000; 0: off)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method setting, e.g. temperature=0.5")
    t.add_argument("--skip", help="comma-separated steps to skip after training: embed,eval,project,index")
    t.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted or failed run from its checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(handler="ssl_core.cli.training:cmd_train")

    r = sub.add_parser("runs", parents=[common], help="list runs with status, method, dataset and kNN top-1")
    r.add_argument("--json", action="store_true")
    r.set_defaults(handler="ssl_core.cli.runs:cmd_runs")

    e = sub.add_parser("eval", parents=[common], help="scores of a run as one JSON object")
    e.add_argument("run_id")
    e.add_argument("--recompute", action="store_true", help="score again even if eval.json exists")
    e.add_argument("--device", default="auto")
    e.set_defaults(handler="ssl_core.cli.steps:cmd_eval")

    an = sub.add_parser("analyze", parents=[common],
                        help="layer-wise and factor probes, fine-tuning, clusters, outliers, robustness to "
                             "corruptions, label issues of a run (stored in its analysis/ folder), as JSON")
    an.add_argument("run_id")
    an.add_argument("--only", help="comma-separated analyses (default: every one not stored yet): "
                                   "layers,factors,finetune,clusters,outliers,robustness,label_issues")
    an.add_argument("--recompute", action="store_true", help="run them again even if stored")
    an.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    an.add_argument("--no-progress", action="store_true", help="no progress bar")
    an.set_defaults(handler="ssl_core.cli.analyses:cmd_analyze")

    n = sub.add_parser("neighbors", parents=[common], help="nearest images of one image of a run")
    n.add_argument("run_id")
    n.add_argument("--index", type=int, required=True, help="row of the image: train rows, then test rows")
    n.add_argument("-k", type=int, default=8)
    n.add_argument("--json", action="store_true")
    n.set_defaults(handler="ssl_core.cli.steps:cmd_neighbors")

    cmp = sub.add_parser("compare", parents=[common],
                       help="how alike two runs' embeddings of the same images are (CKA, k-NN overlap), as JSON")
    cmp.add_argument("run_a")
    cmp.add_argument("run_b")
    cmp.add_argument("-k", type=int, default=10, help="neighbours per image for the overlap")
    cmp.set_defaults(handler="ssl_core.cli.analyses:cmd_compare")

    x = sub.add_parser("export", parents=[common],
                       help="write runs to a file: .html one run's map or 2-4 runs compared; .csv their scores")
    x.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    x.add_argument("--out", required=True, metavar="FILE",
                   help="FILE.html (standalone page, opens offline) or FILE.csv (one row per run)")
    x.add_argument("--animation", action="store_true",
                   help="one run's .html: add the map as it learns (a frame per kNN check, slider, play)")
    x.set_defaults(handler="ssl_core.cli.analyses:cmd_export")

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
    at.set_defaults(handler="ssl_core.cli.analyses:cmd_attention")

    for name, text in (("embed", "embed the run's images with its encoder"),
                       ("project", "compute the run's 2-D UMAP map"),
                       ("index", "build the run's FAISS search index")):
        s = sub.add_parser(name, parents=[common], help=text)
        s.add_argument("run_id")
        s.add_argument("--device", default="auto")
        s.set_defaults(handler="ssl_core.cli.steps:cmd_step")

    for name, text, handler in (
            ("app", "open the dashboard in the browser", "ssl_core.cli.app:cmd_app"),
            ("demo", "add the bundled demo runs to the runs folder, then open the dashboard",
             "ssl_core.cli.demo:cmd_demo")):
        a = sub.add_parser(name, parents=[common], help=text)
        a.add_argument("--port", type=int, default=8501)
        a.add_argument("--address", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1: this machine only)")
        a.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="another name the app is reached by (this machine's on the network, a proxy's; "
                            "'*': any); repeatable. Requests for other names are refused (DNS rebinding)")
        a.set_defaults(handler=handler)

    i = sub.add_parser("import", parents=[common],
                       help="make a run from embeddings computed elsewhere (and their images, if you have them)")
    i.add_argument("--images", help="a folder of images, or a .parquet with a column of image bytes; without it, "
                                    "the run is the vectors (and labels, metadata, ids) alone: map and neighbours "
                                    "by id and label, no pictures")
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
    i.set_defaults(handler="ssl_core.cli.external:cmd_import")

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
    c.set_defaults(handler="ssl_core.cli.external:cmd_encode")

    sub.add_parser("methods", parents=[common], help="list methods").set_defaults(
        handler="ssl_core.cli.catalog:cmd_methods")
    sub.add_parser("datasets", parents=[common], help="list built-in datasets").set_defaults(
        handler="ssl_core.cli.catalog:cmd_datasets")
    return parser


def installed_version() -> str:
    """The installed distribution's version (pyproject.toml's, for a wheel or an editable install)."""
    try:
        return metadata.version("ssl-explorer")
    except metadata.PackageNotFoundError:
        return "(not installed: run `pip install -e .` in the clone)"
