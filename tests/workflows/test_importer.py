"""Importing embeddings made elsewhere: a round trip, every malformed input refused (or named in
a warning) without a half-made run, the CLI, and CKA 1 between a trained run and its imported copy."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ssl_core.data import user_embeddings
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.evaluate import linear_cka
from ssl_core.steps.browsing import load_explore_data, run_images
from ssl_core.steps.index import load_search
from ssl_core.workflows.importer import InvalidImport, import_embeddings
from ssl_core.steps.index import neighbors
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run, get_display_name

PRETRAINED = Path(__file__).resolve().parents[2] / "pretrained" / "demo-simclr-shapes"


def write_images(folder: Path, n: int, seed: int = 0, name: str = "img{:03d}.png") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [name.format(i) for i in range(n)]
    for file in names:
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / file)
    return names


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def nothing_made(store: RunStore) -> bool:
    """No run and no staging folder left behind."""
    return not store.root.exists() or not any(store.root.iterdir())


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """60 images, 8-d vectors, a labels CSV with a class, a number and a category per image."""
    root = tmp_path_factory.mktemp("import")
    names = write_images(root / "images", 60)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(60, 8)).astype(np.float32)
    np.save(root / "vectors.npy", vectors)
    pd.DataFrame({"filename": names, "label": rng.choice(["cat", "dog", "owl"], 60),
                  "brightness": rng.random(60), "camera": rng.choice(["a", "b"], 60)}).to_csv(root / "meta.csv", index=False)
    store = RunStore(root / "runs")
    result = import_embeddings(store, images=root / "images", embeddings=root / "vectors.npy",
                               labels=root / "meta.csv", name="my vectors")
    return store, result, dict(zip(names, vectors)), root


def test_round_trip_stores_the_input_up_to_float16(imported):
    store, result, by_name, _ = imported
    run = result.run
    vectors, labels, ids, splits = load_all_embeddings(run)
    assert sorted(ids) == sorted(by_name) and len(ids) == 60
    expected = np.stack([by_name[i] for i in ids]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(vectors, expected)
    assert (splits == "train").sum() == 48 and list(splits).index("test") == 48  # 80/20, train rows first
    assert "by sorted relative path" in result.notes[0] and result.warnings == []
    [summary] = store.list()
    assert (summary.id, summary.status, summary.method) == (run.id, "finished", "imported")
    assert summary.knn_top1 is not None  # labels: scored like a trained run
    assert get_display_name(run) == "my vectors"


def test_neighbours_of_a_point_equal_a_brute_force_search(imported):
    _, result, by_name, _ = imported
    vectors, _, ids, _ = load_all_embeddings(result.run)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    for row in (0, 17, 59):
        similarity = unit @ unit[row]
        similarity[row] = -np.inf
        expected = np.argsort(-similarity)[:6]
        found = neighbors(result.run, row, k=6)["neighbors"]
        assert [h["row"] for h in found] == expected.tolist()
        assert [h["id"] for h in found] == [ids[r] for r in expected]


def test_the_explore_page_data_has_the_images_and_metadata_colourings(imported):
    _, result, _, root = imported
    data = load_explore_data(result.run)
    assert set(data.factors) == {"brightness", "camera"} and data.factor_levels["camera"] == ("a", "b")
    assert data.class_names == ["cat", "dog", "owl"]
    images = run_images(result.run)
    assert images.shape == (60, 64, 64, 3)
    row = data.ids.index("img007.png")
    original = np.asarray(Image.open(root / "images" / "img007.png").resize((64, 64), Image.Resampling.BILINEAR))
    assert np.abs(images[row].astype(int) - original).max() <= 1
    assert load_search(result.run).vectors.shape == (60, 8)


def test_an_imported_run_cannot_be_embedded_or_trained_and_stays_finished(imported):
    from ssl_core.workflows.pipeline import run_all, run_post_steps

    run = imported[1].run
    with pytest.raises(ValueError, match="imported with its embeddings .* no encoder"):
        run_post_steps(run, ["embed"], log=lambda m: None)
    with pytest.raises(ValueError, match="made by `ssl-explorer import`, not by training"):
        run_all(run, resume=True, log=lambda m: None)
    assert run.read_status()["status"] == "finished"


def test_tables_match_images_by_name_in_any_order(tmp_path):
    """Parquet and CSV vector columns with ids, shuffled; images from a parquet of PNG bytes."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    ids = [f"photo_{i}" for i in range(20)]
    pd.DataFrame({"id": [f"{i}.png" for i in ids], "image": [png_bytes(im) for im in images]}).to_parquet(tmp_path / "images.parquet")
    vectors = rng.normal(size=(20, 5)).astype(np.float32)
    order = rng.permutation(20)
    table = pd.DataFrame({"id": [ids[i] for i in order], "embedding": [vectors[i] for i in order]})
    table.to_parquet(tmp_path / "vectors.parquet")
    table.assign(embedding=[json.dumps(vectors[i].tolist()) for i in order]).to_csv(tmp_path / "vectors.csv", index=False)
    for file in ("vectors.parquet", "vectors.csv"):
        store = RunStore(tmp_path / f"runs-{file}")
        result = import_embeddings(store, images=tmp_path / "images.parquet", embeddings=tmp_path / file)
        stored, _, stored_ids, _ = load_all_embeddings(result.run)
        expected = np.stack([vectors[ids.index(i)] for i in stored_ids]).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(stored, expected)
        assert "by relative path without suffix" in result.notes[0]
        row = stored_ids.index("photo_3")
        np.testing.assert_array_equal(run_images(result.run)[row], np.asarray(Image.fromarray(images[3]).resize((64, 64), Image.Resampling.BILINEAR)))


