"""Regenerate the bundled demo runs in pretrained/ with this project's own training code.

    python pretrained/make_pretrained.py [NAME ...]            # train, score, analyse, bundle
    python pretrained/make_pretrained.py --refresh [NAME ...]  # slim, embed, score, analyse again, no training
    python pretrained/make_pretrained.py --list                # each run's budget and scores

Two datasets: `shapes` (4,000 train / 1,000 test images at 32 px, generated) and the real digits
`mnist5k` (its 4,000 / 1,000 split). Each run is trained with its method's recipe; then its
checkpoint is slimmed to the weights its embedding is computed from, stored as float16
(`models.checkpoint.encoder_checkpoint`: no heads, teachers, decoders or optimizer state), and
only then embedded, scored, mapped and analysed, so that every stored number comes from the
weights that ship. It is bundled without its search index, and an untrained run (random init,
pixels) without its embeddings: `ssl-explorer demo` recomputes both in seconds. pretrained/ stays
under 40 MB and the demo opens offline.

Every run here was trained on a 2-core CPU (one thread each, two at a time), `device="cpu"`;
`RUNS` gives its budget and the reason for it. A run is reproduced from its config.json and seed.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.models.checkpoint import encoder_checkpoint, load_checkpoint, load_method
from ssl_core.models.methods import METHODS
from ssl_core.models.methods.base import train_settings
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.pipeline import POST_STEPS, run_all, run_post_steps
from ssl_core.workflows.train_request import create_training_run

HERE = Path(__file__).resolve().parent
DATA = {"shapes": DataConfig(dataset="shapes", train_size=4000, test_size=1000),
        "mnist5k": DataConfig(dataset="mnist5k")}
TRAIN_SIZE = 4000  # both datasets


@dataclass(frozen=True)
class Bundled:
    method: str
    backbone: str
    dataset: str
    epochs: int
    batch_size: int = 256
    train: tuple[tuple[str, object], ...] = ()  # other TrainConfig fields, as (name, value)

    @property
    def steps(self) -> int:
        return self.epochs * (TRAIN_SIZE // self.batch_size) if METHODS.get(self.method).trainable else 0

    def config(self) -> RunConfig:
        train = train_settings(self.method, {"epochs": self.epochs, "batch_size": self.batch_size, "device": "cpu",
                                             "knn_every": max(1, self.epochs // 10), **dict(self.train)})
        return RunConfig(data=DATA[self.dataset], backbone=BackboneConfig(self.backbone),
                         method={"name": self.method}, train=TrainConfig(**train))


RUNS = {
    # shapes: the convnet's floor, ceiling and contrastive run; a supervised and a random ViT for
    # the Attention page.
    "demo-random-shapes": Bundled("random", "convnet", "shapes", 1),
    "demo-pixels-shapes": Bundled("pixels", "convnet", "shapes", 1),
    # These two were trained on 2026-11-22, before the methods' recipes, and are kept as they were.
    "demo-supervised-shapes": Bundled("supervised", "convnet", "shapes", 15, 256, (("knn_every", 5),)),
    "demo-simclr-shapes": Bundled("simclr", "convnet", "shapes", 30, 256, (("knn_every", 5),)),
    "demo-supervised-vit-shapes": Bundled("supervised", "vit_mini", "shapes", 60, 128,
                                          (("knn_every", 3), ("map_snapshots", 0))),
    "demo-random-vit-shapes": Bundled("random", "vit_mini", "shapes", 1),
    # mnist5k: the floors, the ceilings, redundancy reduction, and masked prediction on a ViT (the
    # Attention page's self-supervised ViT: MAE reached kNN 0.648 on vit_mini after 600 steps on
    # 2,000 mnist5k images, against 0.331 for its random init, bench/results/recipes_cpu.md). DINO
    # on vit_mini (60 epochs of 128) stayed at 0.58 from step 372 to 744 against 0.347 for its
    # random init and 0.939 for the supervised ViT (bench/results/bundled_runs_cpu.md): not bundled
    # yet. An autoencoder (40 epochs: 0.955, 75% of the way) was bundled until the MAE run took its
    # place under the 40 MB bound.
    "demo-random-mnist5k": Bundled("random", "convnet", "mnist5k", 1),
    "demo-supervised-mnist5k": Bundled("supervised", "convnet", "mnist5k", 20),
    "demo-vicreg-mnist5k": Bundled("vicreg", "convnet", "mnist5k", 40),
    "demo-mae-vit-mnist5k": Bundled("mae", "vit_mini", "mnist5k", 60, 128),
    "demo-supervised-vit-mnist5k": Bundled("supervised", "vit_mini", "mnist5k", 60, 128),
    "demo-random-vit-mnist5k": Bundled("random", "vit_mini", "mnist5k", 1),
}


def slim_checkpoint(run) -> None:
    """checkpoint.pt of a finished run -> its encoder's weights alone (`encoder_checkpoint`), in
    float16: half the bytes, and the loaded network is exactly the one the demo's numbers are
    computed from (`build` embeds after this)."""
    state = load_checkpoint(run, keys=("method", "num_classes", "step", "total_steps"))  # slim already, or not
    slim = encoder_checkpoint(load_method(run), state)
    slim["method"] = {k: v.half() if v.is_floating_point() else v for k, v in slim["method"].items()}
    torch.save(slim, run.checkpoint_path)


def build(run) -> None:
    """A trained run -> slimmed, then embedded, mapped, scored and analysed from the slim weights
    (`score` evaluates; the search index is not bundled and no analysis reads it)."""
    slim_checkpoint(run)
    run_post_steps(run, ["embed", "project"], device="cpu", progress=True)
    score(run)


def analyses_for(backbone: str) -> list[str]:
    """Every analysis, stored with the demo so its pages open filled in; fine-tuning only on the
    convnet runs (on a ViT it takes minutes of CPU per mode)."""
    from ssl_core.analyses.runner import ANALYSES

    return [name for name in ANALYSES if backbone == "convnet" or name != "finetune"]


def score(run) -> None:
    """eval.json and the analyses, computed again on a run whose embeddings are stored."""
    from ssl_core.analyses.runner import JOB_FILE, LOG_FILE, not_applicable, run_analyses
    from ssl_core.steps.evaluate import evaluate_run

    evaluate_run(run)
    skip = not_applicable(run)
    run_analyses(run, [n for n in analyses_for(run.config.backbone.name) if n not in skip], recompute=True,
                 device="cpu", progress=None)
    for name in (JOB_FILE, LOG_FILE):  # a job record names this machine's pid: not part of the demo
        (run.analysis_dir / name).unlink(missing_ok=True)


def publish(run, name: str) -> None:
    """Copy a finished run into pretrained/NAME, then `stamp` it."""
    target = HERE / name
    shutil.rmtree(target, ignore_errors=True)
    # Not the search index: `ssl-explorer demo` builds it in a second (a flat index is a copy of
    # the embeddings, as large as they are). Nor an untrained network's embeddings: the demo
    # computes them in seconds.
    left_out = ["index", ".job.lock", ".lock"] + ([] if METHODS.get(run.config.method["name"]).trainable else ["embeddings"])
    shutil.copytree(run.path, target, ignore=shutil.ignore_patterns(*left_out))
    stamp(target, name)
    print(f"{name}: {(target / 'eval.json').read_text()}")


def stamp(target: Path, name: str) -> None:
    """A bundled run's id, pid and host made the bundled ones in its records; its analyses stored
    compact (as `analyses.stored` writes them)."""
    status = json.loads((target / "status.json").read_text())
    atomic_write_json(target / "status.json", {**status, "pid": None, "host": None})
    for path in (target / "eval.json", *(target / "analysis").glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "run_id" in record:
            record = {**record, "run_id": name}
        atomic_write_json(path, record, compact=path.parent.name == "analysis")


def table() -> str:
    """The bundled runs as a markdown table: budget, device, kNN and linear top-1, and the floor and
    ceiling each is placed between (as the Overview places it)."""
    from ssl_core.analyses.standings import find, standings

    store = RunStore(HERE)
    boards = standings(store.get(s.id) for s in store.list() if not s.broken)
    rows = ["| run | method | backbone | dataset | budget | kNN top-1 | linear top-1 | floor | ceiling |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, b in RUNS.items():
        found = find(boards, name) if (HERE / name).exists() else None
        scores = json.loads((HERE / name / "eval.json").read_text()) if found else {}
        floor = ceiling = None
        if found:
            board, run = found
            floor, ceiling = board.floor_of(run), board.ceiling_of(run)

        def named(s) -> str:
            return f"{s.run_id} {s.knn_top1:.3f}" if s is not None and s is not found[1] else "-"
        budget = f"{b.steps} steps of {b.batch_size}, CPU" if b.steps else "untrained"
        rows.append(f"| {name} | {b.method} | {b.backbone} | {b.dataset} | {budget} | {scores.get('knn_top1', '-')} | "
                    f"{scores.get('linear_top1', '-')} | {named(floor) if found else '-'} | "
                    f"{named(ceiling) if found else '-'} |")
    return "\n".join(rows)


def main(names: list[str], refresh: bool = False) -> None:
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"unknown bundled run(s) {', '.join(unknown)}; known: {', '.join(RUNS)}")
    store = RunStore(HERE / (".refresh" if refresh else ".build"))
    for name in names or list(RUNS):
        if refresh:  # the bundled run again through today's slimming, embedding and analyses, no retraining
            shutil.rmtree(store.root / name, ignore_errors=True)
            run = store.get(shutil.copytree(HERE / name, store.root / name).name)
        else:
            run = create_training_run(store, RUNS[name].config(), ["pretrained/make_pretrained.py", name])
            run_all(run, skip=POST_STEPS, progress=True)  # training alone
        build(run)
        publish(store.get(run.id), name)
        shutil.rmtree(run.path)  # only this run: another invocation may be building beside it

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--list" in args:
        print(table())
    else:
        main([a for a in args if a != "--refresh"], refresh="--refresh" in args)
