"""Training throughput of our SimCLR step against the pipeline users would otherwise run.

    python bench/train_throughput.py                       # GPU if there is one, else CPU
    python bench/train_throughput.py --device cpu          # convnet, small batches
    python bench/train_throughput.py --compile             # (a) under torch.compile too

Three pipelines, same model (backbone + SimCLR projector), same loss (NT-Xent), same optimizer
(AdamW, fused on GPU), same precision (bf16 autocast and channels_last on GPU), measured in one
process, interleaved round by round so that clock drift hits all three alike:
  (a) ours: uint8 images resident on the device, views made there in one batched call
      (ssl_core.models.augment), exactly the step `ssl-explorer train` takes;
  (b) standard: torchvision transforms in a DataLoader over all CPU cores with pinned memory,
      as LightlySSL's examples do (with lightly's SimCLRTransform and NTXentLoss when `lightly`
      is installed);
  (c) ceiling: the model and loss alone, on two views already on the device.
Prints images/s of each and the ratios a/b and a/c; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os

import numpy as np
import torch
from PIL import Image

from harness import SimCLRBench, device_name, measure, pick_device, print_table, random_plan
from ssl_core.models.augment import ViewConfig
from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset
from ssl_core.data.online import import_torchvision
from ssl_core.models.methods.simclr import nt_xent
from ssl_core.training.batching import TrainImages, channel_stats


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

    device = pick_device(args.device)
    gpu = device.type == "cuda"
    backbone = args.backbone or ("resnet18" if gpu else "convnet")
    batch = args.batch or (512 if gpu else 128)
    steps = args.steps or (30 if gpu else 4)
    n = args.images or (50_000 if gpu else 4_096)
    torch.backends.cudnn.benchmark = True

    data = load_dataset(DataConfig(dataset="shapes", train_size=n, test_size=16)).train
    mean, std = channel_stats(data.images)
    bench = SimCLRBench(backbone, 32, mean, std, device)
    loss_b, loss_b_name = standard_loss(bench.method.cfg.temperature)
    ours_step, ceiling_loss, standard_step_loss = bench.step, bench.views_loss(), bench.views_loss(loss_b)
    if args.compile:  # the model in all three; the views in (a) too
        ours_step, ceiling_loss, standard_step_loss = (torch.compile(f) for f in (ours_step, ceiling_loss,
                                                                                 standard_step_loss))

    # (a) ours: the loop's own data holder and step module, on random batches.
    resident = TrainImages(data.images, data.labels, device)
    random_batches = resident.batches(random_plan(n, batch, resident.home))

    # (b) standard: PIL images through transforms in worker processes.
    transform, standard_name = standard_transform(bench.method.view_cfg, 32, mean, std)
    loader = torch.utils.data.DataLoader(
        PILImages(data.images.numpy(), transform), batch_size=batch, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=gpu, persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers > 0 else None)
    standard_views = (torch.cat([v1, v2]).to(device, non_blocking=True)
                      for _ in itertools.count() for v1, v2 in loader)

    # (c) ceiling: the same two normalized views every step, already on the device.
    pipelines = {"ours": bench.on_images(random_batches, ours_step),
                 "standard": bench.on_views(standard_views, standard_step_loss),
                 "ceiling": bench.on_views(bench.fixed_views(data.images[:batch]), ceiling_loss)}
    rates, best = measure(pipelines, steps=steps, batch=batch, rounds=args.rounds, gpu=gpu,
                          warmup=3 if not args.compile else 10)

    name = device_name(device)
    print(f"device: {name}; torch {torch.__version__}; SimCLR, {backbone}, batch {batch}, 32 px, "
          f"{n} images; (b) = {standard_name} and {loss_b_name}, {args.workers} DataLoader workers; "
          f"compile={'on' if args.compile else 'off'}")
    print_table({"ours": "(a) ours: device-resident uint8, batched views on the device",
                 "standard": f"(b) standard: {standard_name} in a DataLoader",
                 "ceiling": "(c) ceiling: model + loss on views already on the device"}, rates, best)
    result = {"device": name, "backbone": backbone, "batch": batch, "images": n, "compile": args.compile,
              "standard": standard_name, "standard_loss": loss_b_name, "workers": args.workers, "torch": torch.__version__,
              "images_per_s": {k: round(v, 1) for k, v in best.items()},
              "ours_vs_standard": round(best["ours"] / best["standard"], 3),
              "ours_vs_ceiling": round(best["ours"] / best["ceiling"], 3)}
    print(f"a/b = {result['ours_vs_standard']:.2f}, a/c = {result['ours_vs_ceiling']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
