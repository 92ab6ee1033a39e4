"""docs/architecture.md's recipes, kept true: a method added in one file (here, inside the test)
is listed, trained, embedded, scored, probed layer by layer, fine-tuned and shown on the
Evaluate page, without touching any other file."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core import cli
from ssl_core.analyses.runner import run_analyses
from ssl_core.models import augment
from ssl_core.models.methods import METHODS
from ssl_core.models.methods.base import Method, register_method
from ssl_core.store.run_store import RunStore
from ssl_core.workflows.pipeline import run_all
from tiny_runs import tiny_config

sys.path.insert(0, str(Path(__file__).resolve().parent / "app"))  # the app test driver


class MeanColour(Method):
    """Predict an image's mean colour from a random crop of it: a pretext task in a dozen lines."""

    name = "recipe-mean-colour"
    family = "pretext"
    description = "predicts the mean colour of the whole image from a crop (a test's throwaway method)"

    def __init__(self, backbone, cfg, **kwargs):
        super().__init__(backbone, cfg, **kwargs)
        self.head = nn.Linear(self.embedding_dim, 3)

    def training_step(self, images_u8, labels):
        whole = augment.to_float(images_u8)
        crops = augment.random_resized_crop(whole, self.resolution, scale=(0.3, 0.6))
        target = whole.mean(dim=(2, 3))
        return {"loss": F.mse_loss(self.head(self.encode(self.normalize(crops))), target)}


def test_a_method_in_one_file_is_listed_trained_probed_fine_tuned_and_shown(tmp_path, monkeypatch, capsys):
    from app_driver import open_page, texts

    register_method(MeanColour)
    try:
        assert cli.main(["methods"]) == 0
        assert any(line.startswith("recipe-mean-colour") and "pretext" in line
                   for line in capsys.readouterr().out.splitlines())
        store = RunStore(tmp_path / "runs")
        run = store.create(tiny_config(MeanColour.name, train_size=64, test_size=32, epochs=1))
        torch.manual_seed(0)
        run_all(run, skip=["project", "index"], progress=False, log=lambda message: None)
        assert run.read_status()["status"] == "finished" and run.read_eval()["knn_top1"] is not None
        result = run_analyses(run, ["layers", "finetune"], device="cpu")
        layers = result["results"]["layers"]["layers"]
        assert [layer["name"] for layer in layers] == ["block1", "block2", "block3", "block4"]
        assert {mode["mode"] for mode in result["results"]["finetune"]["modes"]} == {"frozen", "last_block", "full"}

        monkeypatch.setenv("SSL_EXPLORER_RUNS", str(store.root))
        at = open_page("evaluate", {"run": run.id})
        shown = texts(at.subheader)
        assert "Layer-wise linear probe" in shown and "Fine-tuning for a fixed budget" in shown, shown
    finally:
        METHODS.unregister(MeanColour.name)


def test_a_dataset_in_one_function_is_listed_trained_on_and_explored(tmp_path, capsys):
    """The 'add a dataset' recipe: one registered function returning an ImageSet."""
    import numpy as np

    from ssl_core.data import DATASETS
    from ssl_core.data.convert import split_and_build
    from ssl_core.steps.browsing import load_explore_data

    @DATASETS.register("recipe-stripes")
    def stripes(cfg):
        """Horizontal or vertical stripes on noise: two classes (a test's throwaway dataset)."""
        rng = np.random.default_rng(cfg.seed)
        images = rng.integers(0, 80, size=(120, cfg.resolution, cfg.resolution, 3)).astype(np.uint8)
        labels = np.arange(120) % 2
        images[labels == 0, ::4] = 255
        images[labels == 1, :, ::4] = 255
        return split_and_build("recipe-stripes", images, labels, ["horizontal", "vertical"], cfg)

    try:
        assert cli.main(["datasets"]) == 0
        assert "recipe-stripes" in capsys.readouterr().out
        config = tiny_config("simclr", train_size=96, test_size=24, epochs=1)
        config.data.dataset = "recipe-stripes"
        run = RunStore(tmp_path / "runs").create(config)
        run_all(run, progress=False, log=lambda message: None)
        view = load_explore_data(run)
        assert len(view.ids) == 120 and view.class_names == ["horizontal", "vertical"]
    finally:
        DATASETS.unregister("recipe-stripes")


def count_rows(run, *, device="cpu", progress=None):
    """A throwaway analysis: how many rows each split has."""
    from ssl_core.analyses.stored import store_result
    from ssl_core.steps.embed import load_all_embeddings

    _, _, _, splits = load_all_embeddings(run)
    summary = {"train": int((splits == "train").sum()), "test": int((splits == "test").sum())}
    store_result(run, "recipe_rows", summary)
    return summary


def test_an_analysis_in_one_function_runs_from_the_runner_and_is_stored(tmp_path, monkeypatch):
    """The 'add an analysis' recipe: a function and one line in ANALYSES."""
    from ssl_core.analyses import runner
    from ssl_core.analyses.stored import read_result
    from tiny_runs import embedded_run

    run = embedded_run(RunStore(tmp_path / "runs"), train_size=40, test_size=10)
    monkeypatch.setitem(runner.ANALYSES, "recipe_rows", "test_recipes:count_rows")
    result = run_analyses(run, ["recipe_rows"], device="cpu")
    assert result["ran"] == ["recipe_rows"]
    assert read_result(run, "recipe_rows") == {"train": 40, "test": 10}
    assert "recipe_rows" in runner.missing_analyses(run)["stored"]


def test_every_page_file_is_in_the_navigation_and_opened_by_a_test():
    """The 'add a page' recipe: a page file in app/app_pages/, one st.Page in streamlit_app.py,
    and a test that opens it (the app driver's PAGES)."""
    from app_driver import PAGES

    app = Path(__file__).resolve().parents[1] / "app"
    files = {f"app_pages/{p.name}" for p in (app / "app_pages").glob("*.py") if not p.name.startswith("_")}
    navigation = (app / "streamlit_app.py").read_text()
    assert {f for f in files if f'st.Page("{f}"' not in navigation} == set(), "a page is missing from st.navigation"
    assert files == set(PAGES.values()), "a page has no entry in tests/app/app_driver.PAGES"
    tested = " ".join(p.read_text() for p in (app.parent / "tests" / "app").glob("test_app_*.py"))
    assert [name for name in PAGES if f'open_page("{name}"' not in tested] == [], "a page no test opens"
