"""The training loop: resume, failures, stored settings (the learning checks: test_families_learn.py)."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import torch

from ssl_core.models.methods import METHODS
from ssl_core.models.methods.simclr import SimCLR
from ssl_core.core.config import DataConfig
from ssl_core.models.checkpoint import CorruptCheckpoint, encoder_checkpoint, load_checkpoint, load_method
from ssl_core.training.loop import TrainingFailed, TrainingInterrupted, train
from ssl_core.training.optimizer import lr_factor
from tiny_runs import tiny_config


def _weights(run):
    return load_checkpoint(run)["method"]


def test_lr_warms_up_then_decays_to_zero():
    factors = [lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))
    assert lr_factor(100, 100, 10) == pytest.approx(0.0)


def test_a_method_trains_a_part_at_its_own_multiple_of_the_learning_rate():
    import torch

    from ssl_core.models.methods.base import build_method
    from ssl_core.training.optimizer import make_optimizer

    byol = build_method({"name": "byol", "predictor_lr_scale": 10}, "convnet", resolution=32, num_classes=10)
    groups = make_optimizer(byol, 1e-3, 0.0, torch.device("cpu")).param_groups
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-2)]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in byol.predictor.parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(byol.parameters()))
    byol.lr_scales = lambda: {"predictr": 10}
    with pytest.raises(ValueError, match="predictr"):
        make_optimizer(byol, 1e-3, 0.0, torch.device("cpu"))


def test_training_writes_checkpoint_metrics_and_status(store):
    run = train(store.create(tiny_config(epochs=2, checkpoint_every=2)), progress=False)
    status = run.read_status()
    assert status["status"] == "finished" and status["step"] == status["total_steps"] == 6
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]
    assert all({"lr", "images_per_s", "loss"} <= set(m) for m in metrics if "loss" in m)
    assert [m["step"] for m in metrics if "knn_top1" in m] == [3, 6]
    assert load_checkpoint(run)["step"] == 6


def test_an_encoder_checkpoint_embeds_as_the_run_did_and_refuses_to_resume(store):
    """A finished run slimmed to its encoder (as the bundled runs are) loads the same embedding
    network from a file a fraction of the size; resuming from it says why it cannot."""
    run = train(store.create(tiny_config("byol", epochs=1)), progress=False)
    images = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    before, size = load_method(run).embed(images), run.checkpoint_path.stat().st_size
    torch.save(encoder_checkpoint(load_method(run), load_checkpoint(run)), run.checkpoint_path)
    assert run.checkpoint_path.stat().st_size < size / 2  # BYOL's projector, predictor and target left out
    torch.testing.assert_close(load_method(run).embed(images), before)
    with pytest.raises(CorruptCheckpoint, match="only the encoder's weights .* cannot resume"):
        train(run, resume=True, progress=False)


def test_resume_continues_from_the_saved_step_with_the_same_lr(store):
    config = tiny_config(epochs=3, checkpoint_every=2)
    straight = train(store.create(config), progress=False)

    stop = threading.Event()
    interrupted = store.create(config)
    stop_at_5 = lambda step, record: stop.set() if step == 5 else None  # noqa: E731
    with pytest.raises(TrainingInterrupted):
        train(interrupted, progress=False, stop=stop, callbacks=(stop_at_5,))
    assert interrupted.read_status()["status"] == "interrupted"
    assert load_checkpoint(interrupted)["step"] == 5

    resumed_steps = []
    train(interrupted, resume=True, progress=False, callbacks=(lambda s, r: resumed_steps.append(s),))
    assert resumed_steps[0] == 6, "resume must start at the step after the checkpoint"
    lr = lambda run: {m["step"]: m["lr"] for m in run.read_metrics() if "lr" in m}  # noqa: E731
    assert lr(interrupted) == lr(straight)
    assert [m["step"] for m in interrupted.read_metrics() if "loss" in m] == list(range(1, 10))
    for key, value in _weights(straight).items():
        assert torch.allclose(value.float(), _weights(interrupted)[key].float(), atol=1e-5), key


@pytest.fixture
def nan_method():
    class NanAfterTwo(SimCLR):
        name = "test_nan_after_two"
        calls = 0

        def training_step(self, images_u8, labels):
            out = super().training_step(images_u8, labels)
            type(self).calls += 1
            if type(self).calls > 2:
                out["loss"] = out["loss"] * float("nan")
            return out

    METHODS.register(NanAfterTwo.name)(NanAfterTwo)
    yield NanAfterTwo.name
    METHODS.unregister(NanAfterTwo.name)


def test_a_nan_loss_fails_the_run_naming_the_step(store, nan_method):
    run = store.create(tiny_config(nan_method, checkpoint_every=1))
    with pytest.raises(TrainingFailed, match="at step 2"):
        train(run, progress=False)
    status = run.read_status()
    assert status["status"] == "failed" and "NaN or infinite at step 2" in status["error"]
    assert load_checkpoint(run)["step"] == 2, "the last good checkpoint is kept"


def test_out_of_memory_names_the_batch_size(store, monkeypatch):
    def oom(self, images_u8, labels):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SimCLR, "training_step", oom)
    run = store.create(tiny_config(batch_size=32))
    with pytest.raises(TrainingFailed, match="batch size 32.*--batch-size 16"):
        train(run, progress=False)
    assert run.read_status()["status"] == "failed"


def test_supervised_refuses_unlabelled_data(store, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 20), (i * 20, 0, 0)).save(folder / f"{i}.png")
    config = tiny_config("supervised")
    config.data.dataset = str(folder)
    config.data.train_size = config.data.test_size = None
    with pytest.raises(ValueError, match="needs labels"):
        train(store.create(config), progress=False)


def test_a_run_stores_every_method_setting_as_it_starts(store):
    """A default changed later must not change what an existing run resumes or reloads."""
    from ssl_core.models.methods.simclr import SimCLRConfig

    run = store.create(tiny_config("simclr", epochs=1))
    assert run.read_config_dict()["method"] == {"name": "simclr"}
    train(run, progress=False)
    stored = run.read_config_dict()["method"]
    assert stored["name"] == "simclr" and stored["temperature"] == SimCLRConfig().temperature
    assert set(stored) == {"name", *(f.name for f in dataclasses.fields(SimCLRConfig))}


def test_a_run_from_before_settings_were_stored_keeps_the_defaults_it_trained_with(monkeypatch):
    from ssl_core.models.methods.base import method_config
    from ssl_core.models.methods.simclr import SimCLRConfig

    monkeypatch.setattr(SimCLRConfig, "earlier_defaults", {"temperature": 0.07})
    assert method_config("simclr", {"name": "simclr"}, stored=True).temperature == 0.07  # an old config.json
    assert method_config("simclr", {"temperature": 0.3}, stored=True).temperature == 0.3  # its own override
    assert method_config("simclr", {"name": "simclr"}).temperature == SimCLRConfig().temperature  # a new run


def test_digits_train_without_mirrored_views_and_the_run_says_so(store):
    """A mirrored digit is no digit: a run on digits stores every view without flips, shapes keep
    theirs, and a flip_p the person sets is theirs."""
    from ssl_core.models.methods.base import method_config

    digits = store.create(dataclasses.replace(tiny_config("vicreg", epochs=1),
                                              data=DataConfig(dataset="digits", train_size=96, test_size=48)))
    train(digits, progress=False)
    stored = digits.read_config_dict()["method"]
    assert stored["views"]["flip_p"] == 0.0 and stored["second_view"]["flip_p"] == 0.0
    assert stored["views"]["crop_scale"] == [0.5, 1.0]  # the rest of the recipe as it was
    assert all(view.flip_p == 0.0 for view in load_method(digits).view_cfgs)  # as it trained

    shapes = store.create(tiny_config("vicreg", epochs=1))
    train(shapes, progress=False)
    assert "flip_p" not in shapes.read_config_dict()["method"]["views"]  # ViewConfig's 0.5

    dino = method_config("dino", {}, mirror_safe=False)
    assert dino.views1["flip_p"] == dino.views2["flip_p"] == dino.local_views["flip_p"] == 0.0
    asked = method_config("simclr", {"views": {"flip_p": 0.3}}, mirror_safe=False)
    assert asked.views == {"flip_p": 0.3}
