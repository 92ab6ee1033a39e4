"""The training loop: one function for every method.

Data lives on the run's device as uint8 for the whole run (in pinned host memory when the GPU
lacks room; a folder streamed from its files is decoded batch by batch in DataLoader workers);
each step takes a shuffled batch, the method makes its own augmented views on the device, and
AdamW follows a linear warm-up and a cosine decay. Every random draw of step `s` comes from a generator seeded by (seed, s), so a run
resumed from a checkpoint takes exactly the steps the uninterrupted run would have taken.

Started by torchrun, the same loop trains data-parallel (see distributed.py): each process takes
a slice of every global batch and rank 0 alone writes the run folder.

Failure handling, because runs are long and users are not watching:
  * SIGINT / SIGTERM: finish the current step, write a checkpoint, status `interrupted`.
  * NaN or infinite loss: status `failed`, error names the step; the last checkpoint is kept.
  * CUDA out of memory: status `failed`, error names the batch size and suggests a smaller one.
"""

from __future__ import annotations

import hashlib
import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ssl_core.training import distributed

from ssl_core.core.config import RunConfig
from ssl_core.core.runtime import precision_context, resolve_device
from ssl_core.models.checkpoint import CorruptCheckpoint, load_checkpoint, load_state, save_checkpoint
from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.files import FileImages, UnreadableImage, head
from ssl_core.steps.embed import embed_images
from ssl_core.steps.evaluate import weighted_knn
from ssl_core.models.methods import METHODS, Method, build_method
from ssl_core.store.runs import Run

StepCallback = Callable[[int, dict[str, Any]], None]


class TrainingFailed(RuntimeError):
    """Training stopped on an error that the run's status.json now explains."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (signal or stop event); a checkpoint was written."""

    def __init__(self, run_id: str, message: str):
        super().__init__(message)
        self.run_id = run_id


# A dataset larger than this share of the GPU's free memory stays in pinned host memory and each
# batch is copied over as it is needed; smaller ones (CIFAR-10 is 150 MB as uint8) live on the GPU.
DEVICE_DATA_FRACTION = 0.5


class TrainImages:
    """The train split where each step reaches it fastest: on the device when it fits, else in
    pinned host memory with one gather and one non-blocking copy per batch."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, device: torch.device):
        fits = True
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            fits = images.numel() * images.element_size() < DEVICE_DATA_FRACTION * free
        self.device, self.home = device, device if fits else torch.device("cpu")
        self.images, self.labels = images.to(self.home), labels.to(self.home)
        if not fits:
            self.images, self.labels = self.images.pin_memory(), self.labels.pin_memory()

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (self.images[idx].to(self.device, non_blocking=True),
                self.labels[idx].to(self.device, non_blocking=True))

    def batches(self, plan: Iterator[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) on the device for each batch of positions in `plan`."""
        for idx in plan:
            yield self.batch(idx)


