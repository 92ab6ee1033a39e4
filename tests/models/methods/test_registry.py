"""Every registered method, on every backbone it declares: builds, steps, learns a little, embeds;
its layer-wise probe ends at its embedding, and fine-tuning moves only weights it trained.

New methods are covered here by registering; nobody has to remember to add a test.
"""

from __future__ import annotations

import pytest
import torch

from ssl_core.analyses.finetune import FinetuneSettings, finetune_mode
from ssl_core.analyses.probes import layer_features
from ssl_core.models.checkpoint import encoder_state
from ssl_core.models import augment
from ssl_core.models.methods import METHODS, build_method, check_compatible

RESOLUTION = 32
NUM_CLASSES = 4
CASES = [(m, b) for m in METHODS.names() for b in METHODS.get(m).backbones]
# One small backbone of each family: resnet18 and vit_tiny declare their layers as convnet and
# vit_mini do (tests/analyses/test_probes.py checks every backbone's), at several times the cost.
SMALL = ("convnet", "vit_mini")
SMALL_CASES = [(m, b) for m, b in CASES if b in SMALL]


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
    """A few optimizer steps on one batch, with the same views each step, lower the loss (on the
    method's smallest backbone: vit_mini steps ~10x cheaper than vit_tiny)."""
    backbones = METHODS.get(method).backbones
    model = _build(method, next((b for b in SMALL if b in backbones), backbones[0]))
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


@pytest.mark.parametrize("method,backbone", SMALL_CASES)
def test_the_deepest_probe_layer_is_the_embedding(method, backbone):
    """The layer-wise probe reads the network the method embeds with (DDPM: its UNet; I-JEPA: its
    target encoder), pooled as the embedding is: its deepest layer is `embed`'s output."""
    model = _build(method, backbone).eval()
    images, _ = _batch(4)
    if model.no_layers:
        with pytest.raises(ValueError, match="no layers"):
            layer_features(model, images)
        return
    layers = layer_features(model, images, batch_size=2)
    assert len(layers) >= 2 and all(f.shape[0] == 4 for f in layers.values())
    torch.testing.assert_close(torch.from_numpy(list(layers.values())[-1]), model.embed(images), atol=1e-5, rtol=1e-4)
    assert model.layer_pooling


def _first_backbone(method: str) -> str:
    backbones = METHODS.get(method).backbones
    return next((b for b in ("convnet", "vit_mini") if b in backbones), backbones[0])


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    return {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}


def _trained_entries(method: str) -> set[str]:
    """The weights and statistics one training step and its after_step change: what the method trains."""
    model = _build(method, _first_backbone(method)).train()
    images, labels = _batch(16)
    before = _state(model)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.training_step(images, labels if model.uses_labels else None)["loss"].backward()
    optimizer.step()
    model.after_step(0, 100)  # early in training: momentum encoders move
    return _changed(before, model)


def _embedding_parameters(method: str) -> set[str]:
    """The parameters the embedding is computed from (those its output has a gradient for)."""
    model = _build(method, _first_backbone(method)).eval().requires_grad_(True)
    images, _ = _batch(4)
    out = model.encode(model.normalize(augment.to_float(images)))
    # A random projection: a plain sum of a LayerNorm's output would not depend on the weights before it.
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    return {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


@pytest.mark.parametrize("method", METHODS.names())
def test_fine_tuning_changes_only_weights_the_method_trained(method):
    """Full fine-tuning moves exactly the weights the embedding is computed from, and among all
    the weights and statistics only ones the method's training moves (never, e.g., the convnet
    that DDPM is handed and never uses); the last block is a part of that."""
    images, labels = _batch(24)
    settings = FinetuneSettings(epochs=1, batch_size=8, warmup_steps=1)

    def finetune(mode: str) -> tuple[set[str], set[str]]:
        model = _build(method, _first_backbone(method))
        before, params = _state(model), {name for name, _ in model.named_parameters()}
        finetune_mode(model, mode, images[:16], labels[:16], images[16:], labels[16:], num_classes=NUM_CLASSES,
                      settings=settings)
        changed = _changed(before, model)
        return changed, changed & params

    if METHODS.get(method).no_layers:
        with pytest.raises(ValueError, match="no layers"):
            finetune("full")
        return
    changed, changed_params = finetune("full")
    assert changed_params == _embedding_parameters(method), method
    if METHODS.get(method).trainable:
        assert changed <= _trained_entries(method), sorted(changed - _trained_entries(method))
    if method == "ddpm":
        assert not any(name.startswith("backbone.") for name in changed)
    last_changed, last_params = finetune("last_block")
    assert last_params and last_params < changed_params, sorted(last_params)
    assert last_changed <= changed


@pytest.mark.parametrize("method", METHODS.names())
def test_an_encoder_checkpoint_embeds_probes_and_fine_tunes_as_the_whole_method(method):
    """`encoder_state` holds every weight the embedding is computed from: another initialisation
    given only those embeds the same images identically, its probe layers and fine-tuned
    weights are those of the trained method, and it holds none of the heads (a smaller state)."""
    backbone = _first_backbone(method)
    trained = _build(method, backbone).train()
    images, labels = _batch(16)
    if trained.trainable:  # one step, so that the weights differ from any initialisation
        optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=0.1)
        trained.training_step(images, labels if trained.uses_labels else None)["loss"].backward()
        optimizer.step()
        trained.after_step(0, 100)
    state = encoder_state(trained)
    torch.manual_seed(1)
    fresh = build_method({"name": method}, backbone, resolution=RESOLUTION, num_classes=NUM_CLASSES)
    assert set(state) == set(encoder_state(fresh))
    if trained.trainable:  # every trained method has a head, decoder or classifier that embedding never reads
        assert len(state) < len(trained.state_dict()), f"{method}: its whole state is its encoder's"
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    assert not unexpected and not set(missing) & set(state)
    trained.eval(), fresh.eval()
    torch.testing.assert_close(fresh.embed(images), trained.embed(images))
    if not METHODS.get(method).no_layers:
        assert _embedding_parameters(method) <= set(state)
        x = fresh.normalize(augment.to_float(images[:4]))
        for (name, ours), theirs in zip(fresh.probe_layers(x).items(), trained.probe_layers(x).values()):
            torch.testing.assert_close(ours, theirs, msg=f"{method}: probe layer {name}")


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
