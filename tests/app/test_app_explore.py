"""The Explore page on a finished run: the map, neighbours of a row, a selection's images and
label counts, search by upload, and clear messages for bad links and incomplete runs."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections import Counter

import numpy as np
from PIL import Image

from app_driver import open_page, rendered, select_on_map, texts
from ssl_core.cli import main
from ssl_core.steps.browsing import load_explore_data, run_images
from ssl_core.steps.index import load_search
from ssl_core.steps.readiness import explorable, searchable


def decoded(values) -> list:
    """A figure array as plotly's JSON holds it: a list, or {"dtype", "bdata"} (numpy input)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def image_captions(at) -> list[str]:
    return [rendered(c) for image in at.get("image") for c in image.captions]


def neighbour_captions(at) -> list[str]:
    """Captions of the images under a distance ('… · d=0.123 · …'), in the order shown."""
    return [c for c in image_captions(at) if " · d=" in c]


def test_the_map_is_a_webgl_scatter_of_every_point(run):
    at = open_page("explore", {"run": run.id})
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert {trace["type"] for trace in spec["data"]} == {"scattergl"}
    rows = sorted(r for trace in spec["data"] for r in decoded(trace["customdata"]))
    assert rows == list(range(224))  # 160 train + 64 test, none thinned
    assert len(spec["data"]) == len(set(load_explore_data(run).labels))  # one trace per label
    assert any("224 images (160 train, 64 test)" in c for c in texts(at.caption))
    assert "Nearest neighbours" in texts(at.subheader)


def test_colour_by_a_continuous_factor_uses_a_colour_scale(run):
    at = open_page("explore", {"run": run.id})
    at.selectbox(key="explore_colour").select("scale").run()
    (trace,) = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert trace["marker"]["showscale"] is True


def test_a_row_shows_its_nearest_neighbours_from_the_index(run):
    at = open_page("explore", {"run": run.id})
    at.number_input(key="explore_row").set_value(17)
    at.slider(key="explore_k").set_value(5).run()
    expected_rows, distances = load_search(run).of_row(17, 5)
    data = load_explore_data(run)
    captions = neighbour_captions(at)
    assert [c.split(" · ")[0] for c in captions] == [data.ids[r] for r in expected_rows]
    assert [c.split(" · ")[1] for c in captions] == [f"d={d:.3f}" for d in distances]
    same = int((data.labels[expected_rows] == data.labels[17]).sum())
    assert any(f"{same} of 5 share its label" in c for c in texts(at.caption))


def test_clicking_a_point_makes_it_the_query(run):
    at = open_page("explore", {"run": run.id})
    select_on_map(at, [42])
    assert at.number_input(key="explore_row").value == 42
    expected_rows, _ = load_search(run).of_row(42, 8)
    ids = load_explore_data(run).ids
    assert [c.split(" · ")[0] for c in neighbour_captions(at)] == [ids[r] for r in expected_rows]
    assert not any(s.startswith("Selection") for s in texts(at.subheader))  # one point is no group


def test_a_selection_shows_its_images_capped_with_label_counts(run):
    at = open_page("explore", {"run": run.id})
    rows = list(range(100, 170))  # 70 points, more than the grid shows
    select_on_map(at, rows)
    assert "Selection: 70 images" in texts(at.subheader)
    data = load_explore_data(run)
    counts = at.dataframe[0].value
    assert dict(zip(counts["label"], counts["images"])) == Counter(data.label_name(r) for r in rows)
    grid = [c for c in image_captions(at) if " · d=" not in c and c]
    assert grid == [f"{data.ids[r]} · {data.label_name(r)}" for r in rows[:60]]
    assert any("showing the first 60 of 70" in c for c in texts(at.caption))


def test_upload_of_a_non_image_is_refused_with_the_reason(run):
    at = open_page("explore", {"run": run.id})
    at.file_uploader(key="explore_upload").upload("notes.png", b"this is not a picture", "image/png").run()
    assert not at.exception
    assert any(e.startswith("notes.png: cannot use this file") for e in texts(at.error)), texts(at.error)


def test_upload_of_one_of_the_runs_images_finds_that_image_first(run):
    row = 30
    buffer = io.BytesIO()
    Image.fromarray(run_images(run)[row]).save(buffer, format="PNG")
    at = open_page("explore", {"run": run.id})
    at.file_uploader(key="explore_upload").upload("mine.png", buffer.getvalue(), "image/png").run()
    assert not at.error, texts(at.error)
    hits = [c for c in neighbour_captions(at)][-8:]  # the upload's grid comes after the row's
    first_id, first_distance = hits[0].split(" · ")[:2]
    assert first_id == load_explore_data(run).ids[row]
    assert float(first_distance.removeprefix("d=")) < 1e-3


