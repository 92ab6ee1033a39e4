"""What travels between the page and the map in the browser, as binary both ways.

To the browser, one block per run version and colouring (little-endian, every array 4-byte
aligned):

    b"SMAP", uint32 version, uint32 n, uint32 flags (bit 0: a continuous colouring)
    float32 x[n], float32 y[n]       map coordinates, as stored
    uint32  rows[n]                  the row of each point (train rows, then test rows)
    uint16  colour[n] | float32[n]   category code (into the legend), or the value to colour by
    uint16  label[n]                 label code (into `MapPayload.labels`)

Points are in a Z-order of their coordinates, not in row order: the browser's sprite sheets of
thumbnails (`sprites`) follow the same order, so a zoomed-in view needs a sheet or two, not one
of every sheet. The block is built once and kept (`cached_payload`), so the component's arguments
are byte-identical on every rerun and Streamlit sends them once per run and colouring.

Rows to highlight, to the browser: uint32 rows, in any order (`encode_rows`).

From the browser, a selection: uint32 [version, map tag, sequence, held, n, rows..., m,
sheets...]. The map tag says which points the rows refer to (a value left from another run or map
is ignored); the sequence number grows with each selection, so a value sent only to ask for
sprite sheets is not taken for a new click; `held` is the `digest_word` of the block the browser
holds (see widgets.scatter_map for when that matters).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st
from plotly.colors import hex_to_rgb, sample_colorscale, unlabel_rgb

from ssl_core.steps.browsing import ExploreData
from ssl_core.steps.projection import PCA_FILE, UMAP_FILE
from widgets.map_figure import LABEL, MAX_LEGEND_CATEGORIES, PALETTE, categories, colour_options

MAGIC = b"SMAP"
VERSION = 1
CONTINUOUS = 1  # flags bit: the colour array holds float32 values, not category codes
HEADER = struct.Struct("<4sIII")
MAX_CODES = 65_535  # categories and labels travel as uint16
SCALE_STEPS = 256  # colours of a continuous colouring's scale


@dataclass(frozen=True)
class MapPayload:
    """A run's map coloured one way, as the component receives it. `data` is the binary block;
    the rest are small JSON arguments."""

    data: bytes
    rows: np.ndarray = field(repr=False)  # the row of each point, in the block's order
    legend: dict[str, Any]
    labels: list[str]  # label names; a point's label code indexes them
    title: str
    map_tag: int  # crc32 of the run, its rows and their places: changes when the points do (PCA -> UMAP)
    digest: str  # of `data`: the browser redraws when it changes
    data_key: tuple = ()  # the version of the run's data it was built from (sprite sheets reuse it)

    @property
    def digest_word(self) -> int:
        """The digest as the browser names the block it holds: its first 32 bits."""
        return int(self.digest[:8], 16)


@dataclass(frozen=True)
class Decoded:
    """A block read back (tests, and what the browser does)."""

    x: np.ndarray
    y: np.ndarray
    rows: np.ndarray
    colour: np.ndarray
    labels: np.ndarray
    continuous: bool


def map_file(data: ExploreData) -> str:
    return f"projection/{UMAP_FILE if data.map_kind == 'umap' else PCA_FILE}"


def check_map(data: ExploreData) -> np.ndarray:
    """The map's coordinates as float32 (N, 2), or ValueError naming the run, its map file and
    what is wrong: a map is drawn whole or not at all."""
    coords = np.asarray(data.coords)
    where = f"run {data.run_id}: the map {map_file(data)}"
    remedy = f"; run `ssl-explorer project {data.run_id}` again"
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"{where} has shape {coords.shape}, not (points, 2){remedy}")
    if len(coords) != len(data.ids):
        raise ValueError(f"{where} has {len(coords):,} points for {len(data.ids):,} images{remedy}")
    bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
    if len(bad):
        shown = ", ".join(str(r) for r in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ValueError(f"{where} has {len(bad):,} points without finite coordinates (rows {shown}){remedy}")
    return coords.astype(np.float32, copy=False)


def z_order(coords: np.ndarray) -> np.ndarray:
    """Rows sorted along a Z-order (Morton) curve of their coordinates: rows close in this order
    lie close on the map."""
    low = coords.min(axis=0)
    span = np.maximum(coords.max(axis=0) - low, 1e-12)
    grid = ((coords - low) / span * 65_535).astype(np.uint32)  # 16 bits per axis

    def spread(v: np.ndarray) -> np.ndarray:  # bit i of v -> bit 2i
        v = (v | (v << 8)) & 0x00FF00FF
        v = (v | (v << 4)) & 0x0F0F0F0F
        v = (v | (v << 2)) & 0x33333333
        return (v | (v << 1)) & 0x55555555

    return np.argsort(spread(grid[:, 0]) | (spread(grid[:, 1]) << 1), kind="stable")


def encode(x: np.ndarray, y: np.ndarray, rows: np.ndarray, colour: np.ndarray, labels: np.ndarray) -> bytes:
    """The block; `colour` as float32 makes a continuous colouring, as integers category codes."""
    n = len(rows)
    continuous = np.issubdtype(np.asarray(colour).dtype, np.floating)
    parts = [HEADER.pack(MAGIC, VERSION, n, CONTINUOUS if continuous else 0),
             np.asarray(x, "<f4").tobytes(), np.asarray(y, "<f4").tobytes(), np.asarray(rows, "<u4").tobytes(),
             _padded(np.asarray(colour, "<f4" if continuous else "<u2")), _padded(np.asarray(labels, "<u2"))]
    return b"".join(parts)


def _padded(values: np.ndarray) -> bytes:
    raw = values.tobytes()
    return raw + b"\0" * (-len(raw) % 4)


def decode(block: bytes) -> Decoded:
    magic, version, n, flags = HEADER.unpack_from(block)
    if magic != MAGIC or version != VERSION:
        raise ValueError(f"not a map block (magic {magic!r}, version {version})")
    offset = HEADER.size

    def take(dtype: str) -> np.ndarray:
        nonlocal offset
        values = np.frombuffer(block, dtype=dtype, count=n, offset=offset)
        offset += values.nbytes + (-values.nbytes % 4)
        return values

    x, y, rows = take("<f4"), take("<f4"), take("<u4")
    continuous = bool(flags & CONTINUOUS)
    colour = take("<f4" if continuous else "<u2")
    return Decoded(x=x, y=y, rows=rows, colour=colour, labels=take("<u2"), continuous=continuous)


def _hex(colour: str) -> str:
    rgb = hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour)
    return "#" + "".join(f"{round(c):02x}" for c in rgb)


def colouring(data: ExploreData, colour_by: str) -> tuple[np.ndarray, dict[str, Any]]:
    """(per-row colour codes or values, the legend) of one colouring (see colour_options)."""
    if colour_by not in colour_options(data):
        raise ValueError(f"cannot colour by '{colour_by}'; choose one of {', '.join(colour_options(data))}")
    grouped = categories(data, colour_by)
    if grouped is None:
        values = np.asarray(data.factors[colour_by], dtype=np.float32)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        return values, {"kind": "continuous", "name": colour_by, "min": low, "max": high,
                        "colours": [_hex(c) for c in sample_colorscale("Viridis", SCALE_STEPS)]}
    names, order = grouped
    if len(order) > MAX_CODES:
        raise ValueError(f"cannot colour by '{colour_by}': {len(order):,} categories, at most {MAX_CODES:,}")
    code = {name: i for i, name in enumerate(order)}
    codes = np.fromiter((code[n] for n in names), dtype=np.uint16, count=len(names))
    few = len(order) <= MAX_LEGEND_CATEGORIES
    colours = ([PALETTE[i % len(PALETTE)] for i in range(len(order))] if few
               else sample_colorscale("Turbo", [i / max(len(order) - 1, 1) for i in range(len(order))]))
    return codes, {"kind": "categorical", "name": colour_by, "names": [str(n) for n in order],
                   "colours": [_hex(c) for c in colours], "shown": few}


def label_codes(data: ExploreData) -> tuple[np.ndarray, list[str]]:
    """(per-row label codes, label names): unknown labels share the last name, "unlabelled"."""
    names = [*data.class_names, "unlabelled"]
    if len(names) > MAX_CODES:
        raise ValueError(f"run {data.run_id} has {len(data.class_names):,} classes; the map shows at most {MAX_CODES:,}")
    labels = np.asarray(data.labels, dtype=np.int64)
    return np.where((labels >= 0) & (labels < len(data.class_names)), labels, len(data.class_names)), names


def map_payload(data: ExploreData, colour_by: str = LABEL, data_key: tuple = ()) -> MapPayload:
    """The map of every row of `data` coloured by `colour_by`; ValueError (see check_map) for a
    map that cannot be drawn whole."""
    coords = check_map(data)
    colour, legend = colouring(data, colour_by)
    labels, label_names = label_codes(data)
    order = z_order(coords)
    order.flags.writeable = False
    block = encode(coords[order, 0], coords[order, 1], order, colour[order], labels[order])
    tag = zlib.crc32(order.astype("<u4").tobytes(), zlib.crc32(coords.tobytes(), zlib.crc32(data.run_id.encode())))
    title = f"{'PCA' if data.map_kind == 'pca' else 'UMAP'} · {len(order):,} images"
    return MapPayload(data=block, rows=order, legend=legend, labels=label_names, title=title, map_tag=tag,
                      digest=hashlib.blake2b(block, digest_size=8).hexdigest(), data_key=data_key)


# cache_resource: one payload shared by every rerun and session, never copied; the component's
# arguments then stay byte-identical and Streamlit's browser cache recognises them.
@st.cache_resource(max_entries=8, show_spinner=False)
def cached_payload(data_key: tuple, colour_by: str, _data: ExploreData) -> MapPayload:
    """`map_payload`, built once per version of a run's data (`data_key`, see
    loaders.explore_key) and colouring."""
    return map_payload(_data, colour_by, data_key)


@dataclass(frozen=True)
class BrowserValue:
    """What the browser sent: its selection's sequence number, the selected rows (in selection
    order), the sprite sheets it asks for and the block it holds (MapPayload.digest_word)."""

    sequence: int = -1
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sheets: tuple[int, ...] = ()
    held: int = 0


NOTHING = BrowserValue()


def encode_rows(rows, n_rows: int) -> bytes:
    """Rows as the browser reads a highlight: unique uint32 rows of the map's `n_rows`, in the
    order given (rows off the map dropped)."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    rows = rows[(rows >= 0) & (rows < n_rows)]
    return rows[np.sort(np.unique(rows, return_index=True)[1])].astype("<u4").tobytes()


