"""Where and how a run computes: its device, its numeric precision, and the library versions
recorded with it. Used by training, the steps after it, analyses and the CLI alike."""

from __future__ import annotations

import os
import platform
from contextlib import nullcontext

import numpy as np
import torch


def resolve_device(name: str) -> torch.device:
    """`auto` is the GPU when there is one; under torchrun each process takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' was asked for but no CUDA GPU is available here; use 'cpu' (or 'auto')")
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def precision_context(device: torch.device):
    """bf16 autocast on GPUs (no loss scaling needed, unlike fp16); full precision on CPUs."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def versions() -> dict[str, str]:
    import sklearn  # heavy (~0.5 s): scikit-learn is imported only when this runs

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__}
