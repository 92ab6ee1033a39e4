"""How long making views takes next to the training step it feeds.

Times `make_views` (SimCLR's CIFAR recipe) on a batch of uint8 images, and forward+backward of
the `convnet` backbone on two such views, in the same process and interleaved, so that the
ratio holds on a shared or throttled machine where absolute times drift. Prints the median and
the minimum over the repeats.

    python bench/augment.py                 # batch 256, 32 px, CPU
    python bench/augment.py --device cuda --backbone resnet18
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ssl_core.models.augment import ViewConfig, make_views, normalize
from ssl_core.models.backbones import build_backbone

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--backbone", default="convnet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (args.batch, args.size, args.size, 3), dtype=torch.uint8, device=device)
    cfg = ViewConfig()
    model = build_backbone(args.backbone, args.size).to(device).train()

    def views() -> torch.Tensor:
        return make_views(images, cfg, args.size)

    two_views = torch.cat([normalize(views(), CIFAR_MEAN, CIFAR_STD) for _ in range(2)])

    def step() -> None:
        model.zero_grad(set_to_none=True)
        model(two_views).square().mean().backward()

    # Views are cheap: time several per round so their timer reads well above its resolution.
    per_round = 10
    for _ in range(2):  # warm-up (oneDNN primitive creation, allocator)
        views()
        step()
    view_ms, step_ms = [], []
    for _ in range(args.repeats):
        view_ms.append(timed(lambda: [views() for _ in range(per_round)], device) / per_round)
        step_ms.append(timed(step, device))

    print(
        f"{args.device}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size} px, "
        f"backbone {args.backbone}"
    )
    for label, values in (
        ("make_views, one view", view_ms),
        (f"{args.backbone} fwd+bwd, two views", step_ms),
    ):
        print(f"  {label:<34} median {statistics.median(values):8.2f} ms   min {min(values):8.2f} ms")
    views_ms, net_ms = 2 * statistics.median(view_ms), statistics.median(step_ms)
    print(f"  making two views takes {views_ms / net_ms:.1%} of the backbone's fwd+bwd on them (medians)")


if __name__ == "__main__":
    main()
