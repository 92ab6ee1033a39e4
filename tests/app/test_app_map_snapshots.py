"""The map as it learns in the app and the export: the Train page shows a run's newest snapshot,
Explore plays them all (coloured by any of its columns), the HTML export can carry them; a run
without snapshots gets a note and a corrupt snapshot an error naming its file. The snapshots are
written here as training writes them (steps.map_snapshots), from made-up layouts: training them is
tests/steps/test_map_snapshots.py's."""

from __future__ import annotations

import base64
import json

import numpy as np

from app_driver import open_page, texts
from ssl_core.analyses.export import map_html
from ssl_core.analyses.map_animation import NO_SNAPSHOTS
from ssl_core.cli import main
from ssl_core.steps.browsing import load_explore_data
from ssl_core.steps.map_snapshots import start_snapshots, store_snapshot
from ssl_core.store import files

TEST_ROWS = 64  # the test images of the app fixtures' run


def add_snapshots(run, epochs: int) -> list[np.ndarray]:
    """`epochs` snapshots of the run's test images, epoch t at x = t + row / 100; their layouts."""
    data = load_explore_data(run)
    test = np.flatnonzero(data.splits == "test")
    start_snapshots(run, [data.ids[r] for r in test], data.labels[test], data.class_names)
    maps = [np.stack([t + np.arange(len(test)) / 100, np.sin(np.arange(len(test)))], axis=1).astype(np.float32)
            for t in range(1, epochs + 1)]
    for t, coords in enumerate(maps, 1):
        store_snapshot(run, step=5 * t, epoch=t, coords=coords, seconds=0.1)
    return maps


def decoded(values) -> list:
    """A figure array as plotly's JSON holds it: a list, or {"dtype", "bdata"} (numpy input)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def chart(at, key: str) -> dict | None:
    found = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if key in c.proto.id]
    return found[0] if found else None


def test_the_train_page_shows_the_newest_snapshot_and_a_note_before_the_first(run):
    at = open_page("train", {"run": run.id})
    assert chart(at, "train_map_snapshot") is None
    assert any("no snapshot yet" in c for c in texts(at.caption))
    maps = add_snapshots(run, 2)
    at = open_page("train", {"run": run.id})
    figure = chart(at, "train_map_snapshot")
    assert "epoch 2 (step 10)" in figure["layout"]["title"]["text"]
    xs = sorted(x for trace in figure["data"] for x in decoded(trace["x"]))
    np.testing.assert_allclose(xs, sorted(maps[1][:, 0]), rtol=1e-6)  # the newest, every test image


def test_explore_plays_the_snapshots_with_an_epoch_slider_coloured_by_any_column(run):
    add_snapshots(run, 3)
    at = open_page("explore", {"run": run.id})
    assert chart(at, "explore_animation") is None  # off until asked: it sends every frame
    at.toggle(key="explore_learning").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    figure = chart(at, "explore_animation")
    assert [f["name"] for f in figure["frames"]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert [s["label"] for s in figure["layout"]["sliders"][0]["steps"]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert [b["label"] for b in figure["layout"]["updatemenus"][0]["buttons"]] == ["Play", "Pause"]
    data = load_explore_data(run)
    test_labels = {data.label_name(r) for r in np.flatnonzero(data.splits == "test")}
    assert {t["name"] for t in figure["data"]} == test_labels  # one trace per label: the legend
    first = [x for trace in figure["frames"][0]["data"] for x in decoded(trace["x"])]
    assert len(first) == TEST_ROWS and min(first) >= 1 and max(first) < 2  # epoch 1's layout

    at.selectbox(key="explore_colour").select("scale").run()  # a continuous factor: a colour scale
    figure = chart(at, "explore_animation")
    assert len(figure["data"]) == 1 and figure["data"][0]["marker"]["colorscale"]
    assert len(decoded(figure["data"][0]["marker"]["color"])) == TEST_ROWS
    assert any("watch the classes separate" in c for c in texts(at.caption))


def test_explore_notes_a_run_without_snapshots_and_names_a_corrupt_snapshot_file(run):
    at = open_page("explore", {"run": run.id})
    at.toggle(key="explore_learning").set_value(True).run()
    assert NO_SNAPSHOTS in texts(at.info)
    add_snapshots(run, 2)
    (run.map_snapshots_dir / files.snapshot(10)).write_bytes(b"edited by hand")
    at.run()
    assert not at.exception
    assert any(f"map_snapshots/{files.snapshot(10)} is not a readable .npy file" in e for e in texts(at.error))


def test_the_html_export_can_carry_the_animation(run, tmp_path):
    plain = map_html(run)
    assert "map-animation" not in plain
    assert NO_SNAPSHOTS in map_html(run, animation=True)  # asked for, but the run has none: said so
    add_snapshots(run, 2)
    out = tmp_path / "map.html"
    assert main(["export", run.id, "--out", str(out), "--animation", "--runs-dir", str(run.path.parent)]) == 0
    page = out.read_text()
    assert 'id="map-animation"' in page and '"epoch 2"' in page
    assert main(["export", run.id, "--out", str(tmp_path / "s.csv"), "--animation",
                 "--runs-dir", str(run.path.parent)]) == 2  # the animation goes with one run's map only
