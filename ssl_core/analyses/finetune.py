"""Transfer as users do it ("finetune"): a linear classifier on the run's representation (what
`Method.encode` returns: the backbone's pooled features, a block of DDPM's UNet, I-JEPA's target
encoder), trained for one fixed budget in three ways.

    frozen      only the head learns; the encoder (BatchNorm statistics included) stays as trained
    last_block  the head and the encoder's last block learn
    full        every weight the representation is read from learns

What each mode unfreezes is the method's answer (`Method.finetune_modules`), so only weights the
method trained ever learn here (never, e.g., the convnet that DDPM is handed and does not use).

Each mode starts from the run's checkpoint (loaded afresh; the checkpoint file is never written),
sees the same images in the same order with the same light augmentation (a random resized crop
of 60-100% of the image, no flips: some shapes are chiral), for the same number of AdamW steps
with a linear warm-up and a cosine decay. The head is BatchNorm without affine parameters
followed by a linear layer, as MAE's linear probing, so one learning rate suits every backbone.
The backbone learns at a hundredth of the head's rate; a ViT's layers below its top at 0.75x per
layer (layer-wise decay, as MAE fine-tunes). Reported: top-1 on the test split and
seconds. A fixed budget of a few epochs is what a user affords, not convergence: the frozen mode
can score below eval.json's linear probe, which is fitted to convergence on un-augmented images.

On the demo runs (convnet, 4,000 train images at 32 px) the three modes at the defaults below
take 60 steps each. Measured on 2 CPU cores shared with other jobs: 94 s (demo-supervised-shapes)
to 162 s (demo-simclr-shapes: frozen 36 s, last block 48 s, full 79 s); there a frozen step cost
~0.35 s and a full one ~1.1 s, about twice what an idle machine takes (see backbones/convnet.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.analyses.stored import store_result
from ssl_core.store.runs import Run
from ssl_core.analyses.probes import cap_rows, layers_unavailable
from ssl_core.core.runtime import precision_context, resolve_device
from ssl_core.models import augment
from ssl_core.models.backbones import Backbone
from ssl_core.models.encoders import load_run_encoder
from ssl_core.steps.browsing import run_dataset
from ssl_core.training.batching import epoch_order
from ssl_core.training.optimizer import lr_factor

MODES = ("frozen", "last_block", "full")
Progress = Callable[[float, str], None] | None


@dataclasses.dataclass
class FinetuneSettings:
    epochs: int = 4  # passes over the train split, the same for every mode
    batch_size: int = 256
    # AdamW peak learning rate of the head. On demo-simclr-shapes (frozen, 60 steps) 3e-3 reached
    # top-1 0.28, 1e-2 0.29, 3e-2 0.32: the head sees few steps, so it needs a high rate.
    head_lr: float = 3e-2
    backbone_lr: float = 3e-4  # of the unfrozen backbone weights: low, so features adapt, not reset
    # Layer-wise rate decay (BEiT, Bao et al. 2022; MAE, He et al. 2022, appendix A.2: 0.75 for
    # ViT-B): a layer n below the top learns at backbone_lr * layer_decay ** n, so the layers
    # nearest the input change least. For backbones that group their parameters by depth
    # (`Backbone.layer_groups`: the ViTs); every other network learns at backbone_lr. 1 turns it off.
    layer_decay: float = 0.75
    weight_decay: float = 1e-4
    warmup_steps: int = 5
    crop_scale: tuple[float, float] = (0.6, 1.0)  # light augmentation: area share of the random crop
    eval_batch_size: int = 512
    # Larger splits are sampled (seeded) down to these: four epochs of a million images would be
    # a training run of its own, and a streamed folder's images are decoded into memory here.
    max_train_rows: int = 20_000
    max_test_rows: int = 10_000


def _unavailable(run: Run) -> str | None:
    return layers_unavailable(run)  # the same needs: an encoder with declared layers, and labels


def _head(dim: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, num_classes))


def _parameters(modules: list[nn.Module]) -> list[nn.Parameter]:
    """The modules' parameters, each once (a module may appear inside another)."""
    seen: dict[int, nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen.setdefault(id(p), p)
    return list(seen.values())


def encoder_groups(method, learning: list[nn.Parameter], settings: FinetuneSettings) -> list[dict[str, Any]]:
    """AdamW parameter groups of the learning encoder weights: one per depth of the
    representation module, at backbone_lr * layer_decay ** (layers below the top), where it
    groups its parameters by depth (`Backbone.layer_groups`); else one group at backbone_lr."""
    network = method.representation_module()
    depths = network.layer_groups() if isinstance(network, Backbone) else [learning]
    wanted, placed, groups = {id(p) for p in learning}, set(), []
    for below_top, params in enumerate(reversed(depths)):
        mine = [p for p in params if id(p) in wanted and id(p) not in placed]
        placed.update(id(p) for p in mine)
        if mine:
            groups.append({"params": mine, "lr": settings.backbone_lr * settings.layer_decay ** below_top})
    rest = [p for p in learning if id(p) not in placed]
    return groups + ([{"params": rest, "lr": settings.backbone_lr}] if rest else [])


def _set_mode(method, mode: str) -> list[nn.Parameter]:
    """Freeze the whole method in eval mode, then let learn (and put in train mode) what the
    method unfreezes for `mode`; returns the learning parameters."""
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode '{mode}'; known: {', '.join(MODES)}")
    unfrozen = method.finetune_modules(mode)
    method.requires_grad_(False)
    method.eval()
    for module in unfrozen:
        module.requires_grad_(True)
        module.train()
    return _parameters(unfrozen)


@torch.no_grad()
def accuracy(method, head: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, *,
             device: torch.device, batch_size: int = 512) -> float:
    """Top-1 of representation + head on labelled images (label < 0 is not scored), in eval mode."""
    method.eval()
    head.eval()
    known = labels >= 0
    images_u8, labels = images_u8[known], labels[known]
    correct = 0
    for start in range(0, len(images_u8), batch_size):
        x = method.normalize(augment.to_float(images_u8[start:start + batch_size].to(device)))
        logits = head(method.encode(x).float())
        correct += int((logits.argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return correct / max(len(images_u8), 1)


def finetune_mode(method, mode: str, train_images: torch.Tensor, train_labels: torch.Tensor,
                  test_images: torch.Tensor, test_labels: torch.Tensor, *, num_classes: int, seed: int = 0,
                  settings: FinetuneSettings | None = None, device: torch.device | str = "cpu",
                  progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Train a head on the method's representation (`encode`), changing the method in place as
    its `finetune_modules(mode)` allows, and return {"mode", "top1", "epochs", "steps",
    "seconds", "trainable_params", "backbone_change"} (the relative change of the weights that
    "full" would unfreeze)."""
    settings = settings or FinetuneSettings()
    device = resolve_device(str(device))
    if settings.epochs < 1 or settings.batch_size < 1:
        raise ValueError(f"fine-tuning needs epochs >= 1 and batch_size >= 1; got {settings.epochs}, "
                         f"{settings.batch_size}")
    if not 0 < settings.layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1]; got {settings.layer_decay}")
    known = train_labels >= 0
    train_images, train_labels = train_images[known], train_labels[known]
    if len(train_labels) == 0:
        raise ValueError("fine-tuning needs labelled train images")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    method.to(device)
    encoder_weights = _parameters(method.finetune_modules("full"))
    before = [p.detach().clone() for p in encoder_weights]
    head = _head(method.embedding_dim, num_classes).to(device)
    learning = _set_mode(method, mode)
    groups = [{"params": list(head.parameters()), "lr": settings.head_lr}, *encoder_groups(method, learning, settings)]
    optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    peak = [g["lr"] for g in optimizer.param_groups]
    images, labels = train_images.to(device), train_labels.to(device)
    batch = min(settings.batch_size, len(images))
    per_epoch = max(1, len(images) // batch)  # full batches only: BatchNorm wants no tiny last batch
    total = settings.epochs * per_epoch
    step = 0
    head.train()
    for epoch in range(settings.epochs):
        order = epoch_order(seed, epoch, len(images), device)
        for i in range(per_epoch):
            for group, lr in zip(optimizer.param_groups, peak):
                group["lr"] = lr * lr_factor(step, total, settings.warmup_steps)
            idx = order[i * batch:(i + 1) * batch]
            x = augment.random_resized_crop(augment.to_float(images[idx]), method.resolution,
                                            scale=tuple(settings.crop_scale))
            x = method.normalize(x)
            with precision_context(device):
                if learning:
                    features = method.encode(x)
                else:
                    with torch.no_grad():
                        features = method.encode(x)
                loss = F.cross_entropy(head(features.float()), labels[idx])
            if not math.isfinite(loss.item()):
                raise ValueError(f"fine-tuning ({mode}) diverged at step {step}: loss {loss.item()}; "
                                 "try a smaller head_lr or backbone_lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if progress is not None:
                progress(step / total)
    top1 = accuracy(method, head, test_images, test_labels, device=device, batch_size=settings.eval_batch_size)
    change = math.sqrt(sum(float((a.detach() - b).pow(2).sum()) for a, b in zip(encoder_weights, before)))
    norm = math.sqrt(sum(float(b.pow(2).sum()) for b in before))
    method.requires_grad_(False)
    return {"mode": mode, "top1": round(top1, 4), "epochs": settings.epochs, "steps": step,
            "seconds": round(time.perf_counter() - t0, 2), "trainable_params": int(sum(p.numel() for p in learning)),
            "backbone_change": round(change / max(norm, 1e-12), 6)}


def finetune_run(run: Run, *, device: str = "cpu", progress: Progress = None,
                 settings: FinetuneSettings | None = None, modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Fine-tune the run's encoder in each mode; writes analysis/finetune.json."""
    reason = _unavailable(run)
    if reason:
        raise ValueError(f"run {run.id}: no fine-tuning: {reason}")
    settings = settings or FinetuneSettings()
    report = progress or (lambda fraction, text: None)
    report(0.0, "loading the images")
    device_used = resolve_device(device)
    data = run_dataset(run)
    seed = run.config.train.seed
    train, test = data.train, data.test
    train = train.subset(cap_rows(train.labels.numpy(), settings.max_train_rows, seed))
    test = test.subset(cap_rows(test.labels.numpy(), settings.max_test_rows, seed))
    results, network = [], None
    for i, mode in enumerate(modes):
        report(i / len(modes), f"fine-tuning: {mode}")
        method = load_run_encoder(run, device_used)  # a fresh copy of the checkpoint's weights per mode
        network = type(method.representation_module()).__name__
        results.append(finetune_mode(
            method, mode, train.images, train.labels, test.images, test.labels, num_classes=data.num_classes,
            seed=seed, settings=settings, device=device_used,
            progress=lambda f, i=i, mode=mode: report((i + f) / len(modes), f"fine-tuning: {mode}")))
    summary = {"modes": results, "settings": {**dataclasses.asdict(settings), "seed": seed,
                                               "optimizer": "AdamW, linear warm-up then cosine decay",
                                               "head": "BatchNorm (no affine) + linear",
                                               "augmentation": "random resized crop, no flip",
                                               "device": str(device_used), "backbone": run.config.backbone.name,
                                               "network": network,
                                               "train_rows": int((train.labels >= 0).sum()),
                                               "test_rows": int((test.labels >= 0).sum())},
               "seconds": round(sum(r["seconds"] for r in results), 2)}
    store_result(run, "finetune", summary)
    report(1.0, "fine-tuning done")
    return summary


def chance_level(labels: np.ndarray) -> float:
    """The share of the most frequent known class: what always guessing it scores."""
    known = labels[labels >= 0]
    return float(np.bincount(known).max() / len(known)) if len(known) else 0.0