def decode_rows(block: bytes) -> np.ndarray:
    """The rows of a highlight (tests)."""
    return np.frombuffer(block, dtype="<u4").astype(np.int64)


def encode_value(map_tag: int, sequence: int, rows, sheets=(), held: int = 0) -> bytes:
    """A value as the browser sends it (tests and the app driver use this)."""
    rows, sheets = list(rows), list(sheets)
    return np.array([VERSION, map_tag, sequence, held, len(rows), *rows, len(sheets), *sheets], dtype="<u4").tobytes()


def read_value(value: Any, map_tag: int, n_rows: int, n_sheets: int) -> BrowserValue:
    """The browser's value for the map `map_tag` of `n_rows` rows; NOTHING for no value, a value
    of another map, or anything malformed (rows and sheets out of range are dropped)."""
    if not isinstance(value, (bytes, bytearray, memoryview)) or len(value) % 4 or len(value) < 24:
        return NOTHING
    words = np.frombuffer(bytes(value), dtype="<u4").astype(np.int64)
    version, tag, sequence, held, n = words[:5]
    if version != VERSION or tag != map_tag or len(words) < 6 + n:
        return NOTHING
    rows = words[5:5 + n]
    m = words[5 + n]
    sheets = words[6 + n:]
    if len(sheets) != m:
        return NOTHING
    rows = rows[rows < n_rows]
    unique = rows[np.sort(np.unique(rows, return_index=True)[1])]
    return BrowserValue(sequence=int(sequence), rows=unique, held=int(held),
                        sheets=tuple(dict.fromkeys(int(s) for s in sheets if s < n_sheets)))
