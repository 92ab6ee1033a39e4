"""Several runs compared (aligned maps, CKA and overlap matrices, scores) and exported as a
standalone HTML page or a CSV, from Python and from `ssl-explorer export`."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from ssl_core.cli import main
from ssl_core.analyses.compare import align_map, aligned_maps, best_of, check_comparable, compare_many, run_scores
from ssl_core.analyses.export import IDENTITY_COLUMNS, SCORE_COLUMNS, comparison_html, map_html, metrics_csv
from ssl_core.steps.projection import PCA_FILE, project_pca
from ssl_core.store.atomic import atomic_write_json
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run, set_display_name
from tiny_runs import embedded_run

DEMOS = ["demo-simclr-shapes", "demo-supervised-shapes", "demo-random-shapes"]
THUMBNAIL = re.compile(r'"iVBORw0KGgo')  # a base64 PNG as an element of the page's THUMBS array


@pytest.fixture
def demo_store(tmp_path, demo_runs) -> RunStore:
    """The bundled demo runs, copied (without checkpoints) so that tests may write into them."""
    root = tmp_path / "demos"
    for name in DEMOS:
        shutil.copytree(demo_runs / name, root / name, ignore=shutil.ignore_patterns("checkpoint.pt"))
    return RunStore(root)


def mapped_run(store: RunStore, seed: int, test_size: int = 40) -> Run:
    """A run of synthetic embeddings over 120 + `test_size` shapes images, with its PCA map."""
    run = embedded_run(store, train_size=120, test_size=test_size, dim=16, seed=seed)
    vectors = np.concatenate([np.load(run.embeddings_dir / f"{s}.npy") for s in ("train", "test")])
    run.projection_dir.mkdir()
    np.save(run.projection_dir / PCA_FILE, project_pca(vectors.astype(np.float32)))
    return run


def test_procrustes_recovers_a_rotation_scale_and_shift():
    target = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    angle = 1.1
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 3.7 * target @ rotation + np.array([5.0, -2.0])
    np.testing.assert_allclose(align_map(moved, target), target, atol=1e-4)
    mirrored = target * np.array([-1.0, 1.0]) * 0.2  # a mirror image is the same map
    np.testing.assert_allclose(align_map(mirrored, target), target, atol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        align_map(target[:10], target)


def test_a_run_aligned_with_itself_is_its_map_and_runs_must_hold_the_same_images(store):
    a, b = mapped_run(store, 0), mapped_run(store, 1)
    own = np.load(a.projection_dir / PCA_FILE)
    maps = aligned_maps([a, a])
    np.testing.assert_allclose(maps[1][0], own, atol=1e-5)
    np.testing.assert_array_equal(maps[0][0], own)
    assert maps[0][1] == "pca"
    check_comparable([a, b])  # same images, other vectors: comparable
    other = mapped_run(store, 0, test_size=30)  # ready to compare, but over other images
    with pytest.raises(ValueError, match=f"{other.id} did not embed the same images"):
        check_comparable([a, other])


def test_compare_many_is_symmetric_with_ones_on_the_diagonal(store):
    runs = [mapped_run(store, seed) for seed in (0, 1, 2)]
    result = compare_many(runs, k=5)
    for name in ("cka", "knn_overlap"):
        matrix = np.array(result[name])
        assert matrix.shape == (3, 3)
        np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-4)
        np.testing.assert_allclose(matrix, matrix.T)
        assert (matrix[~np.eye(3, dtype=bool)] < 0.99).all(), f"different seeds should differ: {matrix}"
    assert result["runs"] == [r.id for r in runs] and result["images"] == 40


def test_best_of_marks_ties_and_skips_unranked_scores():
    assert best_of([0.2, 0.5, None, 0.5], "higher") == {1, 3}
    assert best_of([0.2, 0.5], "lower") == {0}
    assert best_of([0.2, 0.5], None) == set()
    assert best_of([0.2, None], "higher") == set()  # nothing to compare against


def test_csv_has_one_row_per_run_with_its_stored_scores(demo_store):
    runs = [demo_store.get(name) for name in DEMOS]
    for run in runs:  # only the analyses written here
        shutil.rmtree(run.analysis_dir, ignore_errors=True)
    set_display_name(runs[0], "contrastive, 30 epochs")
    runs[1].analysis_dir.mkdir()
    atomic_write_json(runs[1].analysis_dir / "finetune.json",
                      {"modes": [{"mode": "full", "top1": 0.81}, {"mode": "last", "top1": 0.77}], "seconds": 12.5})
    rows = list(csv.DictReader(io.StringIO(metrics_csv(runs))))
    assert [r["run_id"] for r in rows] == DEMOS
    header = list(rows[0])
    assert header[:len(IDENTITY_COLUMNS) + len(SCORE_COLUMNS)] == [*IDENTITY_COLUMNS, *SCORE_COLUMNS]
    for run, row in zip(runs, rows):
        scores = run.read_eval()
        for key, value in scores.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert float(row[key]) == pytest.approx(value), (run.id, key)
        assert row["method"] == run.config.method["name"] and row["epochs"] == str(run.config.train.epochs)
        speeds = [m["images_per_s"] for m in run.read_metrics() if "images_per_s" in m]
        assert row["images_per_s"] == (f"{np.mean(speeds):.1f}" if speeds else "")
    assert rows[0]["display_name"] == "contrastive, 30 epochs"
    assert rows[1]["finetune_full_top1"] == "0.81" and rows[1]["finetune_last_top1"] == "0.77"
    assert rows[1]["finetune_seconds"] == "12.5"
    assert rows[0]["finetune_full_top1"] == ""  # a score the run lacks is an empty cell


def standalone(page: str) -> None:
    """The page opens offline: plotly.js inside, no script fetched from anywhere."""
    assert page.startswith("<!DOCTYPE html>")
    assert get_plotlyjs() in page
    assert re.search(r"<script[^>]+src=[\"']?(https?:)?//", page) is None


def test_map_html_is_standalone_with_every_points_image(store):
    run = mapped_run(store, 0)
    page = map_html(run)
    standalone(page)
    assert len(THUMBNAIL.findall(page)) == 160
    assert run.id in page and "simclr" in page and "shapes" in page
    assert "plotly_hover" in page and "showThumbnails(document.getElementById(" in page


def test_comparison_html_is_standalone_with_maps_matrices_and_images(store):
    runs = [mapped_run(store, seed) for seed in (0, 1, 2)]
    page = comparison_html(runs)
    standalone(page)
    assert len(THUMBNAIL.findall(page)) == 160  # the runs share their images: stored once
    plots = re.findall(r'<div id="(\w+)" class="plotly-graph-div"', page)
    assert plots == ["map0", "map1", "map2", "cka", "overlap"]
    assert page.count("showThumbnails(document.getElementById(") == 3  # on the maps, not the matrices
    assert all(run.id in page for run in runs)
    with pytest.raises(ValueError, match="2 to 4 runs"):
        comparison_html(runs[:1])


def test_cli_writes_html_and_csv_and_refuses_bad_requests(store, capsys):
    a, b = mapped_run(store, 0), mapped_run(store, 1)
    root = ["--runs-dir", str(store.root)]
    out = store.root.parent / "out"
    assert main(["export", a.id, "--out", str(out / "map.html"), *root]) == 0
    assert len(THUMBNAIL.findall((out / "map.html").read_text())) == 160
    assert f"wrote {out / 'map.html'} (map html of {a.id}, " in capsys.readouterr().out
    assert main(["export", a.id, b.id, "--out", str(out / "both.html"), *root]) == 0
    assert re.findall(r'<div id="(\w+)" class="plotly-graph-div"', (out / "both.html").read_text()) == [
        "map0", "map1", "cka", "overlap"]
    assert main(["export", a.id, b.id, "--out", str(out / "scores.csv"), *root]) == 0
    assert [r["run_id"] for r in csv.DictReader((out / "scores.csv").open())] == [a.id, b.id]
    assert "scores.csv (csv of" in capsys.readouterr().out

    assert main(["export", a.id, "--out", str(out / "map.pdf"), *root]) == 2
    assert "unknown export format '.pdf'" in capsys.readouterr().err and not (out / "map.pdf").exists()
    assert main(["export", "no-such-run", "--out", str(out / "x.csv"), *root]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
    other = mapped_run(store, 0, test_size=30)  # ready to compare, but over other images
    assert main(["export", a.id, other.id, "--out", str(out / "x.html"), *root]) == 2
    assert "did not embed the same images" in capsys.readouterr().err
    shutil.rmtree(b.projection_dir)
    assert main(["export", b.id, "--out", str(out / "x.html"), *root]) == 2
    assert f"run {b.id} has no map yet" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["both.html", "map.html", "scores.csv"]  # nothing half-written


def test_scores_include_analysis_results(demo_store):
    run = demo_store.get(DEMOS[0])
    shutil.rmtree(run.analysis_dir, ignore_errors=True)
    assert "finetune_full_top1" not in run_scores(run)
    run.analysis_dir.mkdir()
    atomic_write_json(run.analysis_dir / "finetune.json", {"modes": [{"mode": "full", "top1": 0.5}]})
    atomic_write_json(run.analysis_dir / "layers.json", {"layers": [{"name": "block1", "linear_top1": 0.2},
                                                                   {"name": "block2", "linear_top1": 0.3}]})
    atomic_write_json(run.analysis_dir / "factors.json", {"factors": [{"name": "pos_x", "score": 0.7}]})
    (run.analysis_dir / "clusters.json").write_text("{not json")  # being rewritten: skipped
    scores = run_scores(run)
    assert scores["finetune_full_top1"] == 0.5
    assert (scores["layer_block1_top1"], scores["layer_block2_top1"], scores["factor_pos_x"]) == (0.2, 0.3, 0.7)
    assert not any(key.startswith("kmeans_") for key in scores)
    atomic_write_json(run.analysis_dir / "clusters.json", {"kmeans": {"purity": 0.4, "nmi": 0.3, "ari": None}})
    scores = run_scores(run)
    assert (scores["kmeans_purity"], scores["kmeans_nmi"]) == (0.4, 0.3) and "kmeans_ari" not in scores
    assert json.loads((run.analysis_dir / "finetune.json").read_text())  # read, not changed