# -- malformed inputs: a clear error, and nothing made ------------------------------------------
@pytest.fixture
def folder(tmp_path) -> Path:
    write_images(tmp_path / "images", 10)
    return tmp_path


def ids_table(folder: Path, vectors, ids=None, name="vectors.parquet") -> Path:
    ids = ids if ids is not None else [f"img{i:03d}.png" for i in range(len(vectors))]
    pd.DataFrame({"filename": ids, "vector": list(vectors)}).to_parquet(folder / name)
    return folder / name


def refuse(folder: Path, match: str, **inputs) -> None:
    store = RunStore(folder / "runs")
    with pytest.raises(InvalidImport, match=match):
        import_embeddings(store, images=folder / "images", **inputs)
    assert nothing_made(store)


def test_refuses_mismatched_counts(folder):
    np.save(folder / "v.npy", np.ones((9, 4), dtype=np.float32))
    refuse(folder, r"9 embeddings in v.npy but 10 images .* counts must be equal", embeddings=folder / "v.npy")


@pytest.mark.parametrize("shape", [(10,), (10, 2, 2), (10, 0)])
def test_refuses_embeddings_that_are_not_a_matrix(folder, shape):
    np.save(folder / "v.npy", np.ones(shape, dtype=np.float32))
    refuse(folder, r"must be \(N, D\)", embeddings=folder / "v.npy")


def test_refuses_vectors_of_different_lengths_naming_them(folder):
    vectors = [np.ones(4)] * 9 + [np.ones(3)]
    refuse(folder, r"most have 4 numbers, but 1 differ: img009.png \(3\)", embeddings=ids_table(folder, vectors))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_nan_or_infinite_rows_naming_the_file_the_count_and_their_ids(folder, bad):
    vectors = np.ones((10, 4))
    vectors[3, 1] = vectors[7, 0] = bad
    refuse(folder, r"vectors.parquet: 2 embeddings hold NaN or infinite values: img003.png, img007.png; "
                   r".*--skip-invalid", embeddings=ids_table(folder, vectors))
    np.save(folder / "v.npy", vectors.astype(np.float32))
    refuse(folder, r"v.npy: 2 embeddings hold NaN or infinite values: img003.png, img007.png",
           embeddings=folder / "v.npy")


