"""Training from a folder of image files: streamed, in memory, and the standard file pipeline.

    python bench/streaming.py                      # CPU: convnet, 64 px from 96 px JPEGs
    python bench/streaming.py --device cuda --backbone resnet18 --batch 512 --images 50000

Writes `shapes` images as JPEG files (class folders, like a user's photos), then measures, in
one process and interleaved round by round, SimCLR training steps fed four ways:
  (m) in memory: the folder decoded once (`--load memory`), views made by the method;
  (s) streamed: `--load stream`, the path of folders larger than RAM: DataLoader workers only
      decode each step's batch, the method makes the views on the device;
  (b) standard: torchvision transforms over the same files in a DataLoader (PIL open, crop,
      jitter, tensor), the pipeline users would otherwise write for an image folder;
  (c) ceiling: the model and loss alone, on views already made.
The same model, loss, optimizer and precision throughout. Prints images/s and the ratios s/m,
s/b and s/c; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from ssl_core.augment import make_views
from ssl_core.config import DataConfig
from ssl_core.data import load_dataset
from ssl_core.data.decode import decode_image
from ssl_core.methods import build_method
from ssl_core.methods.simclr import nt_xent
from ssl_core.train import (StreamedTrainImages, TrainImages, TrainingStep, channel_stats, make_optimizer,
                            precision_context)
from train_throughput import standard_transform


def write_folder(root: Path, n: int, size: int) -> None:
    data = load_dataset(DataConfig(dataset="shapes", resolution=size, train_size=n, test_size=16)).train
    for i, (image, label) in enumerate(zip(data.images.numpy(), data.labels.tolist())):
        path = root / data.class_names[label] / f"{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=90)


class FileDataset(torch.utils.data.Dataset):
    """Image files through a transform: torchvision's ImageFolder, reduced to what is timed."""

    def __init__(self, paths: list[Path], resolution: int, transform):
        self.paths, self.resolution, self.transform = paths, resolution, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        # The project's decoder (EXIF, RGB, centre square, resize), so only the augmentation differs.
        return self.transform(Image.fromarray(decode_image(self.paths[i], self.resolution)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--file-size", type=int, default=96, help="side of the JPEG files (px)")
    parser.add_argument("--resolution", type=int, default=64, help="side the run trains at (px)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round (default 30 GPU, 6 CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding workers of (s) and (b) (default: cores - 1, at most 8, as training uses)")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    steps = args.steps or (30 if gpu else 6)
    batch, res = args.batch, args.resolution
    workers = args.workers if args.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))
    torch.backends.cudnn.benchmark = True

    tmp = tempfile.TemporaryDirectory(prefix="ssl-bench-folder-")
    folder = Path(tmp.name)
    t0 = time.perf_counter()
    write_folder(folder, args.images, args.file_size)
    written = time.perf_counter() - t0
    cfg = dict(dataset=str(folder), resolution=res, data_dir=str(folder / ".cache"), workers=workers)
    t0 = time.perf_counter()
    memory = load_dataset(DataConfig(load="memory", **cfg)).train
    load_memory = time.perf_counter() - t0
    t0 = time.perf_counter()
    streamed = load_dataset(DataConfig(load="stream", **cfg)).train
    check_streamed = time.perf_counter() - t0
    n = len(memory)

    mean, std = channel_stats(memory.images)
    torch.manual_seed(0)
    method = build_method({"name": "simclr"}, args.backbone, resolution=res, num_classes=12, mean=mean, std=std)
    method = method.to(device)
    if gpu:
        method = method.to(memory_format=torch.channels_last)
    method.train()
    optimizer = make_optimizer(method, 1e-3, 1e-4, device)
    autocast = precision_context(device)
    step_module = TrainingStep(method)

    def update(loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def model_loss(x: torch.Tensor) -> torch.Tensor:
        if gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        z1, z2 = method.projector(method.encode(x)).chunk(2)
        return nt_xent(z1, z2, method.cfg.temperature)

    def random_plan(home: torch.device):
        g = torch.Generator().manual_seed(0)
        while True:
            yield torch.randint(0, n, (batch,), generator=g).to(home)

    resident = TrainImages(memory.images, memory.labels, device)
    in_memory_batches = resident.batches(random_plan(resident.home))
    stream = StreamedTrainImages(streamed.images, streamed.labels, device)
    streamed_batches = stream.batches(random_plan(stream.home))

    def fed_by(batches):
        def run(k: int) -> None:
            for images, _ in itertools.islice(batches, k):
                with autocast:
                    loss = step_module(images, None)["loss"]
                update(loss)
        return run

    transform, standard_name = standard_transform(method.view_cfg, res, mean, std)
    paths = [folder / name for name in streamed.images.names]
    loader = torch.utils.data.DataLoader(
        FileDataset(paths, res, transform), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=gpu, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)

    def standard_batches():
        while True:
            for v1, v2 in loader:
                yield torch.cat([v1, v2]).to(device, non_blocking=True)
    standard_iter = standard_batches()

    def standard(k: int) -> None:
        for x in itertools.islice(standard_iter, k):
            with autocast:
                loss = model_loss(x)
            update(loss)

    fixed = resident.batch(torch.arange(batch, device=resident.home))[0]
    views = method.normalize(make_views(torch.cat([fixed, fixed]), method.view_cfg, res))

    def ceiling(k: int) -> None:
        for _ in range(k):
            with autocast:
                loss = model_loss(views)
            update(loss)

    def timed(fn) -> float:
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(steps)
        if gpu:
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)

    pipelines = {"memory": fed_by(in_memory_batches), "streamed": fed_by(streamed_batches),
                 "standard": standard, "ceiling": ceiling}
    for fn in pipelines.values():  # warm-up: worker start-up, prefetch queues filled, cudnn tuning
        fn(3)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.rounds):
        for name, fn in pipelines.items():
            rates[name].append(timed(fn))
    best = {name: statistics.median(r) for name, r in rates.items()}

    name = torch.cuda.get_device_name(device) if gpu else (platform.processor() or platform.machine())
    print(f"device: {name}, {os.cpu_count()} cores; torch {torch.__version__}; SimCLR, {args.backbone}, batch {batch}; "
          f"{n} JPEG files of {args.file_size} px trained at {res} px; {workers} decoding workers; "
          f"(b) = {standard_name}")
    print(f"set-up: files written in {written:.1f} s; decoded into memory in {load_memory:.1f} s; "
          f"checked for streaming in {check_streamed:.1f} s")
    print("| pipeline | images/s (median of rounds) | rounds |")
    print("|---|---|---|")
    for key, label in (("memory", "(m) in memory: decoded once, views on the device"),
                       ("streamed", "(s) streamed: workers decode each batch, views on the device"),
                       ("standard", f"(b) standard: {standard_name} over the files in a DataLoader"),
                       ("ceiling", "(c) ceiling: model + loss on views already made")):
        print(f"| {label} | {best[key]:.0f} | {', '.join(f'{r:.0f}' for r in rates[key])} |")
    result = {"device": name, "cores": os.cpu_count(), "backbone": args.backbone, "batch": batch, "images": n,
              "file_size": args.file_size, "resolution": res, "workers": workers, "standard": standard_name,
              "torch": torch.__version__, "images_per_s": {k: round(v, 1) for k, v in best.items()},
              "streamed_vs_memory": round(best["streamed"] / best["memory"], 3),
              "streamed_vs_standard": round(best["streamed"] / best["standard"], 3),
              "streamed_vs_ceiling": round(best["streamed"] / best["ceiling"], 3)}
    print(f"s/m = {result['streamed_vs_memory']:.2f}, s/b = {result['streamed_vs_standard']:.2f}, "
          f"s/c = {result['streamed_vs_ceiling']:.2f}")
    print(json.dumps(result))
    tmp.cleanup()


if __name__ == "__main__":
    main()
