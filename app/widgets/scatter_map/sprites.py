"""The run's images as the map shows them: 32-px thumbnails packed into JPEG sprite sheets of
1,024 (a 32 x 32 grid), served by Streamlit's media file manager (the store behind st.image).

Sheet s holds the points s * 1024 ... s * 1024 + 1023 of the payload, which lists points in a
Z-order of the map, so one sheet covers one patch of the map. The browser fetches a sheet the
first time it needs one (a hover, or thumbnails drawn in a zoomed-in view) and keeps it.

The manager forgets a file that a full script run did not add again, so the sheets are added on
every rerun, from a cache; a sheet's URL is a hash of its bytes, so the component's arguments do
not change from one rerun to the next. A map of up to EAGER_SHEETS sheets whose images are in
memory registers them all at once: the browser never has to ask. Above that (or for images read
from files, each decoded on demand) sheets are made and registered only when the browser asks
for them through the component's value, which reruns the page once per batch of sheets; the
browser asks for the sheets of the patch it looks at, at most MAX_ASKED at a time.
"""

from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image
from streamlit import runtime

THUMB = 32  # px: most datasets here are 32 px; larger images are scaled down
COLUMNS = 32
PER_SHEET = COLUMNS * COLUMNS
EAGER_SHEETS = 64  # 65,536 thumbnails, ~4 MB of JPEG, made in about a second
MAX_ASKED = 64  # sheets registered at once for a map too large to register them all
QUALITY = 85


def sheet_count(n_points: int) -> int:
    return -(-n_points // PER_SHEET)


def thumbnails(images: np.ndarray) -> np.ndarray:
    """uint8 (k, THUMB, THUMB, 3) of uint8 (k, H, W, 3) images: block means when H and W are
    multiples of THUMB, else a resize."""
    k, h, w = images.shape[:3]
    if (h, w) == (THUMB, THUMB):
        return images
    if h % THUMB == 0 and w % THUMB == 0:
        blocks = images.reshape(k, THUMB, h // THUMB, THUMB, w // THUMB, 3).mean(axis=(2, 4))
        return np.round(blocks).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(image).resize((THUMB, THUMB), Image.Resampling.BILINEAR))
                     for image in images])


def sheet_picture(images: np.ndarray) -> np.ndarray:
    """uint8 (COLUMNS * THUMB, COLUMNS * THUMB, 3): up to PER_SHEET thumbnails, row by row, the
    rest white."""
    cells = np.full((PER_SHEET, THUMB, THUMB, 3), 255, dtype=np.uint8)
    cells[:len(images)] = thumbnails(np.asarray(images))
    return cells.reshape(COLUMNS, COLUMNS, THUMB, THUMB, 3).transpose(0, 2, 1, 3, 4).reshape(
        COLUMNS * THUMB, COLUMNS * THUMB, 3)


def sheet_jpeg(images, rows: np.ndarray, index: int) -> bytes:
    """Sheet `index` of the points whose rows are `rows` (in payload order), as JPEG."""
    part = np.asarray(rows[index * PER_SHEET:(index + 1) * PER_SHEET])
    buffer = io.BytesIO()
    # 4:4:4: chroma subsampling would smear colours across the edges of 32-px cells.
    Image.fromarray(sheet_picture(images[part])).save(buffer, format="JPEG", quality=QUALITY, subsampling=0)
    return buffer.getvalue()


@st.cache_resource(max_entries=EAGER_SHEETS * 2 + MAX_ASKED, show_spinner=False)
def _sheet(data_key: tuple, map_tag: int, index: int, _images, _rows: np.ndarray) -> bytes:
    return sheet_jpeg(_images, _rows, index)


def eager(images, n_points: int) -> bool:
    """Whether every sheet of the map is made and registered up front."""
    return isinstance(images, np.ndarray) and sheet_count(n_points) <= EAGER_SHEETS


def sheet_urls(payload, images, asked: tuple[int, ...], key: str) -> dict[str, str]:
    """{sheet index: media URL} of the sheets the browser may fetch, registered for this script
    run: every sheet (see `eager`), or the ones the browser asked for."""
    n_sheets = sheet_count(len(payload.rows))
    indices = range(n_sheets) if eager(images, len(payload.rows)) else asked[:MAX_ASKED]
    manager = runtime.get_instance().media_file_mgr
    return {str(i): manager.add(_sheet(payload.data_key, payload.map_tag, i, images, payload.rows), "image/jpeg",
                                f"{key}.sheet.{i}")
            for i in indices}
