"""The map as it learns, as one Plotly figure: a frame per snapshot (steps/map_snapshots.py), an
epoch slider and a play button. Explore shows it coloured by any of its columns, and the HTML
export can include it (`ssl-explorer export RUN --animation`).

SVG markers (go.Scatter), not WebGL: Plotly tweens SVG points from frame to frame, which is what
makes the classes visibly drift apart; ~2,000 points per frame draw smoothly so.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from plotly.colors import qualitative

from ssl_core.steps.browsing import label_name
from ssl_core.steps.map_snapshots import MapSnapshots

PALETTE = qualitative.Dark24  # the palette of the run's map (app/widgets/map_figure.py)
FRAME_MS = 700  # per snapshot when playing: long enough to follow one cluster's move
NO_SNAPSHOTS = ("This run has no map snapshots: it was trained before the map as it learns existed, or with "
                "map_snapshots 0. Train a new run to watch its map form.")


def label_categories(snapshots: MapSnapshots) -> tuple[np.ndarray, list[str]]:
    """(per-point label name, the names present in class order, 'unlabelled' last)."""
    names = np.array([label_name(snapshots.class_names, int(label)) for label in snapshots.labels], dtype=object)
    order = sorted(set(snapshots.labels.tolist()), key=lambda v: (v < 0, v))
    return names, [label_name(snapshots.class_names, int(label)) for label in order]


def frame_name(snapshots: MapSnapshots, t: int) -> str:
    return f"epoch {snapshots.epochs[t]:g}"


def animation_figure(snapshots: MapSnapshots, *, categories: tuple[np.ndarray, list[str]] | None = None,
                     values: np.ndarray | None = None, colour_name: str = "label",
                     customdata: np.ndarray | None = None, height: int = 560, title: str = ""):
    """A Plotly figure of every snapshot: `categories` (per-point names, their order) colour one
    trace per category (the legend toggles it); else `values` (per-point numbers) colour one trace
    on a colour scale; else the labels. `customdata`: per-point values carried for hover scripts
    (the export's row of each image). Axes span every frame, so nothing leaves the view."""
    import plotly.graph_objects as go  # heavy: plotly only for figures

    if categories is None and values is None:
        categories = label_categories(snapshots)
    coords = snapshots.coords
    hover = np.array([html.escape(i, quote=False) for i in snapshots.ids], dtype=object)
    if categories is not None:
        per_point, order = categories
        per_point = np.asarray(per_point, dtype=object)
        groups = [(str(name), np.flatnonzero(per_point == name)) for name in order]
        groups = [(name, rows) for name, rows in groups if len(rows)]
    else:
        groups = [(colour_name, np.arange(len(snapshots.ids)))]

    def traces(t: int) -> list[Any]:
        out = []
        for i, (name, rows) in enumerate(groups):
            marker: dict[str, Any] = {"size": 5, "opacity": 0.8}
            if categories is not None:
                marker["color"] = PALETTE[i % len(PALETTE)]
            else:
                marker.update(color=np.asarray(values, dtype=np.float64)[rows], colorscale="Viridis", showscale=True,
                              colorbar={"title": {"text": html.escape(colour_name, quote=False)}})
            out.append(go.Scatter(
                x=coords[t, rows, 0], y=coords[t, rows, 1], mode="markers", name=html.escape(name, quote=False),
                hovertext=hover[rows], hovertemplate="%{hovertext}<extra></extra>", marker=marker,
                customdata=None if customdata is None else np.asarray(customdata)[rows]))
        return out

    names = [frame_name(snapshots, t) for t in range(len(coords))]
    frames = [go.Frame(data=traces(t), name=names[t]) for t in range(len(coords))]
    play = {"args": [None, {"frame": {"duration": FRAME_MS, "redraw": False}, "fromcurrent": True,
                            "transition": {"duration": FRAME_MS // 2}}], "label": "Play", "method": "animate"}
    pause = {"args": [[None], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                               "transition": {"duration": 0}}], "label": "Pause", "method": "animate"}
    slider = {"active": 0, "currentvalue": {"prefix": ""}, "pad": {"t": 30},
              "steps": [{"args": [[name], {"frame": {"duration": 0, "redraw": False}, "mode": "immediate",
                                           "transition": {"duration": 0}}], "label": name, "method": "animate"}
                        for name in names]}
    pad = 0.05 * (coords.max(axis=(0, 1)) - coords.min(axis=(0, 1)) + 1e-6)
    low, high = coords.min(axis=(0, 1)) - pad, coords.max(axis=(0, 1)) + pad
    # Opens on the first snapshot, so that Play runs forward through the training.
    figure = go.Figure(data=traces(0), frames=frames)
    figure.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        title={"text": title, "x": 0.01, "font": {"size": 13}}, legend={"itemsizing": "constant"},
        xaxis={"visible": False, "range": [float(low[0]), float(high[0])]},
        yaxis={"visible": False, "range": [float(low[1]), float(high[1])], "scaleanchor": "x"},
        updatemenus=[{"type": "buttons", "direction": "left", "showactive": False, "x": 0, "y": 0,
                      "xanchor": "left", "yanchor": "top", "pad": {"t": 30, "r": 10}, "buttons": [play, pause]}],
        sliders=[{**slider, "x": 0.15, "len": 0.85, "y": 0, "yanchor": "top"}])
    return figure
