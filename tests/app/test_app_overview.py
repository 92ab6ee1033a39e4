"""The Overview, the app's first page, on the bundled runs (whichever pretrained/ holds): a tile
per run trained here with its map, its link to Explore and the sentence that places it, the kNN
of every run against the floors and the ceiling, the factor heatmap; a run lacking files says
which; nothing is loaded but stored results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import loaders
from app_driver import open_page, rendered, texts
from ssl_core.models.methods import METHODS
from ssl_core.store.run_store import RunStore


def scores(root: Path) -> dict[str, tuple[str, float | None]]:
    """{run id: (method, eval.json's kNN top-1)} of every run in `root`, read plainly."""
    found = {}
    for folder in sorted(p for p in root.iterdir() if (p / "config.json").exists()):
        method = json.loads((folder / "config.json").read_text())["method"]["name"]
        knn = json.loads((folder / "eval.json").read_text()).get("knn_top1") if (folder / "eval.json").exists() else None
        found[folder.name] = (method, knn)
    return found


def trained_here(root: Path) -> set[str]:
    return {run_id for run_id, (method, _) in scores(root).items() if method in METHODS and METHODS.get(method).trainable}


def charts(at) -> list[dict]:
    """The Vega-Lite specs of the page's charts."""
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def views(chart: dict) -> list[dict]:
    """Every view of a chart, its layers included, with its data."""
    found = []
    for view in chart.get("hconcat", [chart]):
        found += [{"data": view.get("data"), **layer} for layer in view.get("layer", [view])]
    return found


def marked(chart: dict, mark: str) -> list[dict]:
    """The data rows of the chart's views that draw `mark` (bar, rect, text)."""
    def kind(view: dict) -> str:
        return view["mark"] if isinstance(view["mark"], str) else view["mark"]["type"]

    return [row for view in views(chart) if kind(view) == mark for row in view["data"]["values"]]


def links(at) -> dict[str, object]:
    """{run id: page link} of the links to Explore."""
    found = {}
    for link in at.get("page_link"):
        assert link.proto.page == "explore" and link.proto.query_string.startswith("run=")
        found[link.proto.query_string.removeprefix("run=")] = link.proto
    return found


def test_a_tile_per_trained_run_with_its_map_its_sentence_and_its_link_to_explore(bundled_runs):
    at = open_page("overview")  # the default page
    assert texts(at.title) == ["Overview"]
    trained = trained_here(bundled_runs)
    assert trained, "the bundled runs hold runs trained here"
    tiles = links(at)
    assert set(tiles) == trained and not any(link.disabled for link in tiles.values())
    assert len(at.get("image")) == len(trained)  # one map per tile
    known = scores(bundled_runs)
    captions = texts(at.caption)
    for run_id in trained:
        sentence = [c for c in captions if f"kNN {known[run_id][1]:.3f}" in c]
        assert sentence and ("of the way from" in sentence[0] or "ceiling" in sentence[0]), (run_id, captions)
    assert not at.get("plotly_chart"), "the first page loads no Plotly (4.7 MB of JavaScript)"
    bars = [row for chart in charts(at) for row in marked(chart, "bar")]
    assert sorted(row["knn"] for row in bars if row["knn"]) == sorted(k for _, k in known.values() if k is not None)
    probed = [f for f in bundled_runs.glob("*/analysis/factors.json")]
    if probed:
        names = [e["name"] for e in json.loads(probed[0].read_text())["factors"]]
        cells = [row for chart in charts(at) for row in marked(chart, "rect")]
        assert cells and set(names) <= {cell["factor"] for cell in cells}, cells


def test_the_overview_reads_stored_results_only(bundled_runs, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Overview loaded more than stored results")

    for heavy in ("dataset", "images", "explore_data", "search", "method", "similarity", "aligned_maps"):
        monkeypatch.setattr(loaders, heavy, refuse)
    at = open_page("overview")
    assert links(at) and not at.exception


def test_a_run_lacking_its_map_and_scores_says_which_commands_make_them(bundled_copy, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(bundled_copy, root)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(root))
    run_id, unmapped = sorted(trained_here(root))[:2]
    shutil.rmtree(root / run_id / "projection")
    (root / run_id / "eval.json").unlink()
    shutil.rmtree(root / unmapped / "projection")
    at = open_page("overview")
    assert links(at)[run_id].disabled and links(at)[unmapped].disabled
    captions = texts(at.caption)
    assert any(c.endswith(f"no scores or map yet: run `ssl-explorer eval {run_id}` then `ssl-explorer project "
                          f"{run_id}`.") for c in captions), captions
    assert f"no map yet: run `ssl-explorer project {unmapped}`" in captions, captions
    assert len(at.get("image")) == len(trained_here(root)) - 2


def test_without_runs_of_its_methods_it_says_how_to_add_the_bundled_ones(tmp_path, monkeypatch):
    from hostile_runs import hostile_run

    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(tmp_path / "runs"))
    at = open_page("overview")
    assert any("There are no runs" in i and "ssl-explorer demo" in i for i in texts(at.info)), texts(at.info)
    hostile_run(RunStore(tmp_path / "runs"))  # imported embeddings: no floor, no ceiling
    at = open_page("overview")
    assert any("None of the runs here" in i and "ssl-explorer demo" in i for i in texts(at.info)), texts(at.info)


def test_a_users_dataset_and_run_names_are_text_in_tiles_and_charts(tmp_path, monkeypatch):
    from hostile_runs import DATASET, NAME
    from ssl_core.store.atomic import atomic_write_json
    from ssl_core.store.runs import set_display_name
    from test_app_escaping import inert
    from tiny_runs import embedded_run, tiny_config

    store = RunStore(tmp_path / "runs")
    for method, knn in (("random", 0.2), ("simclr", 0.5), ("supervised", 0.8)):
        config = tiny_config(method, train_size=30, test_size=15)
        config.data.dataset = DATASET
        run = embedded_run(store, train_size=30, test_size=15, dim=8, classes=3, config=config)
        run.set_status("finished")
        atomic_write_json(run.eval_path, {"knn_top1": knn})
        run.projection_dir.mkdir()
        np.save(run.projection_dir / "umap_2d.npy", np.random.default_rng(0).normal(size=(45, 2)).astype(np.float32))
        set_display_name(run, NAME)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(store.root))
    at = open_page("overview")
    captions = [c.value for c in at.caption if "kNN 0." in rendered(c.value)]
    assert len(captions) == 2 and all(inert(c) and NAME in rendered(c) for c in captions), captions
    assert all(inert(link.proto.label) and inert(link.proto.help) for link in at.get("page_link"))
    [chart] = charts(at)  # Vega draws texts as text: a name stands as it is, in data and titles, never in code
    assert chart["title"]["text"] == f"{DATASET}: kNN top-1"
    expressions = [t["filter"] for view in views(chart) for t in view.get("transform", [])]
    assert expressions and not any(DATASET in e or NAME in e for e in expressions)