def test_a_bad_run_id_in_the_address_is_a_clear_error(run):
    at = open_page("explore", {"run": "../../etc"})
    assert any("invalid run id '../../etc'" in e for e in texts(at.error)), texts(at.error)
    assert not at.get("plotly_chart")  # no other run shown in its place
    at = open_page("explore", {"run": "no-such-run"})
    assert any("no-such-run" in e and "no such run" in e for e in texts(at.error)), texts(at.error)


def capitalised(reason: str) -> str:
    return reason[:1].upper() + reason[1:]


def test_a_run_without_its_map_says_which_command_makes_it_on_the_page_and_in_the_cli(run, tmp_path, capsys):
    shutil.rmtree(run.projection_dir)
    reason = explorable(run)
    assert reason == f"run {run.id} has no map yet: run `ssl-explorer project {run.id}`"
    at = open_page("explore", {"run": run.id})
    assert texts(at.warning) == [capitalised(reason)]
    assert not at.get("plotly_chart")
    out = tmp_path / "map.html"
    assert main(["export", run.id, "--out", str(out), "--runs-dir", str(run.path.parent)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {reason}" and not out.exists()  # after a progress bar


def test_a_run_still_training_is_not_mapped_yet_on_the_page_nor_in_the_cli(run, tmp_path, capsys):
    run.set_status("running", stage="train")  # this process stands in for the job
    reason = explorable(run)
    assert reason.startswith(f"run {run.id} is still running (train): its embeddings and map appear")
    at = open_page("explore", {"run": run.id})
    assert texts(at.warning) == [capitalised(reason)]
    assert main(["export", run.id, "--out", str(tmp_path / "map.html"), "--runs-dir", str(run.path.parent)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"error: {reason}"


def test_a_run_without_its_index_shows_the_map_and_says_how_to_search_as_the_cli_does(run, capsys):
    run.index_path.unlink()
    reason = searchable(run)
    assert reason == f"run {run.id} has no search index yet: run `ssl-explorer index {run.id}`"
    at = open_page("explore", {"run": run.id})
    assert at.get("plotly_chart")
    assert texts(at.warning) == [f"No neighbour search for this run: {reason}"]
    assert main(["neighbors", run.id, "--index", "3", "--runs-dir", str(run.path.parent)]) == 2
    assert capsys.readouterr().err == f"error: {reason}\n"


def map_points(at) -> tuple[str, dict[int, tuple[float, float]]]:
    """(the map's title, {row: (x, y)}) as the page drew it."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    points = {}
    for trace in spec["data"]:
        for r, x, y in zip(decoded(trace["customdata"]), decoded(trace["x"]), decoded(trace["y"])):
            points[int(r)] = (x, y)
    return spec["layout"]["title"]["text"], points


def test_while_the_job_computes_umap_the_pca_map_is_shown_then_replaced(run):
    umap_file = run.projection_dir / "umap_2d.npy"
    umap = np.load(umap_file)
    umap_file.unlink()
    run.set_status("running", stage="project")  # this process stands in for the job
    at = open_page("explore", {"run": run.id})
    title, points = map_points(at)
    pca = np.load(run.projection_dir / "pca_2d.npy")
    assert title == "PCA" and len(points) == 224
    np.testing.assert_allclose(points[17], pca[17], rtol=1e-6)
    assert any("PCA map" in i and "replaces this one" in i for i in texts(at.info)), texts(at.info)
    assert "Nearest neighbours" in texts(at.subheader)

    np.save(umap_file, umap)  # the job writes the UMAP map; the page's poll reruns it
    at.run()
    title, points = map_points(at)
    assert title == "UMAP" and not any("PCA map" in i for i in texts(at.info))
    np.testing.assert_allclose(points[17], umap[17], rtol=1e-6)


def test_a_finished_run_with_only_its_pca_map_says_how_to_make_the_umap_one(run):
    (run.projection_dir / "umap_2d.npy").unlink()
    at = open_page("explore", {"run": run.id})
    assert map_points(at)[0] == "PCA"
    assert any(f"`ssl-explorer project {run.id}`" in i for i in texts(at.info)), texts(at.info)
