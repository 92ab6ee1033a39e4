"""Choosing the run a page shows.

One run is "the selected run" for the whole session (`SELECTED_RUN`): the run a person chose
last anywhere in the app (opening a run on the Runs page or from an Overview tile, starting a job
on the Train page, following a link, or picking one here), so every page follows it. Until they
choose one, each page opens on its own default (the best self-supervised run, say), which does
not become the session's choice. The page's address carries what it shows as `?run=RUN_ID`, so a
link opens the same run; an id that comes from an address is validated with `validate_run_id`
before it touches the file system.
"""

from __future__ import annotations

from typing import Callable

import streamlit as st

import loaders
from ssl_core.analyses.standings import best_self_supervised
from ssl_core.store.run_store import RunStore, RunSummary
from ssl_core.store.runs import Run, get_display_name, validate_run_id
from widgets.literal import literal, sentence

SELECTED_RUN = "selected_run"  # shared by every page, hence no page prefix
QUERY_PARAM = "run"


def select_run(run_id: str) -> None:
    """Make `run_id` the selected run of the session (call before switching pages)."""
    st.session_state[SELECTED_RUN] = run_id


def describe(summary: RunSummary, run: Run | None = None) -> str:
    """'name · method on dataset · status' for menus; the id when the run has no name."""
    name = get_display_name(run) if run is not None else None
    head = f"{name} ({summary.id})" if name else summary.id
    return f"{head} · {summary.method} on {summary.dataset} · {summary.status}"


def _adopt_query_param(store: RunStore, summaries: dict[str, RunSummary], shown: str | None) -> bool:
    """A `?run=` that differs from the selected run and from the run the page shows (`shown`:
    its default, which the page writes into the address) came from a link: check it, then select
    it. False when the link names no readable run (the error is shown)."""
    requested = st.query_params.get(QUERY_PARAM)
    if requested is None or requested in (st.session_state.get(SELECTED_RUN), shown):
        return True
    try:
        validate_run_id(requested)
    except ValueError as e:
        st.error(f"The address asks for a run that cannot exist. {sentence(e)}. Choose a run below.")
        return False
    summary = summaries.get(requested)
    if summary is None:
        st.error(f"The address asks for run '{literal(requested)}', but there is no such run in "
                 f"{literal(store.root)}. Choose a run below.")
        return False
    if summary.broken:
        st.error(f"Run '{literal(requested)}' cannot be read: {sentence(summary.broken)}")
        return False
    select_run(requested)
    return True


def pick_run(store: RunStore, page: str, label: str = "Run",
             prefer: Callable[[RunSummary], bool] | None = None,
             blocker: Callable[[Run], str | None] | None = None,
             default: Callable[[], str | None] | None = None) -> Run | None:
    """A menu of the readable runs (newest first) that starts on the selected run; when none is
    selected, on the page's default: the run `default` names (the page's most telling run, asked
    only then), else the newest run that `prefer` accepts. Returns the run in the menu, or None.
    `page` prefixes the menu's session-state key. The default stays in the menu while the page is
    open, but only a run the person chooses becomes the session's selected run.

    `blocker` is the library's answer to this page's question (`ssl_core.steps.readiness`:
    `explorable`, `embedded`, ...): the sentence that keeps a run from the page, or None. A
    blocked choice shows that sentence as a warning and returns None; without `prefer`, the page
    falls back on the newest finished run that nothing blocks."""
    if prefer is None and blocker is not None:
        prefer = lambda s: s.status == "finished" and blocker(store.get(s.id)) is None  # noqa: E731
    key = f"{page}_run_picker"
    summaries = {s.id: s for s in store.list()}
    link_ok = _adopt_query_param(store, summaries, st.session_state.get(key))
    readable = [s for s in reversed(summaries.values()) if not s.broken]
    if not readable:
        st.info(f"There are no runs in {literal(store.root)} yet: start one on the Train page, or run "
                "`ssl-explorer demo` to add the bundled demo runs.")
        return None
    labels = {s.id: describe(s, store.get(s.id)) for s in readable}
    selected = st.session_state.get(SELECTED_RUN)
    # Set the menu's value before it is drawn (Streamlit allows that, not after): it follows the
    # session's selection even when that changed on another page.
    if selected in labels:
        st.session_state[key] = selected
    elif st.session_state.get(key) not in labels:
        # A bad link shows its error over an empty menu rather than some other run.
        st.session_state[key] = _default(readable, labels, prefer, default) if link_ok else None

    def on_change() -> None:
        choice = st.session_state[key]
        if choice is not None:
            select_run(choice)
            st.query_params[QUERY_PARAM] = choice

    choice = st.selectbox(label, list(labels), index=None, format_func=labels.get, key=key,
                          placeholder="Choose a run", on_change=on_change)
    if choice is None:
        return None
    if st.query_params.get(QUERY_PARAM) != choice:
        st.query_params[QUERY_PARAM] = choice  # keep the address a link to what is shown
    run = store.get(choice)
    problem = blocker(run) if blocker is not None else None
    if problem:
        st.warning(sentence(problem[:1].upper() + problem[1:]))
        return None
    return run


def _default(readable: list[RunSummary], labels: dict[str, str], prefer: Callable[[RunSummary], bool] | None,
             default: Callable[[], str | None] | None) -> str | None:
    """The run a page opens on while the session has no selected run."""
    chosen = default() if default is not None else None
    if chosen in labels:
        return chosen
    preferred = [s.id for s in readable if prefer is not None and prefer(s)]
    return preferred[0] if preferred else None


def best_self_supervised_id(store: RunStore, blocker: Callable[[Run], str | None] | None = None) -> str | None:
    """The finished self-supervised run with the best kNN top-1 that `blocker` lets onto the page
    (`analyses.standings.best_self_supervised`): where Explore, Evaluate and Clusters open."""
    best = best_self_supervised(loaders.standings(store), lambda s: s.status == "finished" and (
        blocker is None or blocker(store.get(s.run_id)) is None))
    return best.run_id if best is not None else None
