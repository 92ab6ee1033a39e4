"""Our methods against LightlySSL's recipes for them: same backbone, data, steps and optimiser.

    python bench/peer_parity.py                                  # simclr, byol, dino, vicreg on CPU
    python bench/peer_parity.py --device cuda --methods simclr,byol,dino,vicreg,barlow_twins,moco
    python bench/peer_parity.py --steps 5 --train-size 160 --batch-size 32 --out /tmp/pp.md   # smoke

Each method trains twice from the same seeded `convnet`, on the same `mnist5k` split (2,000 train /
1,000 test at 32 px), for the same steps and batch, with the same optimiser (AdamW lr 2e-3, wd
1e-4, linear warm-up over one epoch then cosine: ssl_core.training.optimizer) and precision:
  ours:    `ssl_core.training.loop.train` on a run, the method's defaults (as bench/methods.py);
  lightly: a plain PyTorch loop written as LightlySSL's examples write it: its loss, its heads
           (lightly.models.modules), its transforms (lightly.transforms, on PIL images in a
           DataLoader, normalised with the train split's statistics as ours are), its momentum
           updates (update_momentum on a cosine_schedule); the settings of its CIFAR-10
           benchmark (32 px, Gaussian blur off), head sizes of its benchmark or examples.
Both backbones are then embedded by the same function on the same un-augmented images and scored
by the same weighted kNN (k=20, ssl_core.steps.evaluate.weighted_knn); the untrained convnet both
start from is the floor. Seconds are training time only (lightly's includes its DataLoader).

Rows are appended to a JSON file beside the table as they finish, so an interrupted run resumes
where it stopped (--fresh to start over); the table is rewritten after each row.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from methods import cpu_name
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.core.runtime import precision_context
from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.online import import_torchvision
from ssl_core.models.encoders import load_run_encoder
from ssl_core.models.methods import Method
from ssl_core.steps.embed import embed_images
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import build_for_run, train
from ssl_core.training.optimizer import lr_factor, make_optimizer

import_torchvision()  # first: lightly imports torchvision, whose CUDA-only ops need this
import lightly
from lightly.loss import BarlowTwinsLoss, DINOLoss, NegativeCosineSimilarity, NTXentLoss, VICRegLoss
from lightly.models.modules import (BarlowTwinsProjectionHead, BYOLPredictionHead,
                                    BYOLProjectionHead, DINOProjectionHead, MoCoProjectionHead,
                                    SimCLRProjectionHead)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import (BYOLTransform, BYOLView1Transform, BYOLView2Transform,
                                DINOTransform, MoCoV2Transform, SimCLRTransform, VICRegTransform)
from lightly.utils.scheduler import cosine_schedule

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONE, RESOLUTION, DATASET = "convnet", 32, "mnist5k"
Views = list[Tensor]


@dataclasses.dataclass
class Recipe:
    """One method as LightlySSL trains it: views of a PIL image, the modules, the loss of a step."""
    transform: Callable[[Image.Image], Views]
    modules: nn.Module  # everything on the device: backbone, heads, momentum copies, stateful losses
    loss: Callable[[Views, int, int], Tensor]  # (views, step, total steps) -> scalar
    summary: str  # for the table


def momentum_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    deactivate_requires_grad(target)
    return target


def lightly_simclr(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    head = SimCLRProjectionHead(dim, dim, 128)  # its CIFAR-10 benchmark: (512, 512, 128) on ResNet-18
    criterion = NTXentLoss()  # temperature 0.5, its default and its benchmark's

    def loss(views: Views, step: int, total: int) -> Tensor:
        x0, x1 = views
        return criterion(head(backbone(x0)), head(backbone(x1)))

    transform = SimCLRTransform(input_size=RESOLUTION, cj_strength=0.5, gaussian_blur=0.0, normalize=normalize)
    return Recipe(transform, nn.ModuleList([backbone, head]), loss,
                  f"NTXentLoss(t=0.5), SimCLRProjectionHead({dim}, {dim}, 128), SimCLRTransform(cj 0.5)")


def lightly_byol(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    projector, predictor = BYOLProjectionHead(dim, 1024, 256), BYOLPredictionHead(256, 1024, 256)  # examples
    target_backbone, target_projector = momentum_copy(backbone), momentum_copy(projector)
    criterion = NegativeCosineSimilarity()

    def loss(views: Views, step: int, total: int) -> Tensor:
        # Its BYOL benchmark: 0.99 -> 1 on a cosine over the steps, updated before the forward.
        momentum = cosine_schedule(step, total, 0.99, 1.0)
        update_momentum(backbone, target_backbone, m=momentum)
        update_momentum(projector, target_projector, m=momentum)
        x0, x1 = views
        p0, p1 = predictor(projector(backbone(x0))), predictor(projector(backbone(x1)))
        with torch.no_grad():
            z0, z1 = target_projector(target_backbone(x0)), target_projector(target_backbone(x1))
        # Its benchmark's 2 * (-cos) per direction: the paper's 2 - 2 cos up to a constant.
        return 2 * criterion(p0, z1) + 2 * criterion(p1, z0)

    transform = BYOLTransform(BYOLView1Transform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize),
                              BYOLView2Transform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize))
    return Recipe(transform, nn.ModuleList([backbone, projector, predictor, target_backbone, target_projector]),
                  loss, f"NegativeCosineSimilarity, BYOL heads ({dim}, 1024, 256), momentum 0.99->1, "
                        "BYOLTransform")


def lightly_dino(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    head = DINOProjectionHead(dim, 2048, 256, 2048, batch_norm=True)  # its CIFAR-10 benchmark's
    # The teacher's head is built afresh and given the student's weights, as DINO's code starts
    # it: a weight-normalised layer cannot be deep-copied.
    teacher_head = DINOProjectionHead(dim, 2048, 256, 2048, batch_norm=True)
    teacher_head.load_state_dict(head.state_dict())
    deactivate_requires_grad(teacher_head)
    teacher_backbone = momentum_copy(backbone)
    # Teacher temperature 0.04 throughout (its default warm-up starts at 0.04 too), student 0.1,
    # centre momentum 0.9; the centre is a buffer, so the loss travels to the device with the rest.
    criterion = DINOLoss(output_dim=2048)

    def loss(views: Views, step: int, total: int) -> Tensor:
        momentum = cosine_schedule(step, total, 0.996, 1.0)  # its DINO benchmark's
        update_momentum(backbone, teacher_backbone, m=momentum)
        update_momentum(head, teacher_head, m=momentum)
        with torch.no_grad():
            teacher_out = [teacher_head(teacher_backbone(x)) for x in views[:2]]
        student_out = [head(backbone(x)) for x in views]
        return criterion(teacher_out, student_out)

    transform = DINOTransform(global_crop_size=RESOLUTION, n_local_views=0, cj_strength=0.5,
                              gaussian_blur=(0.0, 0.0, 0.0), normalize=normalize)
    return Recipe(transform, nn.ModuleList([backbone, head, teacher_backbone, teacher_head, criterion]), loss,
                  f"DINOLoss(2048), DINOProjectionHead({dim}, 2048, 256, 2048, BN), momentum 0.996->1, "
                  "DINOTransform(2 global views)")


def lightly_vicreg(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    head = BarlowTwinsProjectionHead(dim, 2048, 2048)  # its VICReg example's head
    criterion = VICRegLoss()  # lambda 25, mu 25, nu 1, eps 1e-4

    def loss(views: Views, step: int, total: int) -> Tensor:
        x0, x1 = views
        return criterion(head(backbone(x0)), head(backbone(x1)))

    transform = VICRegTransform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize)
    return Recipe(transform, nn.ModuleList([backbone, head]), loss,
                  f"VICRegLoss(25, 25, 1), BarlowTwinsProjectionHead({dim}, 2048, 2048), VICRegTransform")


def lightly_barlow_twins(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    head = BarlowTwinsProjectionHead(dim, 2048, 2048)  # its Barlow Twins example's
    criterion = BarlowTwinsLoss()  # lambda 5e-3

    def loss(views: Views, step: int, total: int) -> Tensor:
        x0, x1 = views
        return criterion(head(backbone(x0)), head(backbone(x1)))

    # Its Barlow Twins example and benchmark take BYOL's asymmetric views.
    transform = BYOLTransform(BYOLView1Transform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize),
                              BYOLView2Transform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize))
    return Recipe(transform, nn.ModuleList([backbone, head]), loss,
                  f"BarlowTwinsLoss(5e-3), BarlowTwinsProjectionHead({dim}, 2048, 2048), BYOLTransform")


def lightly_moco(backbone: nn.Module, dim: int, normalize: dict) -> Recipe:
    head = MoCoProjectionHead(dim, dim, 128)
    key_backbone, key_head = momentum_copy(backbone), momentum_copy(head)
    # Its CIFAR-10 benchmark: temperature 0.1, a bank of 4,096 keys (its examples: 0.5 and 4,096).
    criterion = NTXentLoss(temperature=0.1, memory_bank_size=(4096, 128))

    def loss(views: Views, step: int, total: int) -> Tensor:
        momentum = cosine_schedule(step, total, 0.996, 1.0)  # its MoCo example's
        update_momentum(backbone, key_backbone, m=momentum)
        update_momentum(head, key_head, m=momentum)
        x_query, x_key = views
        with torch.no_grad():
            key = key_head(key_backbone(x_key))
        return criterion(head(backbone(x_query)), key)

    transform = MoCoV2Transform(input_size=RESOLUTION, gaussian_blur=0.0, normalize=normalize)
    return Recipe(transform, nn.ModuleList([backbone, head, key_backbone, key_head, criterion]), loss,
                  f"NTXentLoss(t=0.1, bank 4096), MoCoProjectionHead({dim}, {dim}, 128), momentum 0.996->1, "
                  "MoCoV2Transform")


RECIPES = {"simclr": lightly_simclr, "byol": lightly_byol, "dino": lightly_dino, "vicreg": lightly_vicreg,
           "barlow_twins": lightly_barlow_twins, "moco": lightly_moco}


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, H, W, 3) images served as PIL images through a transform, as an image folder is."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Views:
        return self.transform(Image.fromarray(self.images[i]))


def seeded_encoder(data: ImageSet, seed: int) -> Method:
    """The untrained convnet at the run seed, inside the `random` method so that it embeds exactly
    as a trained method does: built as our loop builds a run's method (`build_for_run`), which
    builds the backbone first, so ours starts from these very weights."""
    config = RunConfig(data=DataConfig(resolution=RESOLUTION), backbone=BackboneConfig(BACKBONE),
                       method={"name": "random"}, train=TrainConfig(seed=seed))
    return build_for_run(config, data, torch.device("cpu"))


def knn_top1(method: Method, data: ImageSet, device: torch.device) -> float:
    bank = embed_images(method, data.train.images, device=device)
    queries = embed_images(method, data.test.images, device=device)
    return weighted_knn(bank, data.train.labels, queries, data.test.labels, num_classes=data.num_classes, k=20)


def train_ours(method: str, data_config: DataConfig, data: ImageSet, epochs: int, args) -> dict:
    config = RunConfig(data=data_config, backbone=BackboneConfig(BACKBONE), method={"name": method},
                       train=TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                                         seed=args.seed, knn_every=0, checkpoint_every=10**9, log_every=10))
    with tempfile.TemporaryDirectory() as tmp:
        run = RunStore(tmp).create(config)
        started = time.perf_counter()
        train(run, progress=False)
        seconds = time.perf_counter() - started
        knn = knn_top1(load_run_encoder(run, args.device), data, torch.device(args.device))
        steps = run.read_status()["total_steps"]
    return {"knn_top1": knn, "seconds": seconds, "steps": steps}


def train_lightly(method: str, data: ImageSet, total_steps: int, steps_per_epoch: int, args) -> dict:
    device = torch.device(args.device)
    encoder = seeded_encoder(data, args.seed).to(device)  # its backbone is the one lightly's recipe trains
    # Some of lightly's transforms draw from numpy and Python's generators (DataLoader workers seed
    # those themselves; without workers they run here).
    np.random.seed(args.seed)
    random.seed(args.seed)
    normalize = {"mean": encoder.mean.flatten().tolist(), "std": encoder.std.flatten().tolist()}
    recipe = RECIPES[method](encoder.backbone, encoder.backbone.out_dim, normalize)
    recipe.modules.to(device).train()
    optimizer = make_optimizer(recipe.modules, args.lr, 1e-4, device)  # frozen copies get no gradient
    warmup_steps = max(1, steps_per_epoch)  # one epoch, as TrainConfig.warmup_epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, warmup_steps))
    loader = torch.utils.data.DataLoader(
        PILImages(data.train.images.numpy(), recipe.transform), batch_size=args.batch_size, shuffle=True,
        drop_last=True, num_workers=args.workers, pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0, generator=torch.Generator().manual_seed(args.seed))
    autocast = precision_context(device)
    step, started = 0, time.perf_counter()
    while step < total_steps:
        for views in loader:
            views = [v.to(device, non_blocking=True) for v in views]
            with autocast:
                loss = recipe.loss(views, step, total_steps)
            # Checked once an epoch: reading the loss back every step would stall a GPU.
            if step % steps_per_epoch == 0 and not torch.isfinite(loss):
                raise RuntimeError(f"lightly's {method}: loss {float(loss)} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == total_steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"knn_top1": knn_top1(encoder, data, device), "seconds": seconds, "steps": step,
            "recipe": recipe.summary}


def cell(row: dict | None, key: str, fmt: str) -> str:
    return format(row[key], fmt) if row else "-"


def write_table(path: Path, settings: dict, rows: list[dict]) -> None:
    by = {(r["method"], r["side"]): r for r in rows}
    floor = by.get(("random", "random"))
    s = settings
    lines = [f"# Ours against LightlySSL's recipes: same backbone, data, steps and optimiser ({s['device_name']})",
             "",
             (f"{s['steps']} steps ({s['epochs']} epochs) of batch {s['batch_size']} on {DATASET} ({s['train_size']} "
              f"train / {s['test_size']} test images at {RESOLUTION} px), {BACKBONE} from one seeded initialisation "
              f"(seed {s['seed']}), AdamW lr {s['lr']} wd 1e-4, linear warm-up over 1 epoch then cosine. kNN top-1: "
              "weighted, k=20, test images against train images, both embedded un-augmented by the same function. "
              f"Seconds: training only; lightly's includes its DataLoader ({s['workers']} workers). "
              f"lightly {s['lightly']}, torch {s['torch']}."),
             f"Command: `python bench/peer_parity.py {s['argv']}`".rstrip(),
             "",
             f"Random-init floor (the {BACKBONE} both start from): kNN top-1 "
             + (f"{floor['knn_top1']:.3f}." if floor else "not measured yet."),
             "",
             "| method | ours kNN | lightly kNN | ours − lightly | ours s | lightly s | lightly's recipe |",
             "|---|---|---|---|---|---|---|"]
    for method in s["methods"]:
        ours, theirs = by.get((method, "ours")), by.get((method, "lightly"))
        if not ours and not theirs:
            continue
        diff = f"{ours['knn_top1'] - theirs['knn_top1']:+.3f}" if ours and theirs else "-"
        lines.append(f"| {method} | {cell(ours, 'knn_top1', '.3f')} | {cell(theirs, 'knn_top1', '.3f')} | {diff} | "
                     f"{cell(ours, 'seconds', '.0f')} | {cell(theirs, 'seconds', '.0f')} | "
                     f"{theirs['recipe'] if theirs else '-'} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default="simclr,byol,dino,vicreg",
                        help=f"comma-separated; known: {', '.join(RECIPES)}")
    parser.add_argument("--steps", type=int, default=600, help="rounded to whole epochs (15 steps each by default)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="lightly's DataLoader workers (default: 0 on CPU, where they would take the "
                             "training's cores; 8 on CUDA)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the Markdown table (default bench/results/peer_parity_{cpu,gpu}.md); the JSON "
                             "rows go beside it")
    parser.add_argument("--fresh", action="store_true", help="discard earlier rows")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(RECIPES))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(RECIPES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but torch sees no CUDA GPU")
    if args.workers is None:
        args.workers = 8 if args.device == "cuda" else 0
    out = args.out or RESULTS / f"peer_parity_{'gpu' if args.device == 'cuda' else 'cpu'}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows_path = out.with_suffix(".json")

    data_config = DataConfig(dataset=DATASET, train_size=args.train_size, test_size=args.test_size)
    data = load_dataset(data_config)
    steps_per_epoch = len(data.train) // args.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"batch size {args.batch_size} exceeds the {len(data.train)} train images")
    epochs = max(1, round(args.steps / steps_per_epoch))  # our loop counts whole epochs
    total_steps = epochs * steps_per_epoch
    if total_steps != args.steps:
        print(f"{args.steps} steps rounded to {total_steps} ({epochs} epochs of {steps_per_epoch})", file=sys.stderr)

    # What makes rows comparable: a file of rows measured otherwise is not mixed with these.
    settings = {"steps": total_steps, "epochs": epochs, "batch_size": args.batch_size, "lr": args.lr,
                "seed": args.seed, "train_size": len(data.train), "test_size": len(data.test), "device": args.device}
    saved = json.loads(rows_path.read_text()) if rows_path.exists() and not args.fresh else None
    if saved and saved["settings"] != settings:
        raise SystemExit(f"{rows_path} holds rows measured with {saved['settings']}; rerun with --fresh, or "
                         f"--out elsewhere")
    rows = saved["rows"] if saved else []
    done = {(r["method"], r["side"]) for r in rows}
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    table_settings = {**settings, "methods": methods, "workers": args.workers, "device_name": device_name,
                      "lightly": lightly.__version__, "torch": torch.__version__, "argv": " ".join(sys.argv[1:])}

    def record(method: str, side: str, result: dict) -> None:
        row = {"method": method, "side": side, **result}
        print(json.dumps(row), flush=True)
        rows.append(row)
        rows_path.write_text(json.dumps({"settings": settings, "rows": rows}, indent=2) + "\n")
        write_table(out, table_settings, rows)

    if ("random", "random") not in done:
        started = time.perf_counter()
        knn = knn_top1(seeded_encoder(data, args.seed).to(args.device), data, torch.device(args.device))
        record("random", "random", {"knn_top1": knn, "seconds": time.perf_counter() - started, "steps": 0})
    for method in methods:
        if (method, "ours") not in done:
            record(method, "ours", train_ours(method, data_config, data, epochs, args))
        if (method, "lightly") not in done:
            record(method, "lightly", train_lightly(method, data, total_steps, steps_per_epoch, args))
    write_table(out, table_settings, rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
