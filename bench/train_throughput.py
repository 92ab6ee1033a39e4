"""Training throughput of our SimCLR step against the pipeline users would otherwise run.

    python bench/train_throughput.py                       # GPU if there is one, else CPU
    python bench/train_throughput.py --device cpu          # convnet, small batches
    python bench/train_throughput.py --compile             # (a) under torch.compile too

Three pipelines, same model (backbone + SimCLR projector), same loss (NT-Xent), same optimizer
(AdamW, fused on GPU), same precision (bf16 autocast and channels_last on GPU), measured in one
process, interleaved round by round so that clock drift hits all three alike:
  (a) ours: uint8 images resident on the device, views made there in one batched call
      (ssl_core.augment), exactly the step `ssl-explorer train` takes;
  (b) standard: torchvision transforms in a DataLoader over all CPU cores with pinned memory,
      as LightlySSL's examples do (with lightly's SimCLRTransform and NTXentLoss when `lightly`
      is installed);
  (c) ceiling: the model and loss alone, on two views already on the device.
Prints images/s of each and the ratios a/b and a/c; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from PIL import Image

from ssl_core.augment import ViewConfig, make_views
from ssl_core.config import DataConfig
from ssl_core.data import load_dataset
from ssl_core.data.online import import_torchvision
from ssl_core.methods import build_method
from ssl_core.methods.simclr import nt_xent
from ssl_core.train import TrainImages, TrainingStep, channel_stats, make_optimizer, precision_context


def standard_transform(view: ViewConfig, size: int, mean, std):
    """The same recipe as our view, written the way users write it: lightly or torchvision."""
    T = import_torchvision().transforms  # first: lightly imports torchvision too
    try:
        from lightly.transforms import SimCLRTransform

        return SimCLRTransform(input_size=size, min_scale=view.crop_scale[0], cj_prob=view.jitter_p,
                               cj_bright=view.brightness, cj_contrast=view.contrast, cj_sat=view.saturation,
                               cj_hue=view.hue, random_gray_scale=view.grayscale_p, gaussian_blur=0.0,
                               normalize={"mean": mean, "std": std}), "lightly SimCLRTransform"
    except ImportError:
        pass
    one = T.Compose([
        T.RandomResizedCrop(size, scale=tuple(view.crop_scale), ratio=tuple(view.crop_ratio)),
        T.RandomHorizontalFlip(view.flip_p),
        T.RandomApply([T.ColorJitter(view.brightness, view.contrast, view.saturation, view.hue)], p=view.jitter_p),
        T.RandomGrayscale(view.grayscale_p),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    return (lambda image: [one(image), one(image)]), "torchvision transforms"


def standard_loss(temperature: float):
    """lightly's NTXentLoss when lightly is installed (as its examples use it), else ours."""
    import_torchvision()  # first: lightly imports torchvision too
    try:
        from lightly.loss import NTXentLoss
    except ImportError:
        return (lambda z1, z2: nt_xent(z1, z2, temperature)), "NT-Xent (ours)"
    return NTXentLoss(temperature=temperature), "lightly NTXentLoss"


