"""A run's map in the browser: a Streamlit component drawing every point with WebGL
(regl-scatterplot), with pan and zoom, hover (the image and its label), click, box and lasso
selection, and the points drawn as their images once a view holds fewer than about 2,000.

The page builds the map once per run version and colouring (`payload.cached_payload`: one
binary block of float32 coordinates, colour codes and rows) and passes the same object on every
rerun, so the component's arguments stay byte-identical and Streamlit's browser cache sends the
block once per run and colouring. Images come as sprite sheets from the media file manager
(`sprites`). A selection comes back as binary too (uint32 rows), so a lasso around 100,000
points costs 400 KB, not a JSON list.

A map too large to register all its sprite sheets up front (`sprites.eager`) gets them when the
browser asks, and each answer changes the arguments, which would send the block again (16 MB
for a million points). So there the browser also says which block it holds, and the page sends
an empty block in its place while it holds the current one; a browser that has lost it (its
frame reloaded) says it holds none and gets it on the next rerun.

A page can also highlight rows it chose itself (`highlight`: the Compare page rings on each map
the images selected on another); the browser draws them as it draws a selection of its own.

regl-scatterplot (with streamlit-component-lib) was chosen for its lasso, hover events and
millions of points, and because it draws in headless Chromium on SwiftShader's software WebGL,
where the browser tests run. The frontend's source is in frontend/ (`npm ci && npm run build`
rebuilds it); its one static bundle in frontend/build/ ships with the app, so nobody needs
Node.js to run it.
"""

from __future__ import annotations

import zlib
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from widgets.scatter_map.payload import MapPayload, encode_rows, read_value
from widgets.scatter_map.sprites import COLUMNS, PER_SHEET, THUMB, eager, sheet_count, sheet_urls

BUILD = Path(__file__).resolve().parent / "frontend" / "build"
THUMBNAILS_BELOW = 2_000  # points in view under which the map draws them as images
_component = components.declare_component("scatter_map", path=str(BUILD))


def _selected(key: str, payload: MapPayload, on_select: Callable[[np.ndarray], None] | None) -> None:
    """A new value from the browser: calls `on_select` with the rows of a new selection, not
    for a value that only asks for sprite sheets."""
    value = read_value(st.session_state.get(key), payload.map_tag, len(payload.rows), sheet_count(len(payload.rows)))
    if value.sequence < 0 or value.sequence == st.session_state.get(f"{key}_sequence"):
        return
    st.session_state[f"{key}_sequence"] = value.sequence
    if on_select is not None:
        on_select(value.rows)


def scatter_map(payload: MapPayload, images, *, key: str, height: int = 620,
                on_select: Callable[[np.ndarray], None] | None = None,
                highlight: np.ndarray | None = None) -> np.ndarray:
    """Draw `payload` (the rows of `images`, uint8 (N, H, W, 3), are the map's rows; None: a run
    without images, whose points never show as pictures) and return
    the rows of the current selection: empty, one row (a click) or many (a box or a lasso), in
    selection order. `on_select(rows)` runs before the page reruns, once per new selection.
    `highlight`: rows drawn as selected, replacing the map's selection whenever they change (an
    empty array clears it); None leaves the selection to the person."""
    n_sheets = sheet_count(len(payload.rows))
    value = read_value(st.session_state.get(key), payload.map_tag, len(payload.rows), n_sheets)
    # No images: no sheets, and a browser that is never told to ask for any.
    urls = sheet_urls(payload, images, value.sheets, key) if images is not None else {}
    asks = images is not None and not eager(images, len(payload.rows))
    held = asks and value.held == payload.digest_word
    # Only a page that highlights sends the argument: Explore's arguments stay as they were.
    extra = {}
    if highlight is not None:
        rows = encode_rows(highlight, len(payload.rows))
        # Streamlit's browser side renders a component again only when its JSON arguments change
        # (its binary ones are not compared), so a checksum of the rows travels beside them.
        extra = {"highlight": rows, "highlight_crc": zlib.crc32(rows)}
    _component(
        **extra, payload=b"" if held else payload.data, digest=payload.digest, map_tag=payload.map_tag, title=payload.title,
        legend=payload.legend, labels=payload.labels, height=height, thumbnails_below=THUMBNAILS_BELOW,
        sheets={"urls": urls, "count": n_sheets, "per_sheet": PER_SHEET, "columns": COLUMNS, "thumb": THUMB,
                "ask": asks},
        key=key, default=None, on_change=partial(_selected, key, payload, on_select))
    return value.rows
