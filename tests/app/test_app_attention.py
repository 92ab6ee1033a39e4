"""The Attention page: a grid of images by heads for a ViT run, a labelled saliency for a CNN run,
two runs side by side, uploads, and clear messages for runs that have no maps to draw."""

from __future__ import annotations

import io
import shutil

import pytest
from PIL import Image

from app_driver import open_page, texts
from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig
from ssl_core.steps.browsing import run_images
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import train
from streamlit.testing.v1 import AppTest
from tiny_runs import tiny_config

VIT_PANELS = ["image", "head 1", "head 2", "head 3", "mean of heads", "rollout"]


@pytest.fixture(scope="module")
def vit_run_folder(tmp_path_factory):
    """A vit_mini run at its random initialisation (a checkpoint, no training steps)."""
    store = RunStore(tmp_path_factory.mktemp("vit") / "runs")
    config = tiny_config("random", train_size=48, test_size=16)
    config.backbone = BackboneConfig("vit_mini")
    run = train(store.create(config), progress=False)
    return run.path


@pytest.fixture
def vit_run(runs_dir, vit_run_folder):
    shutil.copytree(vit_run_folder, runs_dir / vit_run_folder.name)
    return RunStore(runs_dir).get(vit_run_folder.name)


def open_attention(run_id: str) -> AppTest:
    return open_page("attention", {"run": run_id})


def captions(at: AppTest) -> list[str]:
    return [c for image in at.get("image") for c in image.captions]


def test_a_vit_run_shows_a_grid_of_images_by_heads(vit_run):
    at = open_attention(vit_run.id)
    assert captions(at) == VIT_PANELS * 3  # rows 0, 1, 2
    headers = [m for m in texts(at.markdown) if vit_run.id in m]
    assert [h.split(" · ")[-1] for h in headers] == ["row 0", "row 1", "row 2"]
    assert all("*attention*" in h for h in headers)
    assert any("ViT attention" in c for c in texts(at.caption))

    at.text_input(key="attention_rows").set_value("5, 7").run()
    at.toggle(key="attention_top").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert captions(at) == (VIT_PANELS + ["top 60% of mass"]) * 2
    assert [m.split(" · ")[-1] for m in texts(at.markdown) if vit_run.id in m] == ["row 5", "row 7"]


def test_a_cnn_run_shows_a_saliency_labelled_as_not_attention(run):
    at = open_attention(run.id)
    assert captions(at) == ["image", "saliency"] * 3
    assert any("embedding-similarity saliency (not attention" in c for c in texts(at.caption))
    assert all("*embedding-similarity saliency*" in m for m in texts(at.markdown) if run.id in m)


def test_two_runs_on_different_data_compare_on_an_upload(vit_run, run):
    at = open_attention(vit_run.id)
    at.selectbox(key="attention_run_b").select(run.id).run()
    assert not at.exception, [e.value for e in at.exception]
    # The two fixture runs hold different numbers of shapes images: the same row is another image.
    assert vit_run.config.data != run.config.data
    assert any("the same rows are different images" in w for w in texts(at.warning)), texts(at.warning)
    assert captions(at) == VIT_PANELS * 3  # run A only
    at.radio(key="attention_source").set_value("upload").run()
    image = run_images(vit_run)[3]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    at.file_uploader(key="attention_upload").upload("mine.png", buffer.getvalue(), "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert captions(at) == VIT_PANELS + ["image", "saliency"]
    headers = [m for m in texts(at.markdown) if " · " in m]
    assert vit_run.id in headers[0] and run.id in headers[1]
    assert all(h.endswith("uploaded image") for h in headers)


def test_two_runs_on_the_same_data_share_rows(vit_run, runs_dir):
    store = RunStore(runs_dir)
    twin = store.get(shutil.copytree(vit_run.path, runs_dir / f"{vit_run.id}-b").name)
    at = open_attention(vit_run.id)
    at.selectbox(key="attention_run_b").select(twin.id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert captions(at) == VIT_PANELS * 6  # three rows, two runs each
    headers = [m for m in texts(at.markdown) if " · row " in m]
    assert [h.split(" · ")[0].strip("*") for h in headers] == [vit_run.id, twin.id] * 3


def test_runs_without_maps_get_a_clear_message(runs_dir):
    store = RunStore(runs_dir)
    imported = store.create(RunConfig(data=DataConfig(dataset="shapes"), method={"name": "imported"}))
    at = open_attention(imported.id)
    assert any("imported with its embeddings" in w for w in texts(at.warning)), texts(at.warning)
    assert not at.get("image")
    untrained = store.create(tiny_config())
    at = open_attention(untrained.id)
    assert any("no checkpoint yet" in w for w in texts(at.warning)), texts(at.warning)


def test_bad_rows_are_refused_with_the_reason(vit_run):
    at = open_attention(vit_run.id)
    at.text_input(key="attention_rows").set_value("1, x").run()
    assert any("'x' is not a row number" in e for e in texts(at.error))
    at.text_input(key="attention_rows").set_value("1, 500").run()
    assert any("out of range" in e for e in texts(at.error))
