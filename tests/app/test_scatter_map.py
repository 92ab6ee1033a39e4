"""The map component's Python side, without a browser: the binary block the browser decodes, the
selection value it sends back, sprite sheets, and the maps it refuses to draw."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from ssl_core.steps.browsing import ExploreData
from widgets.map_figure import PALETTE, categories
from widgets.scatter_map.payload import (NOTHING, decode, decode_rows, encode, encode_rows, encode_value, map_payload,
                                         read_value, z_order)
from widgets.scatter_map.sprites import COLUMNS, PER_SHEET, THUMB, sheet_jpeg, sheet_picture, thumbnails


def fake_data(n: int = 50, run_id: str = "fake") -> ExploreData:
    rng = np.random.default_rng(2)
    return ExploreData(
        run_id=run_id, coords=rng.normal(size=(n, 2)).astype(np.float32), labels=np.arange(n) % 4 - 1,
        ids=[f"img/{i}" for i in range(n)], splits=np.array(["train"] * (n - 10) + ["test"] * 10),
        class_names=["cat", "dog", "owl"],
        factors={"size": rng.uniform(size=n), "background": np.arange(n) % 2},
        factor_levels={"background": ("plain", "stripes")})


def test_a_block_decodes_to_what_was_encoded_exactly():
    rng = np.random.default_rng(0)
    n = 1_001  # odd: the uint16 arrays need padding to stay 4-byte aligned
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    rows = rng.permutation(n).astype(np.uint32)
    codes, labels = rng.integers(0, 65_536, size=n), rng.integers(0, 12, size=n)
    back = decode(encode(x, y, rows, codes, labels))
    assert not back.continuous
    for name, sent in (("x", x), ("y", y), ("rows", rows), ("colour", codes), ("labels", labels)):
        np.testing.assert_array_equal(getattr(back, name), sent, err_msg=name)
    values = rng.uniform(size=n).astype(np.float32)
    back = decode(encode(x, y, rows, values, labels))
    assert back.continuous and back.colour.dtype == np.float32
    np.testing.assert_array_equal(back.colour, values)
    assert len(encode(x, y, rows, codes, labels)) == 16 + n * 12 + 2 * (2 * n + 2)


def test_the_payload_carries_every_row_once_with_its_coordinates_colour_and_label():
    data = fake_data()
    payload = map_payload(data, "label")
    back = decode(payload.data)
    assert sorted(back.rows.tolist()) == list(range(50))
    np.testing.assert_array_equal(back.rows, payload.rows)
    np.testing.assert_array_equal(np.stack([back.x, back.y], axis=1), data.coords[back.rows])  # exactly
    names, order = categories(data, "label")
    assert payload.legend["names"] == order == ["cat", "dog", "owl", "unlabelled"]
    assert payload.legend["colours"] == [c.lower() for c in PALETTE[:4]]
    assert [order[c] for c in back.colour] == [names[r] for r in back.rows]
    assert [payload.labels[c] for c in back.labels] == [data.label_name(r) for r in back.rows]
    assert payload.title == "UMAP · 50 images"


def test_colourings_share_the_points_and_differ_only_in_colour():
    data = fake_data()
    by_label, by_split = map_payload(data, "label"), map_payload(data, "split")
    assert by_label.map_tag == by_split.map_tag and by_label.digest != by_split.digest
    np.testing.assert_array_equal(by_label.rows, by_split.rows)
    split = decode(by_split.data)
    assert [by_split.legend["names"][c] for c in split.colour] == data.splits[split.rows].tolist()
    assert map_payload(data, "label").data == by_label.data  # the same bytes every time: Streamlit caches them
    scale = map_payload(data, "size")
    assert scale.legend["kind"] == "continuous" and decode(scale.data).continuous
    np.testing.assert_allclose(decode(scale.data).colour, data.factors["size"][scale.rows].astype(np.float32))
    assert map_payload(fake_data(run_id="other"), "label").map_tag != by_label.map_tag


def test_an_unknown_colouring_names_the_choices():
    with pytest.raises(ValueError, match="label, split, size, background"):
        map_payload(fake_data(), "colour")


def test_points_are_in_z_order_so_a_run_of_points_is_a_patch_of_the_map():
    coords = np.random.default_rng(3).uniform(size=(4096, 2))
    order = z_order(coords)
    assert sorted(order.tolist()) == list(range(4096))
    quarter = coords[order[:1024]]  # the first quarter of a Z curve is one quadrant
    assert quarter.max(axis=0).max() <= 0.5 + 1e-3


@pytest.mark.parametrize("coords, problem", [
    (np.zeros((49, 2), np.float32), "has 49 points for 50 images"),
    ("nan", "has 2 points without finite coordinates (rows 3, 17)"),
    (np.zeros((50, 3), np.float32), "has shape (50, 3), not (points, 2)"),
])
def test_a_map_that_cannot_be_drawn_whole_is_refused_with_its_name(coords, problem):
    data = fake_data(run_id="run-7")
    if isinstance(coords, str):
        coords = data.coords.copy()
        coords[3, 0], coords[17, 1] = np.nan, np.inf
    data.coords = coords
    with pytest.raises(ValueError, match=re.escape(f"run run-7: the map projection/umap_2d.npy {problem}")):
        map_payload(data, "label")


def test_a_value_from_the_browser_gives_rows_in_selection_order():
    tag = 123_456
    click = read_value(encode_value(tag, 5, [42]), tag, 50, 1)
    assert click.sequence == 5 and click.rows.tolist() == [42] and click.sheets == ()
    lasso = read_value(encode_value(tag, 6, [9, 3, 9, 60, 4], sheets=[0, 2]), tag, 50, 1)
    assert lasso.rows.tolist() == [9, 3, 4]  # repeats and rows off the map dropped
    assert lasso.sheets == (0,)  # sheets the map does not have dropped
    empty = read_value(encode_value(tag, 7, []), tag, 50, 1)
    assert empty.sequence == 7 and empty.rows.tolist() == []
    many = np.arange(100_000, dtype=np.uint32)
    big = read_value(np.concatenate([[1, tag, 8, 0xDEADBEEF, len(many)], many, [0]]).astype("<u4").tobytes(),
                     tag, 100_000, 98)
    np.testing.assert_array_equal(big.rows, many)
    assert big.held == 0xDEADBEEF  # the block the browser holds


@pytest.mark.parametrize("value", [
    None, "rows", {"selection": {"points": [{"customdata": [5]}]}}, [1, 2, 3], b"", b"\x01\x00",
    encode_value(123_456, 5, [42])[:-4],  # cut short
    encode_value(123_456, 5, [42]) + b"\x00\x00\x00\x00",  # one word too many
    encode_value(999, 5, [42]),  # another map (another run, or PCA before UMAP)
    b"\x02" + encode_value(123_456, 5, [42])[1:],  # another version
])
def test_a_malformed_or_foreign_value_is_ignored(value):
    assert read_value(value, 123_456, 50, 1) is NOTHING


def test_a_sheet_holds_thumbnails_row_by_row_in_payload_order():
    images = np.zeros((PER_SHEET + 3, THUMB, THUMB, 3), dtype=np.uint8)
    images[:, :, :, 0] = np.arange(PER_SHEET + 3)[:, None, None] % 256
    images[:, :, :, 1] = np.arange(PER_SHEET + 3)[:, None, None] // 256
    picture = sheet_picture(images[:PER_SHEET])
    assert picture.shape == (COLUMNS * THUMB, COLUMNS * THUMB, 3)
    for i in (0, 1, COLUMNS, 777, PER_SHEET - 1):
        top, left = (i // COLUMNS) * THUMB, (i % COLUMNS) * THUMB
        np.testing.assert_array_equal(picture[top:top + THUMB, left:left + THUMB], images[i])
    rows = np.arange(PER_SHEET + 3)[::-1]
    second = np.asarray(Image.open(io.BytesIO(sheet_jpeg(images, rows, 1))))
    assert second.shape == picture.shape  # a last sheet is whole: three thumbnails, then white
    assert abs(int(second[:THUMB, :THUMB, 0].mean()) - 2) <= 2 and second[:THUMB, 3 * THUMB:].min() > 240


def test_larger_images_become_32_px_thumbnails():
    big = np.random.default_rng(4).integers(0, 256, size=(2, 96, 96, 3), dtype=np.uint8)
    small = thumbnails(big)
    assert small.shape == (2, 32, 32, 3)
    assert abs(int(small[0, 0, 0, 0]) - big[0, :3, :3, 0].mean()) <= 0.5
    assert thumbnails(big[:, :50, :50]).shape == (2, 32, 32, 3)


def test_rows_to_highlight_travel_once_each_and_only_rows_of_the_map():
    block = encode_rows([7, 3, 7, -1, 50, 0], 50)
    assert decode_rows(block).tolist() == [7, 3, 0]  # repeats and rows off the map dropped, order kept
    assert encode_rows(np.zeros(0, dtype=np.int64), 50) == b""
