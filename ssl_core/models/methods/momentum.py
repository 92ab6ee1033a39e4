"""The slowly moving (EMA) target networks of BYOL, MoCo, DINO and I-JEPA: one update rule and
one momentum schedule for all of them."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy that gets no gradient: the optimizer skips it, only `ema_update` moves it."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- momentum * target + (1 - momentum) * online, parameter by parameter.

    Buffers (BatchNorm running statistics) are left alone: the target, run in train mode, keeps
    its own, as in BYOL's and MoCo's code.
    """
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1]; got {momentum}")
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1 - momentum)


def cosine_momentum(step: int, total_steps: int, base: float, end: float = 1.0) -> float:
    """BYOL's schedule (sec. 3.2): end - (end - base) (cos(pi k / K) + 1) / 2, base at k=0, end at k=K."""
    if total_steps <= 0:
        return base
    progress = min(max(step / total_steps, 0.0), 1.0)
    return end - (end - base) * (math.cos(math.pi * progress) + 1) / 2
