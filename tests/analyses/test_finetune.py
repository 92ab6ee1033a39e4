"""Fine-tuning: each mode changes exactly the weights it should, the checkpoint is never written,
and a fine-tuned supervised encoder beats chance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_core.models.encoders import load_run_encoder
from ssl_core.steps.browsing import run_dataset
from ssl_core.analyses.finetune import FinetuneSettings, chance_level, encoder_groups, finetune_mode, finetune_run
from ssl_core.models.methods.base import build_method
from ssl_core.store.runs import Run
from tiny_runs import trained_run

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained"
TINY = FinetuneSettings(epochs=1, batch_size=32, warmup_steps=1)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Run:
    return trained_run(tmp_path_factory.mktemp("finetune") / "runs", "simclr", train_size=96, test_size=48)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in module.state_dict().items() if not torch.equal(v, before[k])}


@pytest.mark.parametrize("mode", ["frozen", "last_block", "full"])
def test_each_mode_changes_only_what_it_unfreezes(tiny_run, mode):
    data = run_dataset(tiny_run)
    method = load_run_encoder(tiny_run, "cpu")
    before = _state(method.backbone)
    result = finetune_mode(method, mode, data.train.images, data.train.labels, data.test.images, data.test.labels,
                           num_classes=data.num_classes, settings=TINY)
    changed = _changed(before, method.backbone)
    assert result["mode"] == mode and result["steps"] == 3 and 0.0 <= result["top1"] <= 1.0
    if mode == "frozen":
        assert changed == set(), "a frozen backbone keeps its weights and BatchNorm statistics"
        assert result["backbone_change"] == 0.0 and result["trainable_params"] == 0
    elif mode == "last_block":
        # features.12 and .13 are the last conv block's conv and BatchNorm (its ReLU has no weights).
        assert changed and all(k.startswith(("features.12.", "features.13.")) for k in changed), changed
        assert "features.0.weight" not in changed
    else:
        assert {"features.0.weight", "features.12.weight"} <= changed
        assert result["backbone_change"] > 0


def test_finetune_run_stores_three_modes_and_never_writes_the_checkpoint(tiny_run):
    digest = hashlib.sha256(tiny_run.checkpoint_path.read_bytes()).hexdigest()
    summary = finetune_run(tiny_run, settings=TINY)
    stored = json.loads((tiny_run.analysis_dir / "finetune.json").read_text())
    assert [m["mode"] for m in stored["modes"]] == ["frozen", "last_block", "full"]
    assert all(m["epochs"] == 1 and m["steps"] == 3 and m["seconds"] > 0 for m in stored["modes"])
    assert stored["settings"]["batch_size"] == 32 and stored["settings"]["seed"] == tiny_run.config.train.seed
    assert stored["modes"] == summary["modes"]
    assert hashlib.sha256(tiny_run.checkpoint_path.read_bytes()).hexdigest() == digest


def test_a_vit_learns_at_a_rate_that_decays_layer_by_layer_towards_its_input():
    method = build_method({"name": "mae"}, "vit_mini", resolution=32, num_classes=4)
    vit = method.representation_module()
    learning = list(vit.parameters())
    groups = encoder_groups(method, learning, FinetuneSettings(backbone_lr=1e-3, layer_decay=0.5))
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(rate) == len(learning), "every learning weight in exactly one group"
    depth = len(vit.blocks)
    assert rate[id(vit.norm.weight)] == 1e-3  # the top
    assert rate[id(next(vit.blocks[-1].parameters()))] == 1e-3 * 0.5
    assert rate[id(vit.pos_embed)] == rate[id(vit.patch_embed.weight)] == pytest.approx(1e-3 * 0.5 ** (depth + 1))
    # Only what learns is grouped (the last block alone: the same rates there), and a convnet
    # has one rate.
    last = [p for m in vit.last_block() for p in m.parameters()]
    assert {g["lr"] for g in encoder_groups(method, last, FinetuneSettings(backbone_lr=1e-3, layer_decay=0.5))} == {
        1e-3, 5e-4}
    convnet = build_method({"name": "simclr"}, "convnet", resolution=32, num_classes=4)
    [one] = encoder_groups(convnet, list(convnet.backbone.parameters()), FinetuneSettings(backbone_lr=1e-3))
    assert one["lr"] == 1e-3 and len(one["params"]) == len(list(convnet.backbone.parameters()))


def test_unknown_mode_names_the_valid_ones(tiny_run):
    method = load_run_encoder(tiny_run, "cpu")
    images = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="unknown fine-tuning mode 'partial'; known: frozen, last_block, full"):
        finetune_mode(method, "partial", images, torch.zeros(4, dtype=torch.long), images,
                      torch.zeros(4, dtype=torch.long), num_classes=2)


def test_a_fine_tuned_supervised_encoder_beats_chance():
    run = Run(PRETRAINED / "demo-supervised-shapes")
    if not run.checkpoint_path.exists():
        pytest.skip("demo-supervised-shapes is not bundled")
    data = run_dataset(run)
    train, test = data.train.subset(np.arange(1024)), data.test.subset(np.arange(500))
    method = load_run_encoder(run, "cpu")
    result = finetune_mode(method, "frozen", train.images, train.labels, test.images, test.labels,
                           num_classes=data.num_classes, settings=FinetuneSettings(epochs=2, batch_size=128))
    chance = chance_level(test.labels.numpy())
    # Measured: top-1 0.61 after 16 steps on 1024 images, against a chance level of 0.08.
    assert result["top1"] > chance + 0.25, (result, chance)