@pytest.mark.parametrize("kind", ["npy", "parquet"])
def test_an_import_read_a_few_rows_at_a_time_stores_every_kept_row(tmp_path, monkeypatch, kind):
    """Chunks of 3 rows: checking, splitting and writing meet every chunk boundary."""
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 3 * 4 * 4)  # 3 rows of 4 numbers
    names = write_images(tmp_path / "images", 40)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(40, 4)).astype(np.float32)
    vectors[[5, 21]] = np.nan
    if kind == "npy":
        embeddings = tmp_path / "v.npy"
        np.save(embeddings, vectors)
    else:
        order = rng.permutation(40)
        embeddings = ids_table(tmp_path, vectors[order], [names[i] for i in order], name="v.parquet")
    result = import_embeddings(RunStore(tmp_path / "runs"), images=tmp_path / "images", embeddings=embeddings,
                               skip_invalid=True)
    stored, _, ids, splits = load_all_embeddings(result.run)
    assert sorted(ids) == sorted(set(names) - {"img005.png", "img021.png"})
    expected = np.stack([vectors[names.index(i)] for i in ids]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(stored, expected)
    assert (splits == "train").sum() == 30 and list(splits).index("test") == 30
    assert any(w.startswith(f"{embeddings.name}: 2 embeddings hold NaN or infinite values: img005.png, "
                            "img021.png: left out") for w in result.warnings), result.warnings


def test_refuses_duplicate_ids(folder):
    ids = [f"img{i:03d}.png" for i in range(9)] + ["img004.png"]
    refuse(folder, r"duplicate ids img004.png", embeddings=ids_table(folder, np.ones((10, 4)), ids))


def test_refuses_ids_that_match_no_image(folder):
    ids = [f"img{i:03d}.png" for i in range(9)] + ["elsewhere.png"]
    refuse(folder, r"1 of 10 embedding ids match no image .*: elsewhere.png", embeddings=ids_table(folder, np.ones((10, 4)), ids))


def test_refuses_unreadable_images_naming_them(folder):
    (folder / "images" / "img004.png").write_bytes(b"not a png")
    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    refuse(folder, r"1 images cannot be read: img004.png \(not an image", embeddings=folder / "v.npy")


def test_refuses_labels_whose_count_does_not_match(folder):
    np.save(folder / "v.npy", np.ones((10, 4), dtype=np.float32))
    pd.DataFrame({"label": ["a"] * 8}).to_csv(folder / "labels.csv", index=False)
    refuse(folder, r"8 rows for 10 embeddings and no id column", embeddings=folder / "v.npy", labels=folder / "labels.csv")


def test_refuses_a_table_without_one_vector_column(folder):
    pd.DataFrame({"filename": ["a"] * 10, "x": range(10)}).to_csv(folder / "v.csv", index=False)
    refuse(folder, r"no column of vectors; there must be exactly one", embeddings=folder / "v.csv")


def test_skip_invalid_leaves_out_bad_rows_with_named_warnings(folder):
    (folder / "images" / "img004.png").write_bytes(b"not a png")
    vectors = np.random.default_rng(0).normal(size=(10, 4))
    vectors[6, 2] = np.nan
    result = import_embeddings(RunStore(folder / "runs"), images=folder / "images",
                               embeddings=ids_table(folder, vectors), skip_invalid=True)
    _, _, ids, _ = load_all_embeddings(result.run)
    assert len(ids) == 8 and "img004.png" not in ids and "img006.png" not in ids
    assert any("NaN or infinite values: img006.png: left out" in w for w in result.warnings)
    assert any("cannot be read: img004.png" in w and "left out" in w for w in result.warnings)


def test_sorted_order_warns_when_numbers_are_not_zero_padded(tmp_path):
    write_images(tmp_path / "images", 12, name="frame{}.png")
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32))
    result = import_embeddings(RunStore(tmp_path / "runs"), images=tmp_path / "images", embeddings=tmp_path / "v.npy")
    assert any("frame10.png at row 2 (not frame2.png)" in w for w in result.warnings), result.warnings


