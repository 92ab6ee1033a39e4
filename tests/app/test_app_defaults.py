"""What each page opens on when nobody has chosen a run yet, on the bundled runs (whichever
pretrained/ holds): Explore, Evaluate and Clusters on the best self-supervised run by kNN top-1
(Explore coloured by label), Compare on one dataset's floor, self-supervised runs and ceiling,
Attention on a self-supervised ViT (DINO first) beside the supervised ViT. A run chosen anywhere
then follows from page to page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_driver import APP, PAGES
from ssl_core.core.config import BackboneConfig
from ssl_core.models.methods import METHODS
from ssl_core.store.run_store import RunStore
from ssl_core.training.loop import train
from tiny_runs import tiny_config


def stored(root: Path) -> dict[str, dict]:
    """{run id: {method, dataset, knn}} of every run in `root`, read plainly from its files."""
    found = {}
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").exists()):
        config = json.loads((folder / "config.json").read_text())
        scores = json.loads((folder / "eval.json").read_text()) if (folder / "eval.json").exists() else {}
        found[folder.name] = {"method": config["method"]["name"], "dataset": config["data"]["dataset"],
                              "knn": scores.get("knn_top1")}
    return found


def role(method: str) -> str:
    cls = METHODS.get(method)
    return "floor" if not cls.trainable else "supervised" if cls.uses_labels else "self-supervised"


def best_self_supervised(root: Path) -> str:
    runs = {i: r for i, r in stored(root).items() if role(r["method"]) == "self-supervised" and r["knn"] is not None}
    return max(runs, key=lambda i: runs[i]["knn"])


def go(at: AppTest, page: str, query_params: dict[str, str] | None = None) -> AppTest:
    """Open `page` in the session as the sidebar does: the address keeps no query parameter."""
    at.switch_page(PAGES[page])
    at.query_params.clear()
    at.query_params.update(query_params or {})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def session() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    return at


def test_explore_evaluate_and_clusters_open_on_the_best_self_supervised_run(bundled_runs):
    best = best_self_supervised(bundled_runs)
    at = go(session(), "explore")
    assert at.selectbox(key="explore_run_picker").value == best
    assert at.selectbox(key="explore_colour").value == "label"
    assert at.query_params.get("run") == best  # the address links to what is shown
    for page in ("evaluate", "clusters"):
        assert go(at, page).selectbox(key=f"{page}_run_picker").value == best, page


def test_a_run_chosen_anywhere_follows_from_page_to_page(bundled_runs):
    best = best_self_supervised(bundled_runs)
    other = next(i for i, r in stored(bundled_runs).items() if i != best and r["knn"] is not None)
    at = go(session(), "explore")
    at.selectbox(key="explore_run_picker").select(other).run()
    for page in ("evaluate", "clusters", "explore", "attention"):
        assert go(at, page).selectbox(key=f"{page}_run_picker").value == other, page
    # An Overview tile opens its run in Explore (explore?run=ID), which makes it the chosen run.
    go(at, "explore", {"run": best})
    assert at.selectbox(key="explore_run_picker").value == best
    assert go(at, "evaluate").selectbox(key="evaluate_run_picker").value == best


def test_compare_opens_on_one_datasets_floor_self_supervised_runs_and_ceiling(bundled_runs):
    runs = stored(bundled_runs)
    picked = go(session(), "compare").multiselect(key="compare_runs").value
    assert 2 <= len(picked) <= 4 and len({runs[i]["dataset"] for i in picked}) == 1, picked
    roles = [role(runs[i]["method"]) for i in picked]
    assert roles == sorted(roles, key=["floor", "self-supervised", "supervised"].index), roles
    assert "self-supervised" in roles
    dataset = runs[picked[0]]["dataset"]
    supervised = [i for i, r in runs.items() if r["dataset"] == dataset and role(r["method"]) == "supervised"]
    if supervised:  # the ceiling: the best supervised run of the dataset
        assert picked[-1] == max(supervised, key=lambda i: runs[i]["knn"])


@pytest.fixture(scope="module")
def vit_runs(tmp_path_factory) -> list[Path]:
    """A DINO ViT and a supervised ViT, one training step each (their weights are what Attention
    reads), and a self-supervised ViT of another family with a better score."""
    store = RunStore(tmp_path_factory.mktemp("vits") / "runs")
    folders = []
    for method, knn in (("dino", 0.3), ("supervised", 0.5), ("simclr", 0.4)):
        config = tiny_config(method, train_size=32, test_size=16, epochs=1, batch_size=32)
        config.backbone = BackboneConfig("vit_mini")
        run = train(store.create(config), progress=False)
        run.eval_path.write_text(json.dumps({"knn_top1": knn}))
        folders.append(run.path)
    return folders


def test_attention_opens_on_the_dino_vit_beside_the_supervised_vit(vit_runs, tmp_path, monkeypatch):
    for folder in vit_runs:
        shutil.copytree(folder, tmp_path / "runs" / folder.name)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(tmp_path / "runs"))
    dino, supervised, _ = (folder.name for folder in vit_runs)
    at = go(session(), "attention")
    assert at.selectbox(key="attention_run_picker").value == dino
    assert at.selectbox(key="attention_run_b").value == supervised
    shown = [m.value for m in at.markdown if "·" in m.value]
    assert any(dino in m for m in shown) and any(supervised in m for m in shown), shown
