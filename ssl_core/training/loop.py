"""The training loop: one function for every method.

Data lives on the run's device as uint8 for the whole run (in pinned host memory when the GPU
lacks room; a folder streamed from its files is decoded batch by batch in DataLoader workers);
each step takes a shuffled batch, the method makes its own augmented views on the device, and
AdamW follows a linear warm-up and a cosine decay. Every random draw of step `s` comes from a generator seeded by (seed, s), so a run
resumed from a checkpoint takes exactly the steps the uninterrupted run would have taken
(batching.py).

Started by torchrun, the same loop trains data-parallel (see distributed.py): each process takes
a slice of every global batch and rank 0 alone writes the run folder.

Failure handling, because runs are long and users are not watching (`_failures`, signals.py):
  * SIGINT / SIGTERM: finish the current step, write a checkpoint, status `interrupted`.
  * NaN or infinite loss: status `failed`, error names the step; the last checkpoint is kept.
  * CUDA out of memory: status `failed`, error names the batch size and suggests a smaller one.
  * An image that cannot be read: status `failed`, error names the file; the state is kept.
The kNN check on the way (and its reason when a dataset has no labels) is knn.py.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import closing, contextmanager
from typing import Any, Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from ssl_core.core.config import RunConfig
from ssl_core.core.runtime import precision_context, resolve_device
from ssl_core.data import ImageSet, load_dataset
from ssl_core.data.files import UnreadableImage
from ssl_core.models.checkpoint import CorruptCheckpoint, load_checkpoint, load_state, save_checkpoint
from ssl_core.models.methods import METHODS, Method, build_method
from ssl_core.steps.map_snapshots import drop_snapshots_after
from ssl_core.store.runs import Run
from ssl_core.training import distributed
from ssl_core.training.batching import (StreamedTrainImages, batch_plan, channel_stats, step_seed, train_digest,
                                        train_images)
from ssl_core.training.knn import KnnCheck
from ssl_core.training.optimizer import lr_factor, make_optimizer
from ssl_core.training.signals import interrupt_on_signals, stop_on_signals

StepCallback = Callable[[int, dict[str, Any]], None]


class TrainingFailed(RuntimeError):
    """Training stopped on an error that the run's status.json now explains."""


