"""What the training benchmarks share: the SimCLR model under test, its update, and the timing.

Every pipeline a benchmark compares feeds the same `SimCLRBench` (model, optimizer, precision),
so they differ only in how views reach the model; `measure` runs them interleaved round by
round in one process, so that clock drift and other load hit all of them alike.
"""

from __future__ import annotations

import itertools
import platform
import statistics
import time
from typing import Callable, Iterable, Iterator

import torch

from ssl_core.models.augment import make_views
from ssl_core.models.methods import build_method
from ssl_core.models.methods.simclr import nt_xent
from ssl_core.core.runtime import precision_context
from ssl_core.training.loop import TrainingStep
from ssl_core.training.optimizer import make_optimizer

Pipeline = Callable[[int], None]  # takes k training steps


def add_budget_arguments(parser, *, steps: int = 600) -> None:
    """The budget every learning benchmark states: steps, batch, train/test images, device."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--device", default="cpu")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())


def random_plan(n: int, batch: int, home: torch.device) -> Iterator[torch.Tensor]:
    """Endless batches of random positions (seeded), on the device that holds the images."""
    g = torch.Generator().manual_seed(0)
    while True:
        yield torch.randint(0, n, (batch,), generator=g).to(home)


class SimCLRBench:
    """SimCLR on one backbone with the training loop's optimizer and precision."""

    def __init__(self, backbone: str, resolution: int, mean, std, device: torch.device):
        self.device, self.gpu, self.resolution = device, device.type == "cuda", resolution
        torch.manual_seed(0)
        method = build_method({"name": "simclr"}, backbone, resolution=resolution, num_classes=12, mean=mean, std=std)
        method = method.to(device)
        if self.gpu:
            method = method.to(memory_format=torch.channels_last)
        self.method = method.train()
        self.optimizer = make_optimizer(method, 1e-3, 1e-4, device)
        self.autocast = precision_context(device)
        self.step = TrainingStep(method)  # ours: uint8 images in, views made by the method

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def views_loss(self, loss_fn: Callable | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """normalized views (2B, 3, H, W) -> loss, with NT-Xent or the given loss of (z1, z2)."""
        loss_fn = loss_fn or (lambda z1, z2: nt_xent(z1, z2, self.method.cfg.temperature))

        def loss(x: torch.Tensor) -> torch.Tensor:
            if self.gpu:
                x = x.contiguous(memory_format=torch.channels_last)
            z1, z2 = self.method.projector(self.method.encode(x)).chunk(2)
            return loss_fn(z1, z2)
        return loss

    def fixed_views(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Two normalized views of a batch, made once: what the ceiling trains on every step."""
        images_u8 = images_u8.to(self.device)
        return self.method.normalize(make_views(torch.cat([images_u8, images_u8]), self.method.view_cfg,
                                                self.resolution))

    def on_images(self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], step=None) -> Pipeline:
        """Training steps on uint8 (images, labels) batches, through the method's own step."""
        step = step or self.step

        def run(k: int) -> None:
            for images, _ in itertools.islice(batches, k):
                with self.autocast:
                    loss = step(images, None)["loss"]
                self.update(loss)
        return run

    def on_views(self, views: Iterable[torch.Tensor] | torch.Tensor,
                 loss: Callable[[torch.Tensor], torch.Tensor]) -> Pipeline:
        """Training steps on views already made: an iterator of them, or one tensor every step."""
        def run(k: int) -> None:
            chunk = itertools.repeat(views, k) if isinstance(views, torch.Tensor) else itertools.islice(views, k)
            for x in chunk:
                with self.autocast:
                    value = loss(x)
                self.update(value)
        return run


def measure(pipelines: dict[str, Pipeline], *, steps: int, batch: int, rounds: int, warmup: int,
            gpu: bool) -> tuple[dict[str, list[float]], dict[str, float]]:
    """images/s of each pipeline per round (after `warmup` untimed steps each) and their medians."""
    def timed(fn: Pipeline) -> float:
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(steps)
        if gpu:
            torch.cuda.synchronize()
        return steps * batch / (time.perf_counter() - start)

    for fn in pipelines.values():  # cudnn autotuning, compilation, worker start-up, queues filled
        fn(warmup)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, fn in pipelines.items():
            rates[name].append(timed(fn))
    return rates, {name: statistics.median(r) for name, r in rates.items()}


def print_table(labels: dict[str, str], rates: dict[str, list[float]], best: dict[str, float]) -> None:
    print("| pipeline | images/s (median of rounds) | rounds |")
    print("|---|---|---|")
    for key, label in labels.items():
        print(f"| {label} | {best[key]:.0f} | {', '.join(f'{r:.0f}' for r in rates[key])} |")
