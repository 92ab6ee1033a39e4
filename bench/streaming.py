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
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from harness import SimCLRBench, device_name, measure, pick_device, print_table, random_plan
from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset
from ssl_core.data.decode import decode_image
from ssl_core.training.batching import StreamedTrainImages, TrainImages, channel_stats
from train_throughput import standard_loss, standard_transform


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

    device = pick_device(args.device)
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
    bench = SimCLRBench(args.backbone, res, mean, std, device)
    resident = TrainImages(memory.images, memory.labels, device)
    stream = StreamedTrainImages(streamed.images, streamed.labels, device)

    transform, standard_name = standard_transform(bench.method.view_cfg, res, mean, std)
    loss_b, loss_b_name = standard_loss(bench.method.cfg.temperature)
    paths = [folder / name for name in streamed.images.names]
    loader = torch.utils.data.DataLoader(
        FileDataset(paths, res, transform), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=gpu, persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
    standard_views = (torch.cat([v1, v2]).to(device, non_blocking=True)
                      for _ in itertools.count() for v1, v2 in loader)

    pipelines = {"memory": bench.on_images(resident.batches(random_plan(n, batch, resident.home))),
                 "streamed": bench.on_images(stream.batches(random_plan(n, batch, stream.home))),
                 "standard": bench.on_views(standard_views, bench.views_loss(loss_b)),
                 "ceiling": bench.on_views(bench.fixed_views(memory.images[:batch]), bench.views_loss())}
    rates, best = measure(pipelines, steps=steps, batch=batch, rounds=args.rounds, warmup=3, gpu=gpu)

    name = device_name(device)
    print(f"device: {name}, {os.cpu_count()} cores; torch {torch.__version__}; SimCLR, {args.backbone}, batch {batch}; "
          f"{n} JPEG files of {args.file_size} px trained at {res} px; {workers} decoding workers; "
          f"(b) = {standard_name} and {loss_b_name}")
    print(f"set-up: files written in {written:.1f} s; decoded into memory in {load_memory:.1f} s; "
          f"checked for streaming in {check_streamed:.1f} s")
    print_table({"memory": "(m) in memory: decoded once, views on the device",
                 "streamed": "(s) streamed: workers decode each batch, views on the device",
                 "standard": f"(b) standard: {standard_name} over the files in a DataLoader",
                 "ceiling": "(c) ceiling: model + loss on views already made"}, rates, best)
    result = {"device": name, "cores": os.cpu_count(), "backbone": args.backbone, "batch": batch, "images": n,
              "file_size": args.file_size, "resolution": res, "workers": workers, "standard": standard_name, "standard_loss": loss_b_name,
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
