"""A run from an encoder of one's own (`ssl-explorer encode`, the Import page): a torchvision or
timm architecture with local weights, or a TorchScript file, over a dataset; embedded, scored,
mapped and indexed like a trained run, and shown only once complete."""

from __future__ import annotations

from typing import Any

from ssl_core.core.config import BackboneConfig, RunConfig, TrainConfig
from ssl_core.core.runtime import versions
from ssl_core.models.encoders import build_encoder
from ssl_core.store.runs import set_display_name
from ssl_core.workflows.pipeline import POST_STEPS, run_post_steps


def encode_dataset(store, data, spec: dict[str, Any], *, name: str | None = None, device: str = "auto",
                   progress=None, log=print):
    """A run of `spec`'s encoder over the dataset `data` (a DataConfig): embed, score, map, index.
    The encoder is built (and so checked) before any folder exists, and the run appears in the
    store only when complete."""
    report = progress or (lambda fraction, text: None)
    report(0.0, "loading the encoder")
    build_encoder(spec, data.resolution)
    config = RunConfig(data=data, backbone=BackboneConfig(name=spec.get("architecture") or "torchscript"),
                       method=spec, train=TrainConfig(epochs=0, device=device))
    reached = {"embed": 0.6, "eval": 0.7, "project": 0.95, "index": 1.0}

    def step_done(message: str) -> None:
        report(reached.get(message.split(":", 1)[0], 0.5), message[:120])
        log(message)

    with store.create_atomically(config, extra={"versions": versions()}) as run:
        report(0.05, "embedding the images")
        run_post_steps(run, POST_STEPS, device=device, progress=progress is None, log=step_done)
        if name:
            set_display_name(run, name)
    return store.get(run.id)
