"""The slowly moving (EMA) target networks of BYOL, MoCo, DINO and I-JEPA: one update rule and
one momentum schedule for all of them, and a base momentum scaled by the run's length."""

from __future__ import annotations

import copy
import functools
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


def share_left(base: float, total_steps: int, steps: int) -> float:
    """The share of the initial target still in it after `steps` steps of the cosine schedule from
    `base` to 1 over `total_steps`: the product of those steps' momenta."""
    return math.prod(cosine_momentum(k, total_steps, base) for k in range(steps))


@functools.lru_cache(maxsize=64)
def base_for_share(total_steps: int, share: float, at_fraction: float = 0.5, most: float = 1.0) -> float:
    """The base momentum whose cosine schedule to 1 over `total_steps` leaves `share` of the initial
    (random) target after `at_fraction` of the run, capped at `most` (a paper's base for long runs).

    A fixed base forgets in steps, not in fractions of the run: 0.996 leaves 78% of the initial
    target after the first half of a 150-step run, and under 1% after the first of 100 ImageNet
    epochs (1,251 steps). This base leaves the same share at the same fraction of every run, until
    the cap takes over (most 0.996: from ~1,450 steps with share 0.1, ~2,850 with share 0.01).
    """
    if not 0 < share < 1 or not 0 < at_fraction <= 1:
        raise ValueError(f"share must be in (0, 1) and at_fraction in (0, 1]; got {share} and {at_fraction}")
    steps = max(1, round(at_fraction * total_steps))
    low, high = 0.0, 1.0  # share_left rises with the base: bisect
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if share_left(mid, total_steps, steps) < share else (low, mid)
    return min(low, most)


def run_momentum(step: int, total_steps: int, base: float, share: float | None) -> float:
    """The target's momentum at `step`: the cosine from a base to 1, the base chosen by
    `base_for_share` to leave `share` of the initial target halfway through the run (at most
    `base`), or `base` itself when share is None (the fixed base of the papers)."""
    if share is not None and total_steps > 0:
        base = base_for_share(total_steps, share, 0.5, base)
    return cosine_momentum(step, total_steps, base)
