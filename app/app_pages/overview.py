"""Overview: what the runs learned, on one screen. For each dataset, the kNN top-1 of every run
against its untrained floors and its supervised ceiling, what each representation keeps of the
dataset's known factors (the stored factor probe), and a tile per run trained here: its map
coloured by label, its method and backbone, one sentence placing its score between floor and
ceiling, and a link that opens it in Explore. Stored results only, read through cached loaders
(ssl_core.analyses.standings): nothing is trained or computed here."""

from __future__ import annotations

import streamlit as st

import loaders
from ssl_core.analyses.standings import DatasetStandings
from ssl_core.store.run_store import RunStore
from widgets.literal import literal
from widgets.run_tile import run_tile
from widgets.standings_charts import standings_spec

# At 1400 x 900 px with the sidebar open: two datasets side by side, each with three tiles a row
# (two rows: six runs trained per dataset fit on one screen); one dataset beside its chart.
TILE_WIDTH = {1: 170, 2: 140}  # px, by datasets side by side
ROW_HEIGHT = {1: 24, 2: 17}  # px per run in a dataset's chart
BAR_WIDTH = {1: 120, 2: 170}  # px of a kNN bar at 1.0: the chart fits its column beside the factors


def show(index: int, board: DatasetStandings, side_by_side: int) -> None:
    """The dataset's chart, then its tiles (beside each other when it is alone)."""
    chart_col, tiles_col = st.columns([2, 3], gap="medium") if side_by_side == 1 else (st.container(),) * 2
    chart_col.vega_lite_chart(standings_spec(board, ROW_HEIGHT[side_by_side], BAR_WIDTH[side_by_side]),
                              width="content", key=f"overview_chart_{index}")
    with tiles_col, st.container(horizontal=True, gap="small", key=f"overview_tiles_{index}"):
        for run in board.tiles():
            run_tile(store, board, run, TILE_WIDTH[side_by_side])
        if not board.tiles():
            st.caption(f"No run on {literal(board.dataset)} was trained here yet.")


store = RunStore()
title_col, intro_col = st.columns([1, 3], vertical_alignment="center")
title_col.title("Overview")
boards = loaders.standings(store)
if not boards:
    if any(not summary.broken for summary in store.list()):  # imported embeddings, users' own encoders
        st.info("None of the runs here was made by a method of this library, so none has a floor or a ceiling to "
                "stand against: open them on the Runs or Explore page, or run `ssl-explorer demo` to add the "
                "bundled demo runs.")
    else:
        st.info(f"There are no runs in {literal(store.root)} yet: run `ssl-explorer demo` to add the bundled demo "
                "runs, or start one on the Train page.")
    st.stop()
intro_col.caption("How far self-supervised encoders (:blue[blue]) get from an untrained network (:gray[grey], the "
                  "floor) towards one trained on the labels (:green[green], the ceiling), by kNN top-1 on held-out "
                  "images; beside it, how well a linear probe still reads each known factor of the images from "
                  "each representation (dark: kept, light: discarded). Each tile is a run's map coloured by label.")
side_by_side = min(len(boards), 2)
for start in range(0, len(boards), side_by_side):
    for column, index in zip(st.columns(side_by_side, gap="medium"), range(start, len(boards))):
        with column:
            show(index, boards[index], side_by_side)
