"""The optimiser every method trains with, AdamW, and its learning-rate schedule: a linear
warm-up, then a cosine decay (fine-tuning follows the same schedule)."""

from __future__ import annotations

import math

import torch

from ssl_core.models.methods import Method


def make_optimizer(method: Method, lr: float, weight_decay: float, device: torch.device):
    """AdamW; on a GPU its fused kernel (one launch for all parameters instead of several each)."""
    return torch.optim.AdamW(method.parameters(), lr=lr, weight_decay=weight_decay,
                             fused=device.type == "cuda")


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ~0 to 1 over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
