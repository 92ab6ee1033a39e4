"""A grid of a run's images with a caption under each (neighbours, selections, search hits)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st
from PIL import Image

from widgets.literal import literal

DISPLAY_SIZE = 96  # px on screen; the datasets are mostly 32 px


def enlarge(image: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Scale a uint8 (H, W, 3) image to `size` px with nearest neighbour: the browser's own
    smoothing would blur 32 px images into mush."""
    if image.shape[0] >= size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST))


def image_grid(images: np.ndarray | Sequence[np.ndarray], captions: Sequence[str], *, columns: int = 8) -> None:
    """Images in rows of `columns`, each with its caption (one st.image per image, so a browser
    test can find each caption under its picture). Captions are plain text: st.image would
    render them as Markdown, so they are shown through `literal`."""
    for start in range(0, len(captions), columns):
        cells = st.columns(columns)
        for cell, image, caption in zip(cells, images[start:start + columns], captions[start:start + columns]):
            cell.image(enlarge(image), caption=literal(caption))
