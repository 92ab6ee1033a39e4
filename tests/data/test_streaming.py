"""Folders streamed from their files: the same pixels, splits and training steps as in memory."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from ssl_core.data import folder as folder_module
from ssl_core.data import load_dataset
from ssl_core.data.files import FileImages, ImageRows, UnreadableImage, iter_batches
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.browsing import run_images
from ssl_core.workflows.pipeline import run_post_steps
from ssl_core.models.checkpoint import load_checkpoint
from ssl_core.training.loop import TrainingFailed, train


def write_shapes_folder(root, n_train=64, n_test=16):
    """`shapes` images saved as PNG files in class folders: a folder with real class structure."""
    data = load_dataset(DataConfig(dataset="shapes", train_size=n_train, test_size=n_test))
    for i, (image, label) in enumerate(zip(data.images.numpy(), data.labels.tolist())):
        path = root / data.class_names[label] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return root


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp("shapes_folder"))


def load(folder, tmp_path, load_mode, **overrides):
    return load_dataset(DataConfig(dataset=str(folder), resolution=32, load=load_mode,
                                   data_dir=str(tmp_path / "cache"), **overrides))


def test_a_streamed_folder_holds_the_in_memory_pixels_split_and_labels(shapes_folder, tmp_path):
    memory = load(shapes_folder, tmp_path, "memory")
    streamed = load(shapes_folder, tmp_path, "stream")
    assert isinstance(streamed.images, FileImages) and isinstance(memory.images, torch.Tensor)
    assert streamed.ids == memory.ids and streamed.class_names == memory.class_names
    assert torch.equal(streamed.labels, memory.labels) and torch.equal(streamed.is_train, memory.is_train)
    assert streamed.images.shape == tuple(memory.images.shape) and len(streamed) == len(memory)
    # every way of indexing decodes exactly the in-memory rows
    assert torch.equal(streamed.images[:], memory.images)
    assert torch.equal(streamed.images[5], memory.images[5]) and torch.equal(streamed.images[-1], memory.images[-1])
    rows = np.array([7, 3, 3, 60])
    assert torch.equal(streamed.images[rows], memory.images[rows])
    assert torch.equal(streamed.images[torch.as_tensor(rows)], memory.images[rows])
    assert torch.equal(streamed.images[::7], memory.images[::7])
    assert torch.equal(streamed.test.images[:], memory.test.images)
    assert isinstance(streamed.train.images, FileImages), "a split keeps files, not pixels"
    with pytest.raises(IndexError):
        streamed.images[len(streamed)]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_decoded_in_workers_arrive_in_order(shapes_folder, tmp_path, workers):
    memory = load(shapes_folder, tmp_path, "memory")
    streamed = load(shapes_folder, tmp_path, "stream", workers=workers)
    got = list(iter_batches(streamed.images, 24, workers=workers))
    assert [len(b) for b in got] == [24, 24, 24, 8]
    assert torch.equal(torch.cat(got), memory.images)
    plan = [torch.tensor([9, 1, 40]), torch.tensor([0])]
    pairs = list(streamed.images.batches(plan, labels=streamed.labels, workers=workers))
    for (images, labels), idx in zip(pairs, plan):
        assert torch.equal(images, memory.images[idx]) and torch.equal(labels, memory.labels[idx])


def test_unusable_files_are_skipped_alike_and_verdicts_are_remembered(shapes_folder, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    for i, path in enumerate(sorted(shapes_folder.rglob("*.png"))[:12]):
        target = folder / path.parent.name / f"{i}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    broken = folder / "circle" / "broken.png"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not an image")
    with warnings.catch_warnings(record=True) as memory_warnings:
        warnings.simplefilter("always")
        memory = load(folder, tmp_path, "memory")
    calls = []
    real = folder_module.decode_image
    monkeypatch.setattr(folder_module, "decode_image", lambda path, r: calls.append(path) or real(path, r))
    with warnings.catch_warnings(record=True) as streamed_warnings:
        warnings.simplefilter("always")
        streamed = load(folder, tmp_path, "stream")
    assert streamed.ids == memory.ids and "circle/broken.png" not in streamed.ids
    assert any("broken.png" in str(w.message) for w in memory_warnings)
    assert any("broken.png" in str(w.message) for w in streamed_warnings)
    assert len(calls) == 13, "the first streamed load decodes each file once to check it"

    calls.clear()
    with pytest.warns(UserWarning, match="broken.png: not an image"):  # a remembered verdict still warns
        load(folder, tmp_path, "stream")
    assert calls == [broken], "only the unusable file is checked again (its error may have passed)"
    calls.clear()
    first = sorted(folder.rglob("*.png"))[0]
    Image.new("RGB", (40, 40), "white").save(first)
    import os
    os.utime(first, ns=(1, 1))  # a changed file: new size or modification time
    with pytest.warns(UserWarning, match="broken.png"):
        again = load(folder, tmp_path, "stream")
    assert sorted(calls) == sorted([first, broken]), "and a changed file"
    assert torch.equal(again.images[again.ids.index(first.relative_to(folder).as_posix())],
                       torch.full((32, 32, 3), 255, dtype=torch.uint8))


def test_auto_streams_only_folders_too_large_for_a_quarter_of_ram(shapes_folder, tmp_path, monkeypatch):
    assert isinstance(load(shapes_folder, tmp_path, "auto").images, torch.Tensor)
    decoded_bytes = 80 * 32 * 32 * 3
    monkeypatch.setattr(folder_module, "total_ram", lambda: 4 * decoded_bytes - 4)
    assert isinstance(load(shapes_folder, tmp_path, "auto").images, FileImages)
    with pytest.raises(ValueError, match="unknown data load 'disk'"):
        DataConfig(load="disk")


def folder_config(folder, tmp_path, load_mode, epochs=2, workers=1):
    return RunConfig(
        data=DataConfig(dataset=str(folder), resolution=32, load=load_mode, workers=workers,
                        data_dir=str(tmp_path / "cache")),
        backbone=BackboneConfig(name="convnet"), method={"name": "simclr"},
        train=TrainConfig(epochs=epochs, batch_size=16, device="cpu", log_every=1, knn_max_bank=64,
                          knn_max_queries=16, checkpoint_min_seconds=0,
                          map_snapshots=0))  # no map per check: suite time


def test_a_streamed_run_takes_the_in_memory_runs_steps(shapes_folder, tmp_path, store):
    memory = train(store.create(folder_config(shapes_folder, tmp_path, "memory")), progress=False)
    streamed = train(store.create(folder_config(shapes_folder, tmp_path, "stream", workers=2)), progress=False)
    losses = lambda run: [m["loss"] for m in run.read_metrics() if "loss" in m]  # noqa: E731
    assert len(losses(streamed)) == 8
    assert losses(streamed) == pytest.approx(losses(memory), rel=1e-5, abs=1e-6)
    assert streamed.read_status()["data"] == "streamed from files"
    assert memory.read_status()["data"] == "in memory"
    run_post_steps(streamed, ["embed"], device="cpu", progress=False, log=lambda line: None)
    status = streamed.read_status()
    assert status["stage"] == "done" and status["data"] == "streamed from files", "the steps after keep it"
    vectors, _, ids = load_embeddings(streamed, "test")
    assert ids == list(load(shapes_folder, tmp_path, "memory").test.ids) and np.isfinite(vectors).all()
    for key, value in load_checkpoint(memory)["method"].items():
        assert torch.allclose(value.float(), load_checkpoint(streamed)["method"][key].float(), atol=1e-5), key


def test_a_file_that_breaks_mid_run_fails_it_by_name_and_resume_finishes(shapes_folder, tmp_path, store):
    folder = tmp_path / "copy"
    for path in shapes_folder.rglob("*.png"):
        target = folder / path.relative_to(shapes_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    run = store.create(folder_config(folder, tmp_path, "stream", epochs=5, workers=1))
    victim = sorted(folder.rglob("*.png"))[0]
    saved = victim.read_bytes()
    # Broken after step 1: its next read (a batch, or the epoch-end kNN check) fails the run.
    break_file = lambda step, record: victim.write_bytes(b"garbage") if step == 1 else None  # noqa: E731
    with pytest.raises(TrainingFailed, match=victim.name):
        train(run, progress=False, callbacks=(break_file,))
    status = run.read_status()
    assert status["status"] == "failed" and victim.name in status["error"] and "resume" in status["error"]
    assert 1 <= load_checkpoint(run)["step"] == status["step"] < status["total_steps"]

    # Resuming over other images (the broken file now skipped by the check) is refused.
    with pytest.raises(TrainingFailed, match="train images differ"), pytest.warns(UserWarning, match=victim.name):
        train(run, resume=True, progress=False)

    victim.write_bytes(saved)
    train(run, resume=True, progress=False)
    assert run.read_status()["status"] == "finished"
    assert [m["step"] for m in run.read_metrics() if "loss" in m] == list(range(1, 21))
    straight = train(store.create(folder_config(folder, tmp_path, "stream", epochs=5, workers=1)), progress=False)
    losses = lambda run: [m["loss"] for m in run.read_metrics() if "loss" in m]  # noqa: E731
    assert losses(run) == pytest.approx(losses(straight), rel=1e-5, abs=1e-6), "the resumed run took the same steps"


def test_the_app_reads_a_streamed_runs_rows_without_decoding_them_all(shapes_folder, tmp_path, store):
    config = folder_config(shapes_folder, tmp_path, "stream")
    run = store.create(config)
    rows = run_images(run)
    memory = load(shapes_folder, tmp_path, "memory")
    order = np.concatenate([np.flatnonzero(memory.is_train.numpy()), np.flatnonzero(~memory.is_train.numpy())])
    expected = memory.images.numpy()[order]
    assert isinstance(rows, ImageRows) and len(rows) == len(expected) and rows.shape == expected.shape
    assert np.array_equal(rows[[0, 70]], expected[[0, 70]]) and np.array_equal(rows[3], expected[3])
    assert np.array_equal(np.stack(list(rows)), expected)


def test_the_worker_setting_travels_with_the_images_and_odd_indices_are_refused(shapes_folder, tmp_path):
    images = load(shapes_folder, tmp_path, "stream", workers=0).images
    assert images.workers == 0 and images.subset([1, 2]).workers == 0
    for bad in ((1, 2), True, 1.5):
        with pytest.raises(TypeError):
            images[bad]
    with pytest.raises(IndexError, match="2-D"):
        images[np.zeros((2, 2), dtype=int)]
    assert torch.equal(images[np.int64(4)], images[torch.tensor(4)]) and images[np.array(4)].shape == (32, 32, 3)
    assert images[[]].shape == (0, 32, 32, 3)


def test_unreadable_image_names_the_file(tmp_path):
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path)
    images = FileImages(tmp_path, ["a.png"], 8)
    assert images[0].shape == (8, 8, 3)
    path.write_bytes(b"junk")
    with pytest.raises(UnreadableImage, match="a.png"):
        images[0]
    assert images.shape == (1, 8, 8, 3) and type(images.shape) is tuple  # compares as a tensor's shape does
