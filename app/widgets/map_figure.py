"""The run's map (UMAP, or PCA until UMAP is ready) as a Plotly WebGL scatter, and the rows a
selection on it picked.

Every point carries its row number (train rows, then test rows: the order of the embeddings and
of the search index) in `customdata`, so a selection maps back to rows whatever trace the point
is in and whether or not the map was thinned for display.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
import streamlit as st

from ssl_core.steps.browsing import ExploreData
from ssl_core.analyses.export import hover_text, plotly_text

# Above this many points the browser still draws a WebGL scatter, but the figure's JSON and
# every rerun grow heavy; the map then shows a fixed sample. Search always uses every row.
MAX_DISPLAY_POINTS = 50_000
MAX_LEGEND_CATEGORIES = 40  # more classes than this (cifar100): one trace with a colour scale
# 24 distinct colours: the default palette repeats after 10, so 12 shapes would share colours.
PALETTE = qualitative.Dark24
SPLIT = "split"
LABEL = "label"


def display_rows(n: int, max_points: int = MAX_DISPLAY_POINTS) -> np.ndarray:
    """Rows drawn on the map: all of them, or a fixed sample of `max_points` (the same on every
    rerun and for every colouring, so points do not jump about)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=max_points, replace=False))


def colour_options(data: ExploreData) -> list[str]:
    """What the map can be coloured by: the label, the split, then the dataset's known factors."""
    return [LABEL, SPLIT, *data.factors]


def _categories(data: ExploreData, colour_by: str) -> tuple[np.ndarray, list[str]] | None:
    """(per-row category names, their order) for categorical colourings; None for continuous."""
    if colour_by == LABEL:
        names = np.array([data.label_name(r) for r in range(len(data.ids))], dtype=object)
        order = [n for n in [*data.class_names, "unlabelled"] if n in set(names)]
        return names, order
    if colour_by == SPLIT:
        return data.splits.astype(object), [s for s in ("train", "test") if s in set(data.splits)]
    if colour_by in data.factor_levels:
        levels = data.factor_levels[colour_by]
        codes = data.factors[colour_by].astype(int)
        names = np.array([levels[c] if 0 <= c < len(levels) else "?" for c in codes], dtype=object)
        return names, [n for n in [*levels, "?"] if n in set(names)]
    return None


def map_figure(data: ExploreData, colour_by: str = LABEL, rows: np.ndarray | None = None) -> go.Figure:
    """The map of `rows` (default: display_rows) coloured by `colour_by` (see colour_options)."""
    if colour_by not in colour_options(data):
        raise ValueError(f"cannot colour by '{colour_by}'; choose one of {', '.join(colour_options(data))}")
    rows = display_rows(len(data.ids)) if rows is None else rows
    # Plotly reads these texts as HTML: ids, label names, factor names and levels are escaped.
    hover = np.array([hover_text(data.ids[r], data.label_name(r)) for r in rows], dtype=object)
    size = 7 if len(rows) <= 2_000 else 4 if len(rows) <= 20_000 else 3
    categories = _categories(data, colour_by)

    def trace(subset: np.ndarray, name: str, marker: dict[str, Any], legend: bool = True) -> go.Scattergl:
        return go.Scattergl(
            x=data.coords[rows[subset], 0], y=data.coords[rows[subset], 1], mode="markers", name=name,
            customdata=rows[subset], hovertext=hover[subset], showlegend=legend,
            hovertemplate="%{hovertext}<extra></extra>",
            marker={"size": size, "opacity": 0.8, **marker})

    if categories is not None and len(categories[1]) <= MAX_LEGEND_CATEGORIES:
        names, order = categories
        shown = names[rows]
        # One trace per category: a legend entry each, which toggles the category on and off.
        traces = [trace(np.flatnonzero(shown == name), plotly_text(name), {"color": PALETTE[i % len(PALETTE)]})
                  for i, name in enumerate(order)]
    elif categories is not None:
        names, order = categories
        code = {name: i for i, name in enumerate(order)}
        values = np.array([code[n] for n in names[rows]])
        traces = [trace(np.arange(len(rows)), plotly_text(colour_by), {"color": values, "colorscale": "Turbo"},
                        legend=False)]
    else:
        values = data.factors[colour_by][rows]
        hover = np.array([f"{h}<br>{plotly_text(colour_by)} {v:.3g}" for h, v in zip(hover, values)], dtype=object)
        traces = [trace(np.arange(len(rows)), plotly_text(colour_by), {
            "color": values, "colorscale": "Viridis", "showscale": True,
            "colorbar": {"title": {"text": plotly_text(colour_by)}}}, legend=False)]

    figure = go.Figure(traces)
    figure.update_layout(
        height=620, margin={"l": 0, "r": 0, "t": 36, "b": 0}, legend={"itemsizing": "constant"},
        # Same uirevision on every rerun of this run: zoom and pan survive a change of colouring.
        # No dragmode: Streamlit then starts in pan mode, where a click selects one point (in
        # box or lasso mode a click selects nothing); box and lasso are in the toolbar.
        # The map's kind is part of it: when UMAP replaces PCA, the view resets to the new map.
        uirevision=f"{data.run_id}:{data.map_kind}",
        title={"text": "PCA" if data.map_kind == "pca" else "UMAP", "x": 0.01, "font": {"size": 13}},
        xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"},
    )
    return figure


# cache_resource, not cache_data: the chart's identity in the browser is derived from the
# figure's JSON, and an unpickled copy (what cache_data returns) serializes its layout keys in
# another order than the first, freshly built figure; the chart would remount on the second
# rerun and drop the user's selection. The figure is only read, never changed, once built.
@st.cache_resource(max_entries=8, show_spinner=False)
def cached_map_figure(data_key: tuple, colour_by: str, _data: ExploreData) -> go.Figure:
    """`map_figure`, built once per version of a run's data and colouring: `data_key`
    (loaders.explore_key) identifies `_data`, which is too big to hash on every rerun."""
    return map_figure(_data, colour_by)


def selected_rows(state: Mapping[str, Any] | None) -> np.ndarray:
    """Row numbers of the points in a plotly selection, as `st.plotly_chart(on_select=...)` gives
    it (the returned event, or st.session_state[key]): {"selection": {"points": [{"customdata":
    [row], ...}, ...]}}. Unique, in selection order; empty when nothing is selected."""
    if not state:
        return np.zeros(0, dtype=np.int64)
    selection = state.get("selection") or {}
    rows: list[int] = []
    for point in selection.get("points") or []:
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)):
            custom = custom[0] if custom else None
        if custom is not None:
            rows.append(int(custom))
    return np.array(list(dict.fromkeys(rows)), dtype=np.int64)