class PILImages(torch.utils.data.Dataset):
    """uint8 (N, H, W, 3) images served as PIL images, as an image-folder dataset serves them."""

    def __init__(self, images: np.ndarray, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default=None, help="default: resnet18 on GPU, convnet on CPU")
    parser.add_argument("--batch", type=int, default=None, help="default: 512 on GPU, 128 on CPU")
    parser.add_argument("--images", type=int, default=None, help="default: 50,000 on GPU, 4,096 on CPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default 30 GPU, 4 CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers for (b)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the step in (a) and (c)")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    backbone = args.backbone or ("resnet18" if gpu else "convnet")
    batch = args.batch or (512 if gpu else 128)
    steps = args.steps or (30 if gpu else 4)
    n = args.images or (50_000 if gpu else 4_096)
    torch.backends.cudnn.benchmark = True

    data = load_dataset(DataConfig(dataset="shapes", train_size=n, test_size=16)).train
    mean, std = channel_stats(data.images)
    torch.manual_seed(0)
    method = build_method({"name": "simclr"}, backbone, resolution=32, num_classes=12, mean=mean, std=std).to(device)
    if gpu:
        method = method.to(memory_format=torch.channels_last)
    method.train()
    optimizer = make_optimizer(method, 1e-3, 1e-4, device)
    autocast = precision_context(device)
    temperature = method.cfg.temperature

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def model_loss(x: torch.Tensor) -> torch.Tensor:  # normalized views (2B, 3, 32, 32) -> loss
        if gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = method.projector(method.encode(x)).chunk(2)
        return nt_xent(z1, z2, temperature)

    # (a) ours: the loop's own data holder and step module.
    resident = TrainImages(data.images, data.labels, device)
    ours_step = TrainingStep(method)
    loss_b, loss_b_name = standard_loss(temperature)

    def standard_model_loss(x: torch.Tensor) -> torch.Tensor:  # (b): the same model, the user's loss
        if gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = method.projector(method.encode(x)).chunk(2)
        return loss_b(z1, z2)

    ceiling_loss, standard_step_loss = model_loss, standard_model_loss
    if args.compile:
        ours_step, ceiling_loss = torch.compile(ours_step), torch.compile(model_loss)
        standard_step_loss = torch.compile(standard_model_loss)

    def ours(k: int) -> None:
        for _ in range(k):
            idx = torch.randint(0, n, (batch,), device=resident.home)
            images, _ = resident.batch(idx)
            with autocast:
                loss = ours_step(images, None)["loss"]
            update(loss)

    # (b) standard: PIL images through transforms in worker processes.
    transform, standard_name = standard_transform(method.view_cfg, 32, mean, std)
    loader = torch.utils.data.DataLoader(
        PILImages(data.images.numpy(), transform), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=gpu, persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None)
    batches = iter(loader)

    def standard(k: int) -> None:
        nonlocal batches
        for _ in range(k):
            try:
                v1, v2 = next(batches)
            except StopIteration:
                batches = iter(loader)
                v1, v2 = next(batches)
            x = torch.cat([v1, v2]).to(device, non_blocking=True)
            with autocast:
                loss = standard_step_loss(x)  # the same (compiled, with --compile) model as (a) and (c)
            update(loss)

    # (c) ceiling: the same two normalized views every step, already on the device.
    fixed = resident.batch(torch.arange(batch, device=resident.home))[0]
    views = method.normalize(make_views(torch.cat([fixed, fixed]), method.view_cfg, 32))

    def ceiling(k: int) -> None:
        for _ in range(k):
            with autocast:
                loss = ceiling_loss(views)
            update(loss)

    def timed(fn) -> float:
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(steps)
        if gpu:
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)

    pipelines = {"ours": ours, "standard": standard, "ceiling": ceiling}
    for fn in pipelines.values():  # warm-up: cudnn autotuning, compilation, worker start-up
        fn(3 if not args.compile else 10)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, fn in pipelines.items():
            rates[name].append(timed(fn))
    best = {name: statistics.median(r) for name, r in rates.items()}

    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    print(f"device: {name}; torch {torch.__version__}; SimCLR, {backbone}, batch {batch}, 32 px, "
          f"{n} images; (b) = {standard_name} and {loss_b_name}, {args.workers} DataLoader workers; "
          f"compile={'on' if args.compile else 'off'}")
    print("| pipeline | images/s (median of rounds) | rounds |")
    print("|---|---|---|")
    for key, label in (("ours", "(a) ours: device-resident uint8, batched views on the device"),
                       ("standard", f"(b) standard: {standard_name} in a DataLoader"),
                       ("ceiling", "(c) ceiling: model + loss on views already on the device")):
        print(f"| {label} | {best[key]:.0f} | {', '.join(f'{r:.0f}' for r in rates[key])} |")
    result = {"device": name, "backbone": backbone, "batch": batch, "images": n, "compile": args.compile,
              "standard": standard_name, "standard_loss": loss_b_name, "workers": args.workers, "torch": torch.__version__,
              "images_per_s": {k: round(v, 1) for k, v in best.items()},
              "ours_vs_standard": round(best["ours"] / best["standard"], 3),
              "ours_vs_ceiling": round(best["ours"] / best["ceiling"], 3)}
    print(f"a/b = {result['ours_vs_standard']:.2f}, a/c = {result['ours_vs_ceiling']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
