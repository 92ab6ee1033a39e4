"""checkpoint.pt: what training saves and everything else loads, in one place.

A checkpoint is data, never code: it is loaded with `weights_only=True`, even when someone else
made the run folder, and a file that cannot be read or does not fit the run is CorruptCheckpoint
with what to do, never torch's advice to load it with `weights_only=False`.

A finished run can be slimmed to an encoder checkpoint (`encoder_checkpoint`): the weights its
embeddings come from and nothing else, no heads, decoders, teachers or optimizer state. It embeds,
probes, fine-tunes and draws attention as the full one does; it cannot resume training. The
bundled runs ship so (a DINO ViT's heads are 47 MB; its encoder 1.8 MB).
"""

from __future__ import annotations

import io
from typing import Any

import torch

from ssl_core.models.methods import Method, build_method
from ssl_core.store.atomic import atomic_write_bytes
from ssl_core.store.runs import Run


class CorruptCheckpoint(ValueError):
    """checkpoint.pt cannot be used: truncated, garbage, empty, or not this run's state. Training
    keeps the last good one (writes are atomic), so this means a copy or a disk went wrong."""


def corrupt_checkpoint(run: Run, why: str) -> CorruptCheckpoint:
    return CorruptCheckpoint(f"run {run.id}: checkpoint.pt is corrupt or incomplete ({why}); retrain, or "
                             "restore an earlier copy")


# What every checkpoint holds (see save_checkpoint); resuming needs all of them.
CHECKPOINT_KEYS = ("method", "optimizer", "scheduler", "step", "total_steps", "num_classes", "rng_cpu", "rng_cuda")


def load_checkpoint(run: Run, map_location: str | torch.device = "cpu",
                    keys: tuple[str, ...] = CHECKPOINT_KEYS) -> dict[str, Any]:
    """checkpoint.pt as saved; CorruptCheckpoint when it cannot be read or lacks one of `keys`.
    An OSError (no permission, say) is not corruption and passes through."""
    path = run.checkpoint_path
    if not path.exists():
        raise FileNotFoundError(f"run {run.id} has no checkpoint.pt yet (training never reached one)")
    try:
        # weights_only: a checkpoint is data, never code, even when someone else made the run folder.
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  torch raises EOFError, RuntimeError, UnpicklingError, KeyError ...
        raise corrupt_checkpoint(run, _unreadable(path, e)) from None
    missing = [key for key in keys if key not in state] if isinstance(state, dict) else None
    if missing and state.get("encoder_only"):
        raise CorruptCheckpoint(f"run {run.id}: checkpoint.pt holds only the encoder's weights (a bundled run): "
                                "it embeds and analyses, but training cannot resume from it")
    if missing is None or missing:
        what = f"no {', '.join(missing)}" if missing else f"a {type(state).__name__}, not a dict"
        raise corrupt_checkpoint(run, f"it holds {what}")
    return state


def _unreadable(path, error: Exception) -> str:
    """Why torch.load failed, in a few words; torch's own advice to pass weights_only=False
    (running whatever code the file holds) is left out."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    first = str(error).split(". ")[0].strip()
    told = "" if not first or "weights" in first.lower() else f": {first}"
    return f"torch.load cannot read its {size:,} bytes, {type(error).__name__}{told}"


def load_state(run: Run, target: Any, state: Any, strict: bool = True) -> None:
    """`target.load_state_dict(state)` (a method, optimizer or scheduler; a method's encoder alone
    when not `strict`); CorruptCheckpoint when the saved state does not fit it (a config.json
    edited since, or another run's checkpoint)."""
    try:
        target.load_state_dict(state) if strict else target.load_state_dict(state, strict=False)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as e:
        lines = [line.strip() for line in str(e).strip().splitlines()]
        detail = " ".join(lines[1:3] or lines)
        detail = detail if len(detail) <= 240 else detail[:240].rsplit(" ", 1)[0] + " ..."
        raise corrupt_checkpoint(run, f"its {type(target).__name__} state does not fit this run: {detail}") from None


def encoder_state(method: Method) -> dict[str, torch.Tensor]:
    """The entries of `method.state_dict()` that its embedding is computed from: those of the
    modules `encode` reads (`Method.representation_module`, and what full fine-tuning unfreezes,
    e.g. a VAE's posterior mean) and the method's own (normalisation statistics and other
    top-level buffers)."""
    networks = [method.representation_module(), *([] if method.no_layers else method.finetune_modules("full"))]
    names = {name for name, module in method.named_modules() if any(module is n for n in networks)}
    inside = tuple(f"{name}." for name in names)
    return {key: value for key, value in method.state_dict().items() if key.startswith(inside) or "." not in key}


def encoder_checkpoint(method: Method, state: dict[str, Any]) -> dict[str, Any]:
    """A finished run's checkpoint `state` slimmed to `method`'s encoder (`encoder_state`), with
    its step count: what `load_method` needs, marked so that nothing tries to resume from it."""
    return {"method": encoder_state(method), "encoder_only": True, "num_classes": state["num_classes"],
            "step": state["step"], "total_steps": state["total_steps"]}


def load_method(run: Run, device: torch.device | str = "cpu") -> Method:
    """The run's trained method (encoder included), rebuilt from config.json and the checkpoint.
    From an encoder checkpoint, the parts it does not hold keep their seeded initialisation: only
    what `encode` reads is trained."""
    config = run.config
    state = load_checkpoint(run, device, keys=("method", "num_classes"))
    method = build_method(config.method, config.backbone.name, resolution=config.data.resolution,
                          num_classes=state["num_classes"], stored=True)
    if state.get("encoder_only"):
        expected = set(encoder_state(method))
        if set(state["method"]) != expected:
            odd = sorted(set(state["method"]) ^ expected)
            raise corrupt_checkpoint(run, f"its encoder weights do not fit this run: {', '.join(odd[:4])}")
    load_state(run, method, state["method"], strict=not state.get("encoder_only"))
    return method.to(device).eval()


def save_checkpoint(run: Run, method: Method, optimizer, scheduler, step: int, total_steps: int,
                    num_classes: int, data_digest: str | None = None) -> None:
    state = {
        "data_digest": data_digest,  # which train images, in which order (see train_digest)
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,  # steps completed
        "total_steps": total_steps,
        "num_classes": num_classes,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(run.checkpoint_path, buffer.getvalue())