class TrainingInterrupted(RuntimeError):
    """Training stopped on request (signal or stop event); a checkpoint was written."""

    def __init__(self, run_id: str, message: str):
        super().__init__(message)
        self.run_id = run_id


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
    status = _Status(run, ctx, resume)

    status.set("running", stage="load")
    resuming = resume and run.checkpoint_path.exists()
    data, method = _load(run, config, ctx, device, status, stored=resuming)
    if not resuming and ctx.is_main:
        run.store_method_settings(method.settings())
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
        start = _resume(run, config, method, optimizer, scheduler, data_digest, n, device, status)
    knn = KnnCheck(run, config, data, device, ctx.is_main, steps_per_epoch)
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last)
    step_fn = _step_module(method, ctx, device, tc.compile)
    autocast = precision_context(device)

    data_note = "streamed from files" if isinstance(train_data, StreamedTrainImages) else "in memory"
    training = dict(stage="train", total_steps=total_steps, device=str(device), data=data_note,
                    **({"processes": ctx.world_size} if ctx.active else {}))
    status.set("running", **training)
    bar = tqdm(total=total_steps, initial=start, disable=not (progress and ctx.is_main), unit="step",
               desc=f"{method.name} {config.data.dataset}", dynamic_ncols=True)
    step, throughput = start, _Throughput()
    batches = train_data.batches(batch_plan(tc.seed, n, batch_size, steps_per_epoch, start, total_steps,
                                            ctx.rank * local_batch, local_batch, train_data.home))
    finite = _FiniteLoss(device, steps_per_epoch, tc.lr)
    check_every = 1 if device.type == "cpu" else tc.log_every  # a GPU run reads `finite` less often
    last_save = -math.inf

    def checkpoint() -> None:
        save_checkpoint(run, method, optimizer, scheduler, step, total_steps, data.num_classes, data_digest)
        status.saved_step = step
        status.set("running", **training)

    failures = _failures(status, lambda: step, total_steps, finite, checkpoint,
                         oom=_out_of_memory(batch_size, method, config))
    # Closing `batches` stops the decoding workers of a streamed folder.
    with closing(bar), closing(batches), failures:
        with stop_on_signals(stop):
            method.train()
            while step < total_steps:
                batch = _next_batch(batches, stop, device)
                if batch is None:  # asked to stop, on this process or another
                    break
                images, labels = batch
                # Rank 0 draws what a single process would; other ranks draw their own views.
                torch.manual_seed(step_seed(tc.seed, step) + ctx.rank * 1_000_000_007)
                with autocast:
                    out = step_fn(images, labels if method.uses_labels else None)
                loss = out["loss"]
                finite.note(loss, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                method.after_step(step, total_steps, steps_per_epoch=steps_per_epoch)
                step += 1
                throughput.add(batch_size)
                bar.update(1)
                checkpoint_due = step % tc.checkpoint_every == 0 or step % steps_per_epoch == 0
                if step % check_every == 0 or checkpoint_due or step == total_steps:
                    finite.check()  # before anything is logged or saved (same steps on every rank)
                if not ctx.is_main:
                    continue
                record: dict[str, Any] = {}
                if step % tc.log_every == 0 or step == total_steps:
                    record = _log_record(step, steps_per_epoch, optimizer, out, throughput.per_second())
                    bar.set_postfix(loss=f"{record['loss']:.3f}")
                record = knn.at_epoch_end(step, method, record)
                if record:
                    run.append_metrics(record)
                    for callback in callbacks:
                        callback(step, record)
                if checkpoint_due and time.monotonic() - last_save >= tc.checkpoint_min_seconds:
                    checkpoint()
                    last_save = time.monotonic()
        finite.check()
        if ctx.is_main:
            checkpoint()
        if step < total_steps:  # the loop ends early only when asked to stop
            status.set("interrupted", stage="train", step=step, total_steps=total_steps,
                       error=f"stopped at step {step} of {total_steps}; resume continues from there")
            raise TrainingInterrupted(run.id, f"run {run.id} stopped at step {step} of {total_steps}")
        if ctx.is_main:
            knn.at_end(step, method)
    if then is None:
        status.set("finished", stage="train", step=step, total_steps=total_steps, data=data_note)
    else:
        status.set("running", stage=then, step=step, total_steps=total_steps, data=data_note)
    return run


class _Status:
    """The run's status.json as training writes it: by rank 0 alone, with the step of the newest
    checkpoint once there is one."""

    def __init__(self, run: Run, ctx: distributed.Context, resume: bool):
        self.run, self.ctx = run, ctx
        self.saved_step: int | None = None  # the step of the newest checkpoint, once there is one
        # The status before a resume: a run that had finished stays finished if resuming it fails.
        try:
            self.before = run.read_status() if resume and ctx.is_main else None
        except (OSError, ValueError):  # unreadable: training writes a fresh one
            self.before = None

    def set(self, *args, **kwargs) -> None:
        if self.ctx.is_main:
            # Where a resume would continue: after a kill -9 the list shows this, not the last
            # step logged, which may be up to checkpoint_min_seconds of steps later.
            if self.saved_step is not None:
                kwargs.setdefault("checkpoint_step", self.saved_step)
            self.run.set_status(*args, **kwargs)

    def fail(self, stage: str, error: str) -> None:
        if self.ctx.is_main:
            self.run.set_failed(self.before, error, stage=stage)


def _load(run: Run, config: RunConfig, ctx: distributed.Context, device: torch.device,
          status: _Status, *, stored: bool) -> tuple[ImageSet, Method]:
    """The run's data and its method, built fresh, once the request is checked against the data.
    Nothing is trained yet, so nothing can be lost: a signal while loading stops at once."""
    tc = config.train
    try:
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
            method = build_for_run(config, data, device, stored=stored)
    except KeyboardInterrupt:
        where = "its last checkpoint" if run.checkpoint_path.exists() else "the first step"
        status.set("interrupted", stage="load", error=f"stopped while loading, before any step; resume starts "
                                                      f"from {where}")
        raise TrainingInterrupted(run.id, f"run {run.id} stopped while loading its data") from None
    except Exception as e:
        status.fail("load", f"{type(e).__name__}: {e}")
        raise
    return data, method


def _resume(run: Run, config: RunConfig, method: Method, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, data_digest: str, n: int,
            device: torch.device, status: _Status) -> int:
    """The step the checkpoint reached, its state loaded into `method`, `optimizer`, `scheduler`
    and the random generators; metrics logged past it (work since lost) are dropped."""
    try:
        state = load_checkpoint(run, device)
        load_state(run, method, state["method"])
        load_state(run, optimizer, state["optimizer"])
        load_state(run, scheduler, state["scheduler"])
    except CorruptCheckpoint as e:
        status.fail("load", str(e))
        raise
    saved_digest = state.get("data_digest")
    if saved_digest is not None and saved_digest != data_digest:
        message = (f"the train images differ from those of the checkpoint ({n} now): the dataset "
                   f"'{config.data.dataset}' changed since, so resuming would train on other images; "
                   "restore it as it was, or start a new run")
        status.fail("load", message)
        raise TrainingFailed(message)
    start = int(state["step"])
    status.saved_step = start
    # Each step reseeds from (seed, step); restoring the generators keeps anything drawn
    # outside a step (a method's own schedule, say) on the same sequence too.
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and device.type == "cuda":
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    if status.ctx.is_main:
        run.truncate_metrics(after_step=start)
        drop_snapshots_after(run, start)  # the map snapshots too: the steps after are taken again
    return start


def _step_module(method: Method, ctx: distributed.Context, device: torch.device, compile: bool) -> nn.Module:
    """What each step calls: the method's training step, under torchrun wrapped for
    DistributedDataParallel (when it has anything to train), compiled when the config asks."""
    step_module: nn.Module = TrainingStep(method)
    if ctx.active and method.trainable:
        step_module = torch.nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None)
    return torch.compile(step_module) if compile else step_module


