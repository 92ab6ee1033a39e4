"""The optimiser every method trains with, AdamW, and its learning-rate schedule: a linear
warm-up, then a cosine decay (fine-tuning follows the same schedule)."""

from __future__ import annotations

import math

import torch

from ssl_core.models.methods import Method


def make_optimizer(method: Method, lr: float, weight_decay: float, device: torch.device):
    """AdamW; on a GPU its fused kernel (one launch for all parameters instead of several each).
    The first parameter group trains at `lr`; each prefix of `method.lr_scales()` gets a group of
    its own at its multiple of `lr` (the schedule scales every group alike)."""
    scales = method.lr_scales()
    groups: dict[float, list[torch.nn.Parameter]] = {1.0: []}
    for name, parameter in method.named_parameters():
        scale = next((s for prefix, s in scales.items() if name.startswith(prefix + ".")), 1.0)
        groups.setdefault(scale, []).append(parameter)
    unknown = [p for p in scales if not any(n.startswith(p + ".") for n, _ in method.named_parameters())]
    if unknown:
        raise ValueError(f"{method.name}: lr_scales names no parameters of the method: {unknown}")
    return torch.optim.AdamW([{"params": params, "lr": lr * scale} for scale, params in groups.items() if params],
                             lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
