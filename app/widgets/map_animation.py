"""The map as it learns: Explore plays a run's map snapshots (a frame per kNN check of training,
ssl_core.steps.map_snapshots) with an epoch slider and a play button, coloured as the main map
is; the Train page shows the newest snapshot while the run trains. The figures are built in
ssl_core.analyses (the HTML export draws the same ones)."""

from __future__ import annotations

import numpy as np
import streamlit as st

import loaders
from ssl_core.analyses.export import map_figure
from ssl_core.analyses.map_animation import NO_SNAPSHOTS, animation_figure
from ssl_core.steps.browsing import ExploreData
from ssl_core.steps.map_snapshots import read_snapshots
from ssl_core.store.runs import Run
from widgets.literal import sentence
from widgets.map_figure import categories


def map_animation(run: Run, data: ExploreData, colour_by: str) -> None:
    """The snapshots of `run` as an animation, each point coloured by `colour_by` (a colouring of
    Explore's map: its rows are found by image id); a note when the run has none."""
    try:
        snapshots = loaders.map_snapshots(run)
    except (OSError, ValueError) as e:
        st.error(f"Cannot show the map as it learns: {sentence(e)}")
        return
    if snapshots is None:
        st.info(NO_SNAPSHOTS)
        return
    row_of = {row_id: row for row, row_id in enumerate(data.ids)}
    rows = np.array([row_of.get(i, -1) for i in snapshots.ids], dtype=np.int64)
    found = rows >= 0
    named = categories(data, colour_by)
    if named is not None:
        per_row, order = named
        per_point = np.where(found, np.asarray(per_row, dtype=object)[np.maximum(rows, 0)], "?")
        colouring = {"categories": (per_point, [*order, "?"] if not found.all() else order)}
    else:
        values = np.asarray(data.factors[colour_by], dtype=np.float64)[np.maximum(rows, 0)]
        colouring = {"values": np.where(found, values, np.nan)}
    figure = animation_figure(snapshots, colour_name=colour_by, height=520, **colouring)
    st.plotly_chart(figure, key="explore_animation", use_container_width=True)
    first, last = snapshots.epochs[0], snapshots.epochs[-1]
    st.caption(f"{len(snapshots.ids):,} held-out images mapped at {len(snapshots.steps)} kNN checks, epoch {first:g} "
               f"to {last:g}, each snapshot aligned with the one before (UMAP started from its layout, then "
               "Procrustes). Press Play, or move the slider, and watch the classes separate.")
    st.download_button("Map and animation as HTML (opens offline)", data=lambda: loaders.map_html(run, animation=True),
                       on_click="ignore", file_name=f"{run.id}-map-learning.html", mime="text/html",
                       key="explore_animation_html",
                       help="`ssl-explorer export RUN_ID --out map.html --animation`")


def newest_snapshot(run: Run) -> None:
    """The newest map snapshot of a training run, coloured by label: read afresh on every
    redraw of the job panel (one small file), so it follows the run."""
    try:
        newest = read_snapshots(run, newest_only=True)
    except (OSError, ValueError) as e:
        st.error(f"Cannot show the map as it learns: {sentence(e)}")
        return
    if newest is None:
        st.caption("The map as it learns: no snapshot yet (one is taken at each kNN check; none when the run "
                   "was trained before snapshots existed or with map_snapshots 0).")
        return
    figure = map_figure(newest.coords[0], newest.labels, newest.class_names, newest.ids, height=380,
                        title=f"The map as it learns: {len(newest.ids):,} held-out images at epoch "
                              f"{newest.epochs[0]:g} (step {newest.steps[0]})")
    st.plotly_chart(figure, key="train_map_snapshot", use_container_width=True)
