"""The Explore page on a finished run: the map, neighbours of a row, a selection's images and
label counts, search by upload, and clear messages for bad links and incomplete runs."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import numpy as np
from PIL import Image

from app_driver import map_args, map_block, open_page, rendered, select_on_map, texts
from ssl_core.cli import main
from ssl_core.steps.browsing import load_explore_data, run_images
from ssl_core.steps.index import load_search
from ssl_core.steps.readiness import explorable, searchable
from widgets.scatter_map import sprites
from widgets.scatter_map.payload import decode


def image_captions(at) -> list[str]:
    return [rendered(c) for image in at.get("image") for c in image.captions]


def neighbour_captions(at) -> list[str]:
    """Captions of the images under a distance ('… · d=0.123 · …'), in the order shown."""
    return [c for c in image_captions(at) if " · d=" in c]


def test_the_map_draws_every_point_from_one_binary_block(run):
    at = open_page("explore", {"run": run.id})
    block = decode(map_block(at))
    assert sorted(block.rows.tolist()) == list(range(224))  # 160 train + 64 test, none thinned
    data = load_explore_data(run)
    legend = map_args(at)["legend"]
    assert legend["name"] == "label" and len(legend["names"]) == len(set(data.labels))
    assert [legend["names"][c] for c in block.colour] == [data.label_name(r) for r in block.rows]
    assert list(map_args(at)["sheets"]["urls"]) == ["0"]  # one sprite sheet holds all 224 images
    assert any("224 images (160 train, 64 test)" in c for c in texts(at.caption))
    assert "Nearest neighbours" in texts(at.subheader)


def test_the_map_sends_the_same_arguments_on_every_rerun(run):
    at = open_page("explore", {"run": run.id})
    first = at.get("component_instance")[0].proto.SerializeToString()
    at.number_input(key="explore_row").set_value(5).run()
    assert at.get("component_instance")[0].proto.SerializeToString() == first  # the browser's cache holds it


def test_colour_by_a_continuous_factor_uses_a_colour_scale(run):
    at = open_page("explore", {"run": run.id})
    tag = map_args(at)["map_tag"]
    at.selectbox(key="explore_colour").select("scale").run()
    assert map_args(at)["legend"]["kind"] == "continuous" and decode(map_block(at)).continuous
    assert map_args(at)["map_tag"] == tag  # the same points: the view and the selection stay


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


def test_asking_for_sprite_sheets_is_not_a_new_click(run):
    at = open_page("explore", {"run": run.id})
    select_on_map(at, [42])
    at.number_input(key="explore_row").set_value(7).run()
    select_on_map(at, [42], sheets=[0], new=False)  # the same selection, sent again with a request
    assert at.number_input(key="explore_row").value == 7
    select_on_map(at, [42])  # the same point clicked again
    assert at.number_input(key="explore_row").value == 42


def test_a_map_too_large_to_register_every_sheet_gets_the_sheets_asked_for_and_its_block_once(run, monkeypatch):
    monkeypatch.setattr(sprites, "EAGER_SHEETS", 0)  # as if the run had a million images
    at = open_page("explore", {"run": run.id})
    assert map_args(at)["sheets"]["ask"] and map_args(at)["sheets"]["urls"] == {}
    assert len(map_block(at)) > 0
    select_on_map(at, [], sheets=[0], new=False)  # a hover asks for sheet 0; the browser holds no block yet
    assert list(map_args(at)["sheets"]["urls"]) == ["0"] and len(map_block(at)) > 0
    held = int(map_args(at)["digest"][:8], 16)
    select_on_map(at, [42], sheets=[0], held=held)  # a click, from a browser holding the block
    assert map_block(at) == b"" and list(map_args(at)["sheets"]["urls"]) == ["0"]  # not sent again
    assert at.number_input(key="explore_row").value == 42
    at.selectbox(key="explore_colour").select("split").run()
    assert decode(map_block(at)).rows.size == 224  # another colouring: another block


def test_a_selection_left_from_another_run_is_ignored(run, runs_dir):
    at = open_page("explore", {"run": run.id})
    select_on_map(at, list(range(100, 170)))
    assert "Selection: 70 images" in texts(at.subheader)
    np.save(run.projection_dir / "umap_2d.npy", np.load(run.projection_dir / "umap_2d.npy")[::-1].copy())
    at.run()  # the map changed under the selection: its rows no longer mean those points
    assert not any(s.startswith("Selection") for s in texts(at.subheader))


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
    assert not at.get("component_instance")  # no other run shown in its place
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
    assert not at.get("component_instance")
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
    assert at.get("component_instance")
    assert texts(at.warning) == [f"No neighbour search for this run: {reason}"]
    assert main(["neighbors", run.id, "--index", "3", "--runs-dir", str(run.path.parent)]) == 2
    assert capsys.readouterr().err == f"error: {reason}\n"


def map_points(at) -> tuple[str, dict[int, tuple[float, float]]]:
    """(the map's title, {row: (x, y)}) as the page sends them to the browser."""
    block = decode(map_block(at))
    return map_args(at)["title"], {int(r): (x, y) for r, x, y in zip(block.rows, block.x, block.y)}


def test_while_the_job_computes_umap_the_pca_map_is_shown_then_replaced(run):
    umap_file = run.projection_dir / "umap_2d.npy"
    umap = np.load(umap_file)
    umap_file.unlink()
    run.set_status("running", stage="project")  # this process stands in for the job
    at = open_page("explore", {"run": run.id})
    title, points = map_points(at)
    pca = np.load(run.projection_dir / "pca_2d.npy")
    assert title == "PCA · 224 images" and len(points) == 224
    np.testing.assert_allclose(points[17], pca[17], rtol=1e-6)
    assert any("PCA map" in i and "replaces this one" in i for i in texts(at.info)), texts(at.info)
    assert "Nearest neighbours" in texts(at.subheader)

    np.save(umap_file, umap)  # the job writes the UMAP map; the page's poll reruns it
    at.run()
    title, points = map_points(at)
    assert title == "UMAP · 224 images" and not any("PCA map" in i for i in texts(at.info))
    np.testing.assert_allclose(points[17], umap[17], rtol=1e-6)


def test_a_finished_run_with_only_its_pca_map_says_how_to_make_the_umap_one(run):
    (run.projection_dir / "umap_2d.npy").unlink()
    at = open_page("explore", {"run": run.id})
    assert map_points(at)[0] == "PCA · 224 images"
    assert any(f"`ssl-explorer project {run.id}`" in i for i in texts(at.info)), texts(at.info)


def test_a_map_with_nan_coordinates_is_refused_by_name_and_the_rest_of_the_page_works(run):
    umap = np.load(run.projection_dir / "umap_2d.npy")
    umap[[3, 17]] = np.nan
    np.save(run.projection_dir / "umap_2d.npy", umap)
    at = open_page("explore", {"run": run.id})
    assert texts(at.error) == [f"Cannot draw the map: run {run.id}: the map projection/umap_2d.npy has 2 points "
                               f"without finite coordinates (rows 3, 17); run `ssl-explorer project {run.id}` again"]
    assert not at.get("component_instance")  # never drawn half
    assert "Nearest neighbours" in texts(at.subheader)