def _next_batch(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], stop: threading.Event,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The next (images, labels), or None when any process was asked to stop; an image that one
    process cannot read stops them all with UnreadableImage."""
    batch, unreadable = None, None
    try:
        batch = next(batches)
    except UnreadableImage as e:  # on this process only: the others must stop too
        unreadable = e
    if distributed.any_rank(stop.is_set() or unreadable is not None, device):
        if distributed.any_rank(unreadable is not None, device):
            raise unreadable or UnreadableImage("an image could not be read on another process "
                                                "(its log names the file)")
        return None
    return batch


class _FiniteLoss:
    """The first step whose loss was not finite (-1: none), kept on the device: reading it back
    every step would make the CPU wait for the GPU and leave the GPU idle while the next step
    launches. A GPU run reads it at each log step and before every checkpoint."""

    def __init__(self, device: torch.device, steps_per_epoch: int, lr: float):
        self.device, self.steps_per_epoch, self.lr = device, steps_per_epoch, lr
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def note(self, loss: torch.Tensor, step: int) -> None:
        self.first_bad.masked_fill_((self.first_bad < 0) & ~torch.isfinite(loss.detach()), step)

    def seen(self) -> bool:
        return int(self.first_bad) >= 0

    def check(self) -> None:
        """TrainingFailed on every process when the loss of any was not finite."""
        bad = int(self.first_bad)
        if distributed.any_rank(bad >= 0, self.device):
            where = f"at step {bad} (epoch {bad // self.steps_per_epoch})" if bad >= 0 else "on another process"
            raise TrainingFailed(f"loss became NaN or infinite {where}; start a new run with a learning rate "
                                 f"below this one's {self.lr:g} (--lr)")


class _Throughput:
    """Images per second since the last logged step."""

    def __init__(self):
        self.images, self.since = 0, time.perf_counter()

    def add(self, images: int) -> None:
        self.images += images

    def per_second(self) -> float:
        now = time.perf_counter()
        rate = self.images / max(now - self.since, 1e-9)
        self.images, self.since = 0, now
        return rate


def _log_record(step: int, steps_per_epoch: int, optimizer: torch.optim.Optimizer,
                out: dict[str, torch.Tensor], images_per_s: float) -> dict[str, Any]:
    """A logged step's line of metrics.jsonl: where it is, the learning rate, the method's outputs."""
    return {"step": step, "epoch": step / steps_per_epoch, "lr": optimizer.param_groups[0]["lr"],
            **{k: float(v.detach()) for k, v in out.items()}, "images_per_s": images_per_s}


def _out_of_memory(batch_size: int, method: Method, config: RunConfig) -> str:
    return (f"out of GPU memory at batch size {batch_size} ({method.name}, {config.backbone.name}, "
            f"{config.data.resolution}px); try --batch-size {max(1, batch_size // 2)}")


@contextmanager
def _failures(status: _Status, at_step: Callable[[], int], total_steps: int, finite: _FiniteLoss,
              checkpoint: Callable[[], None], oom: str) -> Iterator[None]:
    """Every way the training stage can end early, said in status.json at the step it ended
    (`at_step()`); `oom` is the message for CUDA running out of memory."""
    def failed(error: str) -> None:
        status.set("failed", stage="train", step=at_step(), total_steps=total_steps, error=error)

    try:
        yield
    except TrainingFailed as e:
        failed(str(e))
        raise
    except torch.cuda.OutOfMemoryError:
        failed(oom)
        raise TrainingFailed(oom) from None
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # a second signal: stop now, mid-step, without saving this state
        step, run = at_step(), status.run
        where = f"its checkpoint at step {status.saved_step}" if status.saved_step is not None else "the first step"
        status.set("interrupted", stage="train", step=step, total_steps=total_steps,
                   error=f"stopped at once at step {step} of {total_steps}; resume continues from {where}")
        raise TrainingInterrupted(run.id, f"run {run.id} stopped at once at step {step} of {total_steps}") from None
    except UnreadableImage as e:  # between steps: the state is whole, keep it (unless it holds a NaN)
        if status.ctx.is_main and not finite.seen():
            checkpoint()
        message = f"{e}; after restoring it, resume continues from the last checkpoint"
        failed(message)
        raise TrainingFailed(message) from None
    except Exception as e:
        failed(f"{type(e).__name__}: {e}")
        raise


class TrainingStep(nn.Module):
    """`method.training_step` as a module's forward, which is what DistributedDataParallel wraps."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, images_u8: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return self.method.training_step(images_u8, labels)


def build_for_run(config: RunConfig, data: ImageSet, device: torch.device, *, stored: bool = False) -> Method:
    """The run's method, initialised from the run seed, with the train split's statistics;
    `stored`: its settings are those of a run that has trained (see `method_config`)."""
    mean, std = channel_stats(data.train.images)
    torch.manual_seed(config.train.seed)
    method = build_method(config.method, config.backbone.name, resolution=config.data.resolution,
                          num_classes=data.num_classes, mean=mean, std=std, stored=stored,
                          mirror_safe=data.mirror_safe)
    return method.to(device)
