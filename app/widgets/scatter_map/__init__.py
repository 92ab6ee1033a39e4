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

regl-scatterplot (with streamlit-component-lib) was chosen for its lasso, hover events and
millions of points, and because it draws in headless Chromium on SwiftShader's software WebGL,
where the browser tests run. The frontend's source is in frontend/ (`npm ci && npm run build`
rebuilds it); its one static bundle in frontend/build/ ships with the app, so nobody needs
Node.js to run it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

from widgets.scatter_map.payload import MapPayload, read_value
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
                on_select: Callable[[np.ndarray], None] | None = None) -> np.ndarray:
    """Draw `payload` (the rows of `images`, uint8 (N, H, W, 3), are the map's rows) and return
    the rows of the current selection: empty, one row (a click) or many (a box or a lasso), in
    selection order. `on_select(rows)` runs before the page reruns, once per new selection."""
    n_sheets = sheet_count(len(payload.rows))
    value = read_value(st.session_state.get(key), payload.map_tag, len(payload.rows), n_sheets)
    urls = sheet_urls(payload, images, value.sheets, key)
    asks = not eager(images, len(payload.rows))
    held = asks and value.held == payload.digest_word
    _component(
        payload=b"" if held else payload.data, digest=payload.digest, map_tag=payload.map_tag, title=payload.title,
        legend=payload.legend, labels=payload.labels, height=height, thumbnails_below=THUMBNAILS_BELOW,
        sheets={"urls": urls, "count": n_sheets, "per_sheet": PER_SHEET, "columns": COLUMNS, "thumb": THUMB,
                "ask": asks},
        key=key, default=None, on_change=partial(_selected, key, payload, on_select))
    return value.rows