def test_a_failure_while_writing_leaves_no_half_made_run(folder, monkeypatch):
    import ssl_core.workflows.importer as importer

    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importer, "score_and_index", crash)
    store = RunStore(folder / "runs")
    with pytest.raises(RuntimeError, match="disk full"):
        import_embeddings(store, images=folder / "images", embeddings=folder / "v.npy")
    assert nothing_made(store)


def test_a_failed_umap_leaves_a_finished_run_with_a_warning(folder, monkeypatch):
    from ssl_core.workflows import pipeline

    def crash(run, **kwargs):
        raise MemoryError("out of memory")

    monkeypatch.setattr(pipeline, "project_run", crash)  # the map step as the pipeline runs it
    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    result = import_embeddings(RunStore(folder / "runs"), images=folder / "images", embeddings=folder / "v.npy")
    assert result.run.read_status()["status"] == "finished"
    assert any(f"UMAP map failed (MemoryError: out of memory); run `ssl-explorer project {result.run.id}`" in w
               for w in result.warnings)
    assert len(load_search(result.run).vectors) == 10  # search works without a map


# -- the command line -----------------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssl_core.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_import_prints_the_run_id_last_and_refuses_bad_input(folder):
    np.save(folder / "v.npy", np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    runs = folder / "runs"
    done = cli("import", "--images", str(folder / "images"), "--embeddings", str(folder / "v.npy"),
               "--runs-dir", str(runs))
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    assert (runs / run_id / "projection" / "umap_2d.npy").exists()
    assert "matched 10 embeddings to images by sorted relative path" in done.stderr
    listing = cli("runs", "--runs-dir", str(runs)).stdout
    assert run_id in listing and "imported" in listing

    np.save(folder / "short.npy", np.ones((3, 4), dtype=np.float32))
    refused = cli("import", "--images", str(folder / "images"), "--embeddings", str(folder / "short.npy"),
                  "--runs-dir", str(runs))
    assert refused.returncode == 2 and "error: 3 embeddings in short.npy but 10 images" in refused.stderr
    assert [p.name for p in runs.iterdir()] == [run_id]


# -- CKA ---------------------------------------------------------------------------------------
def naive_linear_cka(a: np.ndarray, b: np.ndarray) -> float:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with linear kernels and the centering matrix H."""
    n = len(a)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = a @ a.T, b @ b.T

    def hsic(x, y):
        return np.trace(x @ h @ y @ h)

    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_linear_cka_matches_the_naive_reference_and_is_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 8)), rng.normal(size=(50, 5))
    assert abs(linear_cka(a, b) - naive_linear_cka(a, b)) < 1e-10
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    assert abs(linear_cka(a, 3.0 * a @ rotation + 1.0) - 1.0) < 1e-10
    with pytest.raises(ValueError, match="same N"):
        linear_cka(a, b[:10])


def test_cka_between_a_trained_run_and_its_imported_copy_is_one(tmp_path):
    trained = Run(PRETRAINED)
    vectors, _, ids, _ = load_all_embeddings(trained)
    images = run_images(trained)
    rows = np.r_[0:150, 4000:4050]  # 150 train and 50 test images of the trained run
    pd.DataFrame({"id": [ids[r] for r in rows], "image": [png_bytes(images[r]) for r in rows]}).to_parquet(tmp_path / "images.parquet")
    pd.DataFrame({"id": [ids[r] for r in rows], "vector": list(vectors[rows])}).to_parquet(tmp_path / "vectors.parquet")
    result = import_embeddings(RunStore(tmp_path / "runs"), images=tmp_path / "images.parquet",
                               embeddings=tmp_path / "vectors.parquet", resolution=32)
    copied, _, copied_ids, _ = load_all_embeddings(result.run)
    original = vectors[[ids.index(i) for i in copied_ids]]
    assert abs(linear_cka(original, copied) - 1.0) < 1e-6
    assert linear_cka(original, np.random.default_rng(0).normal(size=copied.shape)) < 0.5
    np.testing.assert_array_equal(run_images(result.run), images[[ids.index(i) for i in copied_ids]])