class StreamedTrainImages:
    """The train split of a streamed folder: DataLoader workers decode each step's batch a few
    steps ahead (nothing else happens in them), then the batch goes to the device, where the
    method augments it as it would in-memory data. The plan is the same seeded order, so a
    streamed run takes exactly the steps an in-memory run takes."""

    def __init__(self, images: FileImages, labels: torch.Tensor, device: torch.device):
        self.device, self.home = device, torch.device("cpu")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, plan: Iterator[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pin = self.device.type == "cuda"
        for images, labels in self.images.batches(plan, labels=self.labels, pin_memory=pin):
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def train_images(data: ImageSet, device: torch.device) -> TrainImages | StreamedTrainImages:
    train = data.train
    if isinstance(train.images, FileImages):
        return StreamedTrainImages(train.images, train.labels, device)
    return TrainImages(train.images, train.labels, device)


def batch_plan(seed: int, n: int, batch_size: int, steps_per_epoch: int, start: int, total_steps: int,
               offset: int, local_batch: int, home: torch.device) -> Iterator[torch.Tensor]:
    """The positions each step from `start` trains on: a fresh seeded permutation every epoch,
    cut into batches; this process takes `local_batch` rows from `offset` of each batch."""
    order = None
    for step in range(start, total_steps):
        epoch, position = divmod(step, steps_per_epoch)
        if order is None or position == 0:
            order = epoch_order(seed, epoch, n, home)
        first = position * batch_size + offset
        yield order[first:first + local_batch]


class TrainingStep(nn.Module):
    """`method.training_step` as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, images_u8: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.method.training_step(images_u8, labels)


def make_optimizer(method: Method, lr: float, weight_decay: float, device: torch.device):
    """AdamW; on a GPU its fused kernel (one launch for all parameters instead of several each)."""
    return torch.optim.AdamW(method.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=device.type == "cuda")


def channel_stats(images_u8: torch.Tensor | FileImages) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units of uint8 (N, H, W, 3) images, on a sample of
    about 5,000 evenly spaced images, summed in chunks (a float copy of large images is big)."""
    sample = images_u8[:: max(1, len(images_u8) // 5000)]
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(sample), 500):
        chunk = sample[start:start + 500].reshape(-1, 3).double() / 255
        total += chunk.sum(dim=0)
        squares += (chunk * chunk).sum(dim=0)
    count = max(1, len(sample) * sample.shape[1] * sample.shape[2])
    mean = total / count
    var = (squares - count * mean * mean) / max(1, count - 1)
    std = var.clamp_min(0).sqrt().clamp_min(1e-3)
    return mean.float().tolist(), std.float().tolist()


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63)


def epoch_order(seed: int, epoch: int, n: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator().manual_seed(step_seed(seed, 10**9 + epoch))
    return torch.randperm(n, generator=g).to(device)


def build_for_run(config: RunConfig, data: ImageSet, device: torch.device) -> Method:
    """The run's method, initialised from the run seed, with the train split's statistics."""
    mean, std = channel_stats(data.train.images)
    torch.manual_seed(config.train.seed)
    method = build_method(config.method, config.backbone.name, resolution=config.data.resolution,
                          num_classes=data.num_classes, mean=mean, std=std)
    return method.to(device)


def train_digest(data: ImageSet) -> str:
    """Identifies the train split (its ids, in order): a resumed run must see the same images, or
    its remaining steps would silently be other steps."""
    return hashlib.sha256("\n".join(data.train.ids).encode()).hexdigest()[:16]


@contextmanager
def _on_signals(handler: Callable) -> Iterator[None]:
    """SIGINT and SIGTERM call `handler` inside the `with` block (in the main thread: only it
    can set handlers; elsewhere, as in the app's threads, the signals stay as they are)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def interrupt_on_signals():
    """SIGINT/SIGTERM raise KeyboardInterrupt at once: for stages with nothing to save (loading)."""
    return _on_signals(signal.default_int_handler)


def stop_on_signals(stop: threading.Event):
    """The first SIGINT/SIGTERM sets `stop`, so the loop ends after the current step with a
    checkpoint; a second one raises KeyboardInterrupt at once, for a step that takes too long
    (or never ends: a file that hangs) and a user who does not want to wait."""
    def first(signum, frame) -> None:
        stop.set()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.default_int_handler)

    return _on_signals(first)


def knn_unavailable(data: ImageSet, config: RunConfig) -> str | None:
    """Why `knn_check` cannot score this run, or None when it can. A folder of unlabelled images
    (labels -1) is what self-supervised training is for: the check is skipped with this reason
    (a `knn_skipped` line in metrics.jsonl), never an error that ends the run."""
    tc = config.train
    if tc.knn_max_bank < 1 or tc.knn_max_queries < 1:
        return (f"no kNN check: knn_max_bank ({tc.knn_max_bank}) and knn_max_queries "
                f"({tc.knn_max_queries}) must both be at least 1")
    bank_labelled = bool((data.train.labels[: tc.knn_max_bank] >= 0).any())
    queries_labelled = bool((data.test.labels[: tc.knn_max_queries] >= 0).any())
    if not (bank_labelled and queries_labelled):
        where = ("train and test images" if not (bank_labelled or queries_labelled)
                 else "train images" if not bank_labelled else "test images")
        return (f"no labels: dataset '{config.data.dataset}' has no labelled {where} to score a kNN "
                "check against; eval.json gives label-free scores (effective rank, uniformity) instead")
    return None


def knn_check(method: Method, data: ImageSet, config: RunConfig, device: torch.device) -> float:
    """Weighted kNN top-1 (k=20) of held-out images against a sample of the train split
    (see `knn_unavailable` for when it cannot run)."""
    train, test = data.train, data.test
    bank = embed_images(method, head(train.images, config.train.knn_max_bank), device=device)
    queries = embed_images(method, head(test.images, config.train.knn_max_queries), device=device)
    return weighted_knn(bank, train.labels[: len(bank)], queries, test.labels[: len(queries)],
                        num_classes=data.num_classes, k=20)


def train(run: Run, *, resume: bool = False, progress: bool = True, stop: threading.Event | None = None,
          callbacks: tuple[StepCallback, ...] = (), then: str | None = None) -> Run:
    """Train `run` (a folder holding config.json) to its last step; returns the run. Its status
    ends finished, or with `then` (the post-training step this process runs next) running at that
    stage: handed over so, the run never looks finished before the steps that follow."""
    config = run.config
    tc = config.train
    ctx = distributed.context()
    device = resolve_device(tc.device)
    stop = stop or threading.Event()

    saved_step: list[int | None] = [None]  # the step of the newest checkpoint, once there is one

    def set_status(*args, **kwargs) -> None:
        if ctx.is_main:
            # Where a resume would continue: after a kill -9 the list shows this, not the last
            # step logged, which may be up to checkpoint_min_seconds of steps later.
            if saved_step[0] is not None:
                kwargs.setdefault("checkpoint_step", saved_step[0])
            run.set_status(*args, **kwargs)

    # The status before a resume: a run that had finished stays finished if resuming it fails.
    try:
        before = run.read_status() if resume and ctx.is_main else None
    except (OSError, ValueError):  # unreadable: training writes a fresh one
        before = None

    def fail(stage: str, error: str) -> None:
        if ctx.is_main:
            run.set_failed(before, error, stage=stage)

    set_status("running", stage="load")
    try:
        # Nothing is trained yet, so nothing can be lost: a signal while loading stops at once.
        with interrupt_on_signals():
            # Under torchrun rank 0 loads first: checking a streamed folder decodes every file once,
            # and the other ranks then find its verdicts remembered instead of decoding them again.
            if ctx.active and not ctx.is_main:
                distributed.barrier()
            data = load_dataset(config.data)
            if ctx.active and ctx.is_main:
                distributed.barrier()
            if len(data.test) == 0:
                raise ValueError(f"dataset '{config.data.dataset}' has no test images to evaluate on")
            if METHODS.get(config.method["name"]).uses_labels and bool((data.train.labels < 0).any()):
                raise ValueError(f"method '{config.method['name']}' needs labels, but dataset "
                                 f"'{config.data.dataset}' has unlabelled images")
            if tc.batch_size % ctx.world_size:
                raise ValueError(f"batch size {tc.batch_size} does not split over {ctx.world_size} processes; "
                                 f"pick a multiple of {ctx.world_size}")
            method = build_for_run(config, data, device)
    except KeyboardInterrupt:
        where = "its last checkpoint" if run.checkpoint_path.exists() else "the first step"
        set_status("interrupted", stage="load", error=f"stopped while loading, before any step; resume starts "
                                                      f"from {where}")
        raise TrainingInterrupted(run.id, f"run {run.id} stopped while loading its data") from None
    except Exception as e:
        fail("load", f"{type(e).__name__}: {e}")
        raise
    train_data = train_images(data, device)
    n = len(train_data)
    batch_size = min(tc.batch_size, n)
    local_batch = batch_size // ctx.world_size  # this process's slice of each global batch
    steps_per_epoch = n // batch_size
    total_steps = tc.epochs * steps_per_epoch if method.trainable else 0
    warmup_steps = max(1, round(tc.warmup_epochs * steps_per_epoch))

    optimizer = make_optimizer(method, tc.lr, tc.weight_decay, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps))
    start = 0
    data_digest = train_digest(data)
    if resume and run.checkpoint_path.exists():
        try:
            state = load_checkpoint(run, device)
            load_state(run, method, state["method"])
            load_state(run, optimizer, state["optimizer"])
            load_state(run, scheduler, state["scheduler"])
        except CorruptCheckpoint as e:
            fail("load", str(e))
            raise
        saved_digest = state.get("data_digest")
        if saved_digest is not None and saved_digest != data_digest:
            message = (f"the train images differ from those of the checkpoint ({n} now): the dataset "
                       f"'{config.data.dataset}' changed since, so resuming would train on other images; "
                       "restore it as it was, or start a new run")
            fail("load", message)
            raise TrainingFailed(message)
        start = int(state["step"])
        saved_step[0] = start
        # Each step reseeds from (seed, step); restoring the generators keeps anything drawn
        # outside a step (a method's own schedule, say) on the same sequence too.
        torch.set_rng_state(state["rng_cpu"])
        if state["rng_cuda"] and device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        if ctx.is_main:
            run.truncate_metrics(after_step=start)
    knn_skipped = knn_unavailable(data, config)  # why no kNN check can run (no labels), or None
    # Said once per run: a resumed run whose metrics already hold the reason does not repeat it.
    knn_noted = knn_skipped is None or not ctx.is_main or any("knn_skipped" in m for m in run.read_metrics())
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last)
    step_module: nn.Module = TrainingStep(method)
    if ctx.active and method.trainable:
        step_module = torch.nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None)
    step_fn = torch.compile(step_module) if tc.compile else step_module
    autocast = precision_context(device)

    data_note = "streamed from files" if isinstance(train_data, StreamedTrainImages) else "in memory"
    set_status("running", stage="train", total_steps=total_steps, device=str(device), data=data_note,
               **({"processes": ctx.world_size} if ctx.active else {}))
    bar = tqdm(total=total_steps, initial=start, disable=not (progress and ctx.is_main), unit="step",
               desc=f"{method.name} {config.data.dataset}", dynamic_ncols=True)
    step, last_log = start, time.perf_counter()
    batches = train_data.batches(batch_plan(tc.seed, n, batch_size, steps_per_epoch, start, total_steps,
                                            ctx.rank * local_batch, local_batch, train_data.home))
    images_seen = 0
    # The first step whose loss was not finite (-1: none), kept on the device: reading it back
    # every step would make the CPU wait for the GPU and leave the GPU idle while the next
    # step launches. A GPU run reads it at each log step and before every checkpoint.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    check_every = 1 if device.type == "cpu" else tc.log_every
    last_save = -math.inf

    def checkpoint() -> None:
        save_checkpoint(run, method, optimizer, scheduler, step, total_steps, data.num_classes, data_digest)
        saved_step[0] = step
        set_status("running", stage="train", total_steps=total_steps, device=str(device), data=data_note,
                   **({"processes": ctx.world_size} if ctx.active else {}))

    def check_finite() -> None:
        bad = int(first_bad)
        if distributed.any_rank(bad >= 0, device):
            where = f"at step {bad} (epoch {bad // steps_per_epoch})" if bad >= 0 else "on another process"
            raise TrainingFailed(f"loss became NaN or infinite {where}; start a new run with a learning rate "
                                 f"below this one's {tc.lr:g} (--lr)")
    try:
        with stop_on_signals(stop):
            method.train()
            while step < total_steps:
                unreadable = None
                try:
                    images, labels = next(batches)
                except UnreadableImage as e:  # on this process only: the others must stop too
                    unreadable = e
                if distributed.any_rank(stop.is_set() or unreadable is not None, device):
                    if distributed.any_rank(unreadable is not None, device):
                        raise unreadable or UnreadableImage("an image could not be read on another process "
                                                            "(its log names the file)")
                    break
                # Rank 0 draws what a single process would; other ranks draw their own views.
                torch.manual_seed(step_seed(tc.seed, step) + ctx.rank * 1_000_000_007)
                with autocast:
                    out = step_fn(images, labels if method.uses_labels else None)
                loss = out["loss"]
                first_bad.masked_fill_((first_bad < 0) & ~torch.isfinite(loss.detach()), step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                method.after_step(step, total_steps)
                step += 1
                images_seen += batch_size
                bar.update(1)
                checkpoint_due = step % tc.checkpoint_every == 0 or step % steps_per_epoch == 0
                if step % check_every == 0 or checkpoint_due or step == total_steps:
                    check_finite()  # before anything is logged or saved (same steps on every rank)
                if not ctx.is_main:
                    continue
                record: dict[str, Any] = {}
                if step % tc.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    record = {"step": step, "epoch": step / steps_per_epoch,
                              "lr": optimizer.param_groups[0]["lr"],
                              **{k: float(v.detach()) for k, v in out.items()},
                              "images_per_s": images_seen / max(now - last_log, 1e-9)}
                    last_log, images_seen = now, 0
                    bar.set_postfix(loss=f"{record['loss']:.3f}")
                if step % steps_per_epoch == 0 and tc.knn_every and (step // steps_per_epoch) % tc.knn_every == 0:
                    if knn_skipped is not None:
                        if not knn_noted:  # said once, where the first check would have stood
                            record = {"step": step, "epoch": step / steps_per_epoch, **record,
                                      "knn_skipped": knn_skipped}
                            knn_noted = True
                    else:
                        try:
                            knn = knn_check(method, data, config, device)
                        except UnreadableImage:
                            if record:  # the step itself is done: keep its line
                                run.append_metrics(record)
                            raise
                        record = {"step": step, "epoch": step / steps_per_epoch, **record, "knn_top1": knn}
                        method.train()
                if record:
                    run.append_metrics(record)
                    for callback in callbacks:
                        callback(step, record)
                if checkpoint_due and time.monotonic() - last_save >= tc.checkpoint_min_seconds:
                    checkpoint()
                    last_save = time.monotonic()
        check_finite()
        if ctx.is_main:
            checkpoint()
        if step < total_steps:  # the loop ends early only when asked to stop
            set_status("interrupted", stage="train", step=step, total_steps=total_steps,
                       error=f"stopped at step {step} of {total_steps}; resume continues from there")
            raise TrainingInterrupted(run.id, f"run {run.id} stopped at step {step} of {total_steps}")
        if ctx.is_main and knn_skipped is not None:
            if not any("knn_skipped" in m for m in run.read_metrics()):
                run.append_metrics({"step": step, "epoch": step / max(1, steps_per_epoch),
                                    "knn_skipped": knn_skipped})
        elif ctx.is_main and not any("knn_top1" in m for m in run.read_metrics() if m.get("step") == step):
            run.append_metrics({"step": step, "epoch": step / max(1, steps_per_epoch),
                                "knn_top1": knn_check(method, data, config, device)})
    except TrainingFailed as e:
        set_status("failed", stage="train", step=step, total_steps=total_steps, error=str(e))
        raise
    except torch.cuda.OutOfMemoryError:
        message = (f"out of GPU memory at batch size {batch_size} ({method.name}, {config.backbone.name}, "
                   f"{config.data.resolution}px); try --batch-size {max(1, batch_size // 2)}")
        set_status("failed", stage="train", step=step, total_steps=total_steps, error=message)
        raise TrainingFailed(message) from None
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # a second signal: stop now, mid-step, without saving this state
        where = f"its checkpoint at step {saved_step[0]}" if saved_step[0] is not None else "the first step"
        set_status("interrupted", stage="train", step=step, total_steps=total_steps,
                   error=f"stopped at once at step {step} of {total_steps}; resume continues from {where}")
        raise TrainingInterrupted(run.id, f"run {run.id} stopped at once at step {step} of {total_steps}") from None
    except UnreadableImage as e:  # between steps: the state is whole, keep it (unless it holds a NaN)
        if ctx.is_main and int(first_bad) < 0:
            checkpoint()
        message = f"{e}; after restoring it, resume continues from the last checkpoint"
        set_status("failed", stage="train", step=step, total_steps=total_steps, error=message)
        raise TrainingFailed(message) from None
    except Exception as e:
        set_status("failed", stage="train", step=step, total_steps=total_steps,
                   error=f"{type(e).__name__}: {e}")
        raise
    finally:
        batches.close()  # stops decoding workers of a streamed folder
        bar.close()
    if then is None:
        set_status("finished", stage="train", step=step, total_steps=total_steps, data=data_note)
    else:
        set_status("running", stage=then, step=step, total_steps=total_steps, data=data_note)
    return run
