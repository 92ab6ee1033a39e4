"""The Import page: embeddings and images from paths become a run that opens in Explore; bad
input is refused with the reason and leaves no run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app_driver import map_args, map_block, open_page, texts
from widgets.scatter_map.payload import decode


@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """30 images, 6-d vectors and labels; an empty runs folder for the app."""
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i:02d}.png")
    np.save(tmp_path / "vectors.npy", rng.normal(size=(30, 6)).astype(np.float32))
    pd.DataFrame({"label": rng.choice(["a", "b"], 30)}).to_csv(tmp_path / "labels.csv", index=False)
    runs = tmp_path / "runs"
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(runs))
    return tmp_path, runs


def fill(at, folder, embeddings="vectors.npy"):
    at.text_input(key="import_images").input(str(folder / "images"))
    at.text_input(key="import_embeddings").input(str(folder / embeddings))
    at.text_input(key="import_labels").input(str(folder / "labels.csv"))
    at.text_input(key="import_name").input("from elsewhere")
    return at


def test_import_makes_a_run_that_opens_in_explore(inputs):
    folder, runs = inputs
    at = open_page("import")
    assert at.button(key="import_start").disabled  # no paths yet
    fill(at, folder).run()
    at.button(key="import_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [run_id] = [p.name for p in runs.iterdir()]
    assert any(run_id in s for s in texts(at.success))
    assert at.get("progress")[0].proto.value == 100  # the bar followed the import to its end
    assert any("matched 30 embeddings to images by sorted relative path" in c for c in texts(at.caption))

    at.button(key="import_open").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert texts(at.title) == ["Explore"] and at.query_params.get("run") == run_id
    block = decode(map_block(at))
    assert len(block.rows) == 30 and map_args(at)["legend"]["names"] == ["a", "b"]
    assert any("30 images (24 train, 6 test)" in c for c in texts(at.caption))
    assert any("imported with its embeddings only" in i for i in texts(at.info))  # no search by upload


def test_bad_input_shows_why_and_makes_no_run(inputs):
    folder, runs = inputs
    np.save(folder / "short.npy", np.ones((29, 6), dtype=np.float32))
    at = fill(open_page("import"), folder, "short.npy").run()
    at.button(key="import_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Nothing was imported: 29 embeddings in short.npy but 30 images" in e for e in texts(at.error))
    assert not runs.exists() or not any(runs.iterdir())


def test_an_encoder_whose_weights_are_missing_says_where_to_put_them(inputs):
    folder, runs = inputs
    at = open_page("import")
    at.text_input(key="import_arch").input("resnet18")
    at.text_input(key="import_weights").input(str(folder / "models" / "resnet18.pt")).run()
    at.button(key="import_encode_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("never downloads weights" in e and "models/resnet18.pt" in e for e in texts(at.error))
    assert not runs.exists() or not any(runs.iterdir())
