"""The Compare page on the bundled demo runs: scores with the best marked, aligned maps with a
selection highlighted on the others, CKA and overlap matrices, per-class differences, training curves,
the exports; fewer than two runs and runs over other images are refused with the reason."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app_driver import APP, map_args, map_block, map_bytes, select_on_map, texts
from ssl_core.analyses.compare import aligned_maps, compare_many, run_scores
from ssl_core.cli import main
from ssl_core.steps.browsing import load_explore_data
from ssl_core.steps.embed import load_embeddings
from ssl_core.steps.evaluate import confusion, knn_predict
from ssl_core.steps.readiness import comparable
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run
from widgets.scatter_map.payload import decode, decode_rows

DEMOS = ["demo-simclr-shapes", "demo-supervised-shapes", "demo-random-shapes"]


def with_per_class(run: Run) -> None:
    """Bundled runs scored before per-class accuracy was stored get it here, as evaluate_run
    computes it (k=20 kNN predictions of the test rows)."""
    scores = run.read_eval()
    if "per_class_knn_top1" in scores:
        return
    train_x, train_y, _ = load_embeddings(run, "train")
    test_x, test_y, _ = load_embeddings(run, "test")
    classes = int(max(train_y.max(), test_y.max())) + 1
    predicted = knn_predict(train_x, train_y, test_x, num_classes=classes, k=20).numpy()
    run.eval_path.write_text(json.dumps({**scores, **confusion(test_y, predicted, classes)}))


@pytest.fixture(scope="module")
def compared_runs(tmp_path_factory, demo_runs) -> Path:
    root = tmp_path_factory.mktemp("compare") / "runs"
    for name in DEMOS:
        shutil.copytree(demo_runs / name, root / name, ignore=shutil.ignore_patterns("checkpoint.pt"))
        with_per_class(Run(root / name))
    return root


@pytest.fixture
def runs_root(compared_runs, monkeypatch) -> Path:
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(compared_runs))
    return compared_runs


def open_compare(runs: list[str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    at.switch_page("app_pages/compare.py")
    if runs:
        at.query_params["runs"] = ",".join(runs)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at) -> dict[str, dict]:
    return {chart.proto.id: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def chart(at, title_part: str) -> dict:
    found = [spec for spec in charts(at).values()
             if title_part in ((spec["layout"].get("title") or {}).get("text") or "")]
    assert found, f"no chart titled '{title_part}'"
    return found[0]


def test_fewer_than_two_runs_is_a_clear_prompt(runs_root):
    at = open_compare()  # opens on one dataset's runs (tests/app/test_app_defaults.py): clear them
    at.multiselect(key="compare_runs").set_value([]).run()
    assert any("Pick at least two runs" in i for i in texts(at.info)), texts(at.info)
    at.multiselect(key="compare_runs").select(DEMOS[0]).run()
    assert any("Pick at least two runs" in i for i in texts(at.info))
    assert not at.get("plotly_chart") and not at.get("component_instance")


def test_three_runs_show_scores_with_the_best_marked(runs_root):
    at = open_compare()
    at.multiselect(key="compare_runs").set_value([]).run()
    picker = at.multiselect(key="compare_runs")
    for name in DEMOS:
        picker.select(name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value.set_index("score")
    scores = [run_scores(Run(runs_root / name)) for name in DEMOS]
    best = int(np.argmax([s["knn_top1"] for s in scores]))
    knn = table.loc["kNN top-1"]
    for i, name in enumerate(DEMOS):
        assert knn[name].startswith(f"{scores[i]['knn_top1']:.4g}")
        assert knn[name].endswith("★") == (i == best), knn[name]
    assert table.loc["uniformity", "better"].startswith("not ranked")
    assert not any(str(v).endswith("★") for v in table.loc["uniformity", DEMOS])


def test_cka_matrix_per_class_differences_and_curves(runs_root):
    at = open_compare(DEMOS)
    cka = chart(at, "linear CKA")["data"][0]
    expected = compare_many([Run(runs_root / name) for name in DEMOS])
    np.testing.assert_allclose(np.array(cka["z"]), expected["cka"])
    assert cka["x"] == DEMOS
    overlap = chart(at, "k-NN overlap")["data"][0]
    np.testing.assert_allclose(np.array(overlap["z"]), expected["knn_overlap"])

    frame = at.dataframe[1].value
    first, second = (json.loads((runs_root / name / "eval.json").read_text())["per_class_knn_top1"] for name in DEMOS[:2])
    difference = frame[f"{DEMOS[1]} − {DEMOS[0]}"].tolist()
    np.testing.assert_allclose(difference, np.round(np.array(second) - np.array(first), 4))
    names = json.loads((runs_root / DEMOS[0] / "embeddings" / "class_names.json").read_text())
    assert frame["class"].tolist() == names

    loss = chart(at, "training loss")
    assert {trace["name"] for trace in loss["data"]} >= {"demo-simclr-shapes", "demo-supervised-shapes"}
    knn = chart(at, "held-out kNN top-1")
    assert {trace["name"] for trace in knn["data"]} == set(DEMOS)
    assert [b.proto.label for b in at.get("download_button")] == ["Comparison as HTML (opens offline)", "Scores as CSV"]


def test_stored_factor_and_layer_probes_are_drawn_per_run(runs_root, tmp_path, monkeypatch):
    at = open_compare(DEMOS)
    bars = chart(at, "known factors")["data"]
    assert [trace["name"] for trace in bars] == DEMOS
    for trace, name in zip(bars, DEMOS):
        stored = json.loads((runs_root / name / "analysis" / "factors.json").read_text())["factors"]
        assert trace["x"] == [f["name"] for f in stored] and trace["y"] == [f["score"] for f in stored]
    curves = chart(at, "linear probe at each depth")["data"]
    stored = json.loads((runs_root / DEMOS[1] / "analysis" / "layers.json").read_text())["layers"]
    assert curves[1]["y"] == [layer["linear_top1"] for layer in stored]

    copy = tmp_path / "runs"  # the module's runs stay as they are
    shutil.copytree(runs_root, copy)
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(copy))
    shutil.rmtree(copy / DEMOS[2] / "analysis")  # a run without them is named, the others still drawn
    at = open_compare(DEMOS)
    assert [trace["name"] for trace in chart(at, "known factors")["data"]] == DEMOS[:2]
    assert any(f"No factor or layer-wise probe stored for {DEMOS[2]}" in c for c in texts(at.caption))


def test_maps_are_aligned_and_a_selection_is_highlighted_on_the_others(runs_root):
    at = open_compare(DEMOS[:2])
    assert not [spec for spec in charts(at).values() if spec["data"][0]["type"] == "scattergl"]  # no Plotly map
    aligned = aligned_maps([Run(runs_root / name) for name in DEMOS[:2]])
    data = load_explore_data(Run(runs_root / DEMOS[0]))
    for i in range(2):  # every point of each run's aligned map, coloured by label
        block = decode(map_block(at, i))
        np.testing.assert_array_equal(np.stack([block.x, block.y], axis=1), aligned[i][0][block.rows])
        legend = map_args(at, i)["legend"]
        assert legend["name"] == "label"
        assert [legend["names"][c] for c in block.colour] == [data.label_name(r) for r in block.rows]
        assert decode_rows(map_bytes(at, "highlight", i)).size == 0  # nothing selected yet

    rows = list(range(100, 125))  # a lasso on the first map, as the browser sends it
    select_on_map(at, rows, index=0)
    for i in range(2):  # the second map highlights them; the first keeps them selected
        assert decode_rows(map_bytes(at, "highlight", i)).tolist() == rows
        # The browser renders the map again only for new JSON arguments: the rows' checksum is one.
        assert map_args(at, i)["highlight_crc"] == zlib.crc32(map_bytes(at, "highlight", i))
    assert any("Selection: 25 images" in m for m in texts(at.markdown))
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions[:12] == [f"{data.ids[r]} · {data.label_name(r)}" for r in rows[:12]]

    select_on_map(at, [7], index=1)  # a click on the second map: the first follows
    assert decode_rows(map_bytes(at, "highlight", 0)).tolist() == [7]
    assert any(f"Selection: 1 images** on the map of {DEMOS[1]}" in m for m in texts(at.markdown))
    select_on_map(at, [], index=0)  # clearing on a map that did not make the selection keeps it
    assert decode_rows(map_bytes(at, "highlight", 0)).tolist() == [7]
    select_on_map(at, [], index=1)  # clearing it where it was made clears it everywhere
    assert all(decode_rows(map_bytes(at, "highlight", i)).size == 0 for i in range(2))
    assert not any("Selection:" in m for m in texts(at.markdown))

    at.selectbox(key="compare_colour").select("split").run()
    split = decode(map_block(at, 1))
    assert map_args(at, 1)["legend"]["name"] == "split"
    assert [map_args(at, 1)["legend"]["names"][c] for c in split.colour] == data.splits[split.rows].tolist()


def test_a_run_over_other_images_is_left_out_with_the_reason(runs_root, tmp_path, monkeypatch):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    other = root / "demo-other-images"
    shutil.copytree(root / DEMOS[2], other)
    ids_file = other / "embeddings" / "test_ids.json"
    ids_file.write_text(json.dumps(list(reversed(json.loads(ids_file.read_text())))))
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(root))
    at = open_compare([DEMOS[0], "demo-other-images", DEMOS[1]])
    assert any("demo-other-images did not embed the same images" in w for w in texts(at.warning)), texts(at.warning)
    assert at.multiselect(key="compare_runs").value == [DEMOS[0], DEMOS[1]]
    assert "demo-other-images" not in at.multiselect(key="compare_runs").options
    assert RunStore(root).get("demo-other-images")  # still there, only not offered


def test_a_run_without_its_map_is_left_out_with_the_reason_the_cli_gives(runs_root, tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    shutil.copytree(runs_root, root)
    shutil.rmtree(root / DEMOS[2] / "projection")
    reason = comparable(Run(root / DEMOS[2]))
    assert reason == f"run {DEMOS[2]} has no map yet: run `ssl-explorer project {DEMOS[2]}`"
    monkeypatch.setenv("SSL_EXPLORER_RUNS", str(root))
    at = open_compare([DEMOS[0], DEMOS[2]])
    assert f"The address names run '{DEMOS[2]}', which cannot be compared: {reason}" in texts(at.error)
    assert reason[:1].upper() + reason[1:] in texts(at.caption)  # under "1 run cannot be compared yet"
    assert DEMOS[2] not in at.multiselect(key="compare_runs").options

    out = tmp_path / "compare.html"
    assert main(["export", DEMOS[0], DEMOS[2], "--out", str(out), "--runs-dir", str(root)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {reason}" and not out.exists()
