"""Every registered method, on every backbone it declares: builds, steps, learns a little, embeds.

New methods are covered here by registering; nobody has to remember to add a test.
"""

from __future__ import annotations

import pytest
import torch

from ssl_core.models.methods import METHODS, build_method, check_compatible

RESOLUTION = 32
NUM_CLASSES = 4
CASES = [(m, b) for m in METHODS.names() for b in METHODS.get(m).backbones]


def _batch(n: int = 16):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, RESOLUTION, RESOLUTION, 3), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % NUM_CLASSES
    return images, labels


def _build(method: str, backbone: str):
    torch.manual_seed(0)
    return build_method({"name": method}, backbone, resolution=RESOLUTION, num_classes=NUM_CLASSES)


@pytest.mark.parametrize("method,backbone", CASES)
def test_builds_steps_and_embeds(method, backbone):
    model = _build(method, backbone)
    images, labels = _batch(8)
    embeddings = model.embed(images)
    assert embeddings.shape == (8, model.embedding_dim)
    assert torch.isfinite(embeddings).all()
    if not model.trainable:
        return
    out = model.training_step(images, labels if model.uses_labels else None)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"]), out
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the parameters"


@pytest.mark.parametrize("method", [m for m in METHODS.names() if METHODS.get(m).trainable])
def test_loss_decreases_on_a_fixed_batch(method):
    """A few optimizer steps on one batch, with the same views each step, lower the loss."""
    model = _build(method, "convnet" if "convnet" in METHODS.get(method).backbones else METHODS.get(method).backbones[0])
    images, labels = _batch(32)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        torch.manual_seed(123)  # identical augmentation draws every step
        loss = model.training_step(images, labels if model.uses_labels else None)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_step(len(losses), 8)
        losses.append(loss.item())
    assert losses[-1] < losses[0], f"{method}: loss did not decrease: {losses}"


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError) as info:
        METHODS.get("simclrr")
    message = str(info.value)
    assert "unknown method 'simclrr'" in message
    for name in ("simclr", "supervised", "random"):
        assert name in message


def test_unknown_method_setting_names_the_valid_settings():
    with pytest.raises(ValueError, match="temperature"):
        build_method({"name": "simclr", "temprature": 0.1}, "convnet", resolution=32, num_classes=2)


def test_unsupported_backbone_is_refused_with_the_supported_ones(monkeypatch):
    monkeypatch.setattr(METHODS.get("simclr"), "backbones", ("vit_tiny",))
    with pytest.raises(ValueError, match="supports: vit_tiny"):
        check_compatible("simclr", "convnet")
