"""A folder of the user's own images: both layouts, metadata factors, bad files, errors."""

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset


def save_image(path: Path, size=(40, 30), colour=(200, 30, 30), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour if mode == "RGB" else colour[0]).save(path)
    return path


def load(folder: Path, **overrides):
    return load_dataset(DataConfig(dataset=str(folder), resolution=24, **overrides))


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_class_subfolders_become_labels(tmp_path):
    for name, colour in (("dog", (0, 0, 255)), ("cat", (255, 0, 0)), ("eel", (0, 255, 0))):
        for i in range(5):
            save_image(tmp_path / name / f"{i}.png", size=(30 + i, 20), colour=colour)
    save_image(tmp_path / "eel" / "deeper" / "5.jpg", colour=(0, 255, 0))
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    save_image(tmp_path / ".cache" / "x.png")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # hidden files are ignored without a word
        data = load(tmp_path)
    assert data.class_names == ("cat", "dog", "eel")
    assert data.images.shape == (16, 24, 24, 3) and data.images.dtype == torch.uint8
    assert sorted(data.ids) == sorted(
        [f"{c}/{i}.png" for c in ("cat", "dog", "eel") for i in range(5)] + ["eel/deeper/5.jpg"]
    )
    for image, label in zip(data.images, data.labels):
        expected = {"cat": 0, "dog": 2, "eel": 1}[data.class_names[label]]  # the dominant channel
        assert image.float().mean((0, 1)).argmax() == expected
    assert set(data.train.labels.tolist()) == {0, 1, 2}  # stratified
    assert data.is_train.sum() == round(0.8 * 16)
    assert data.ids == load(tmp_path).ids  # deterministic


def test_centre_crop_then_resize(tmp_path):
    # A wide image in three vertical bands: the centre square is the middle (blue) band.
    wide = np.zeros((30, 90, 3), np.uint8)
    wide[:, :30, 0] = wide[:, 30:60, 2] = wide[:, 60:, 1] = 255
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide).save(tmp_path / "copy.png")
    data = load(tmp_path)
    assert data.images.shape == (2, 24, 24, 3)
    assert (data.images[..., 2] == 255).all() and (data.images[..., :2] == 0).all()


def test_modes_are_converted_to_rgb(tmp_path):
    save_image(tmp_path / "grey.png", mode="L")
    save_image(tmp_path / "rgba.png", mode="RGBA", colour=(0, 0, 0, 0))  # fully transparent
    save_image(tmp_path / "palette.gif", mode="P")
    save_image(tmp_path / "photo.jpg")
    data = load(tmp_path)
    assert len(data) == 4 and data.images.shape[3] == 3
    rgba = data.images[data.ids.index("rgba.png")]
    assert (rgba == 255).all()  # transparency shows white, not the hidden black


def test_flat_folder_without_metadata_is_unlabelled(tmp_path):
    for i in range(6):
        save_image(tmp_path / f"img{i}.png")
    data = load(tmp_path)
    assert len(data) == 6 and data.class_names == ()
    assert (data.labels == -1).all()
    assert data.is_train.sum() == 5  # round(0.8 * 6)


@pytest.mark.parametrize("csv_name", ["labels.csv", "metadata.csv"])
def test_flat_folder_with_csv_gives_labels_and_factors(tmp_path, csv_name):
    rows = []
    for i in range(10):
        save_image(tmp_path / f"{i}.png", colour=(20 * i, 0, 0))
        rows.append(
            f"{i}.png,{['bird', 'ant'][i % 2]},{i * 0.5},{['canon', 'nikon', 'sony'][i % 3]}"
        )
    (tmp_path / csv_name).write_text("filename,label,exposure,camera\n" + "\n".join(rows) + "\n")
    data = load(tmp_path, seed=2)
    assert data.class_names == ("ant", "bird")
    assert len(data) == 10 and set(data.factors) == {"exposure", "camera"}
    assert data.factor_levels == {"camera": ("canon", "nikon", "sony")}
    for position, file_id in enumerate(data.ids):
        i = int(file_id.split(".")[0])
        assert data.class_names[data.labels[position]] == ["bird", "ant"][i % 2]
        assert data.factors["exposure"][position] == pytest.approx(i * 0.5)
        assert data.factors["exposure"].dtype == np.float64
        assert (
            data.factor_levels["camera"][data.factors["camera"][position]]
            == ["canon", "nikon", "sony"][i % 3]
        )
        assert data.images[position, 0, 0, 0] == 20 * i
    assert set(data.train.labels.tolist()) == set(data.test.labels.tolist()) == {0, 1}


def test_csv_partial_labels_missing_rows_and_unlisted_files(tmp_path):
    for i in range(4):
        save_image(tmp_path / f"{i}.png")
    save_image(tmp_path / "extra.png")
    (tmp_path / "labels.csv").write_text(
        "filename,label,size\n0.png,10,1\n1.png,9,\n2.png,,3\n3.png,9,4\ngone.png,9,5\n"
    )
    with pytest.warns(UserWarning) as caught:
        data = load(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "extra.png" in messages and "gone.png" in messages
    assert len(data) == 4
    assert data.class_names == ("9", "10")  # numeric labels sort as numbers
    by_id = dict(zip(data.ids, data.labels.tolist()))
    assert by_id == {"0.png": 1, "1.png": 0, "2.png": -1, "3.png": 0}
    sizes = dict(zip(data.ids, data.factors["size"]))
    assert np.isnan(sizes["1.png"]) and sizes["3.png"] == 4


def test_csv_without_filename_column_is_refused(tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_text("file,label\na.png,x\n")
    with pytest.raises(ValueError, match="'filename' column.*'file', 'label'"):
        load(tmp_path)


def test_bad_files_are_skipped_with_a_warning_naming_each(tmp_path):
    for i in range(3):
        save_image(tmp_path / f"good{i}.png")
    save_image(tmp_path / "photo.jpg", size=(64, 64))
    full = (tmp_path / "photo.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "notes.txt").write_text("just some notes")
    (tmp_path / "random.png").write_bytes(
        np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes()
    )
    (tmp_path / "bomb.png").write_bytes(png_claiming_size(20_000, 20_000))
    with pytest.warns(UserWarning) as caught:
        data = load(tmp_path)
    messages = [str(w.message) for w in caught]
    for bad in ("truncated.jpg", "notes.txt", "random.png", "bomb.png"):
        assert sum(bad in m for m in messages) == 1, (bad, messages)
    assert any("bomb.png" in m and "limit" in m for m in messages)
    assert sorted(data.ids) == ["good0.png", "good1.png", "good2.png", "photo.jpg"]


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"")
    with pytest.raises(ValueError, match=f"no readable images in {tmp_path}.*empty"):
        load(tmp_path)


def test_folder_of_only_bad_files_is_a_clear_error(tmp_path):
    (tmp_path / "a.png").write_text("not a png")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff")
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=f"no readable images in {tmp_path}.*all 2"),
    ):
        load(tmp_path)


def test_many_small_images_decode_quickly(tmp_path):
    # A smoke test that decoding is batched sensibly: 600 images, no timing assertion.
    rng = np.random.default_rng(0)
    for i in range(600):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:03}.jpg"
        )
    data = load(tmp_path, train_size=100, test_size=20)
    assert data.images.shape == (120, 24, 24, 3)
