"""A run's map as a small picture: each point a dot in its label's colour (the Explore map's
palette), drawn into an image array. One image per tile, so a screen of tiles costs the browser
no WebGL context and no chart, and the server a few milliseconds per run."""

from __future__ import annotations

import numpy as np
from plotly.colors import hex_to_rgb

from widgets.map_figure import PALETTE

BACKGROUND = 255  # white, as the Explore map's
UNLABELLED = (170, 170, 170)
COLOURS = np.array([hex_to_rgb(colour) for colour in PALETTE], dtype=np.uint8)


def map_thumbnail(coords: np.ndarray, labels: np.ndarray, width: int = 280, height: int = 150,
                  dot: int = 2, margin: int = 4) -> np.ndarray:
    """uint8 (height, width, 3): the points of `coords` (N, 2), coloured by `labels` (N,) (-1:
    grey), scaled alike on both axes to fit, y up. Points are drawn in a fixed shuffled order, so
    no class always lies on top."""
    picture = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    points = np.asarray(coords, dtype=np.float64)
    keep = np.isfinite(points).all(axis=1)
    points, labels = points[keep], np.asarray(labels)[keep]
    if not len(points):
        return picture
    low, high = points.min(axis=0), points.max(axis=0)
    scale = min((width - 2 * margin - dot) / max(high[0] - low[0], 1e-12),
                (height - 2 * margin - dot) / max(high[1] - low[1], 1e-12))
    centre = (low + high) / 2
    x = np.round((points[:, 0] - centre[0]) * scale + (width - dot) / 2).astype(int)
    y = np.round((height - dot) / 2 - (points[:, 1] - centre[1]) * scale).astype(int)
    colours = np.where((labels >= 0)[:, None], COLOURS[np.maximum(labels, 0) % len(COLOURS)],
                       np.array(UNLABELLED, dtype=np.uint8))
    order = np.random.default_rng(0).permutation(len(points))
    for dx in range(dot):
        for dy in range(dot):
            picture[y[order] + dy, x[order] + dx] = colours[order]  # later points overwrite earlier ones
    return picture
