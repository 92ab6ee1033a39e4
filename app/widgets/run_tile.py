"""One run on the Overview: its map as a small picture coloured by label, what made it, one
sentence placing its kNN top-1 between its dataset's floor and ceiling, and a link that opens it
in Explore (`explore?run=ID`, which makes it the session's selected run)."""

from __future__ import annotations

import streamlit as st

import loaders
from ssl_core.analyses.standings import DatasetStandings, Standing
from ssl_core.store.run_store import RunStore
from widgets.literal import literal, sentence

EXPLORE_PAGE = "app_pages/explore.py"


def run_tile(store: RunStore, board: DatasetStandings, run: Standing, width: int) -> None:
    """The tile of `run`, `width` pixels wide, in the current container: its map, a link to it
    named by what made it, and the sentence that places it."""
    with st.container(border=False, width=width, gap="xxsmall", key=f"overview_tile_{run.run_id}"):
        if run.has_map and "embed" not in run.lacking:
            try:
                st.image(loaders.thumbnail(store.get(run.run_id)), width="stretch")
            except (OSError, ValueError, KeyError) as e:
                st.caption(f"No map to draw: {sentence(e)}")
        elif run.knn_top1 is not None:  # without scores either, the sentence below says what is missing
            st.caption(sentence(run.missing()))
        st.page_link(EXPLORE_PAGE, label=literal(run.method), icon=":material/scatter_plot:",
                     query_params={"run": run.run_id}, disabled=not run.has_map,
                     help=literal(f"{run.method} · {run.backbone} · {run.dataset}: open run {run.run_id} in Explore"))
        name = f"{literal(run.name)} · " if run.name else ""
        st.caption(f"{name}{literal(run.backbone)} · {sentence(board.sentence(run))}")
