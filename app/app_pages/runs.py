"""Runs: every run in the runs folder, and what can be done with one.

Actions (rename, resume, cancel, delete) run in button callbacks, which Streamlit calls before
it draws the page again, so the table already shows their effect; each leaves its outcome in
`runs_message` for that one rerun.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ssl_core.workflows import jobs
from ssl_core.steps.readiness import resumable
from ssl_core.store.reading import os_error_message
from ssl_core.store.run_store import RunStore, RunSummary
from ssl_core.store.runs import get_display_name, set_display_name
from widgets.literal import code, literal, sentence
from widgets.run_picker import SELECTED_RUN, describe, select_run

ACTIVE = ("queued", "running")


def runs_table(store: RunStore, summaries: list[RunSummary]) -> pd.DataFrame:
    rows = []
    for s in reversed(summaries):  # newest first
        rows.append({
            "name": "" if s.broken else (get_display_name(store.get(s.id)) or ""),
            "run": s.id, "method": s.method, "dataset": s.dataset, "backbone": s.backbone,
            "status": s.status,
            "progress": f"{s.step or 0}/{s.total_steps}" if s.total_steps is not None else "",
            "kNN top-1": s.knn_top1, "created": s.created[:16].replace("T", " "),
            "note": s.broken or s.error or "; ".join(s.warnings),
        })
    return pd.DataFrame(rows)


def say(kind: str, text: str) -> None:
    """Show `text` with st.<kind> at the top of the next rerun."""
    st.session_state["runs_message"] = (kind, text)


def rename(store: RunStore, run_id: str) -> None:
    try:
        name = set_display_name(store.get(run_id), st.session_state[f"runs_name_{run_id}"])
    except (KeyError, ValueError) as e:
        say("error", f"Cannot rename {literal(run_id)}: {sentence(e.args[0])}")
        return
    except OSError as e:
        say("error", f"Cannot rename {literal(run_id)}: {sentence(os_error_message(e, 'write'))}")
        return
    say("success", f"Run {literal(run_id)} is now called “{literal(name)}”." if name
        else f"Run {literal(run_id)} has no name now.")


def resume(store: RunStore, run_id: str) -> None:
    try:
        jobs.resume(store, run_id)
    except (KeyError, ValueError) as e:
        say("error", f"Cannot resume {literal(run_id)}: {sentence(e.args[0])}")
    except OSError as e:
        say("error", f"Cannot resume {literal(run_id)}: {sentence(os_error_message(e))}")
    else:
        select_run(run_id)
        say("success", f"Resuming {literal(run_id)} from its last checkpoint; follow it on the Train page.")


def cancel(store: RunStore, run_id: str) -> None:
    if jobs.cancel(store, run_id):
        say("info", f"Asked {literal(run_id)} to stop: it writes a checkpoint, then shows as interrupted.")
    else:
        say("warning", f"{literal(run_id)} is not running any more.")


def delete(store: RunStore, run_id: str) -> None:
    st.session_state.pop("runs_confirm_delete", None)
    try:
        store.delete(run_id)  # checks, at this click, that nothing trains or post-processes the run
    except (KeyError, ValueError) as e:
        say("error", f"Could not delete {literal(run_id)}: {sentence(e.args[0])}")
    except OSError as e:
        say("error", f"Could not delete {literal(run_id)}: {sentence(os_error_message(e, 'move or remove'))}. "
                     "Nothing was lost: the run is still complete, or already gone from the list.")
    else:
        say("success", f"Deleted run {literal(run_id)}.")


store = RunStore()
st.title("Runs")
st.caption(f"Runs folder: {code(store.root.resolve())} (set `SSL_EXPLORER_RUNS` to use another)")
message = st.session_state.pop("runs_message", None)
if message:
    getattr(st, message[0])(message[1])

summaries = store.list()
if not summaries:
    st.info("No runs yet. Start one on the Train page, run `ssl-explorer train` in a terminal, "
            "`ssl-explorer demo` to add the bundled demo runs, or import embeddings you already have.")
    st.page_link("app_pages/train.py", label="Train a model", icon=":material/model_training:")
    st.page_link("app_pages/import_page.py", label="Import embeddings or an encoder", icon=":material/upload_file:")
    st.stop()

st.dataframe(runs_table(store, summaries), hide_index=True, column_config={
    "kNN top-1": st.column_config.NumberColumn(format="%.3f", help="weighted kNN (k=20) on the test split"),
    "progress": st.column_config.TextColumn(help="training steps done / total"),
    "note": st.column_config.TextColumn(width="large", help="why a run failed, stopped or cannot be read"),
})
for s in summaries:
    if s.broken:
        st.warning(f"**{literal(s.id)}** cannot be read: {sentence(s.broken)}")

# -- one run ------------------------------------------------------------------------------
st.subheader("Act on a run")
by_id = {s.id: s for s in summaries}
if st.session_state.get("runs_action_run") not in by_id:
    # Deleted here or elsewhere, or a first visit: start on the session's run, else the newest.
    st.session_state.pop("runs_action_run", None)
    if st.session_state.get(SELECTED_RUN) in by_id:
        st.session_state["runs_action_run"] = st.session_state[SELECTED_RUN]
run_id = st.selectbox("Run", list(reversed(by_id)), key="runs_action_run",
                      format_func=lambda i: f"{i} · broken" if by_id[i].broken else describe(by_id[i], store.get(i)))
summary = by_id[run_id]
active = summary.status in ACTIVE

if summary.broken:
    st.caption("This run cannot be read, so it can only be deleted.")
else:
    open_col, follow_col, resume_col, cancel_col = st.columns(4)
    if open_col.button("Open in Explore", key="runs_open", type="primary"):
        select_run(run_id)
        st.switch_page("app_pages/explore.py", query_params={"run": run_id})
    if follow_col.button("Follow on Train page", key="runs_follow"):
        select_run(run_id)
        st.switch_page("app_pages/train.py", query_params={"run": run_id})
    not_resumable = resumable(store.get(run_id))
    resume_col.button("Resume", key="runs_resume", on_click=resume, args=(store, run_id),
                      disabled=not_resumable is not None,
                      help=sentence(not_resumable) if not_resumable else
                      "continue an interrupted or failed run from its last checkpoint")
    cancel_col.button("Cancel", key="runs_cancel", on_click=cancel, args=(store, run_id), disabled=not active,
                      help="stop the job; it keeps a checkpoint and can be resumed")
    if summary.error and summary.status == "failed":
        st.error(sentence(summary.error))
    elif summary.error and summary.status == "interrupted":
        st.info(sentence(summary.error))

    with st.form(key="runs_rename_form", border=False):
        name_col, save_col = st.columns([4, 1], vertical_alignment="bottom")
        name_col.text_input("Display name", value=get_display_name(store.get(run_id)) or "",
                            key=f"runs_name_{run_id}", placeholder="e.g. baseline, lr 1e-3",
                            help="shown beside the run id on every page; stored in the run folder")
        save_col.form_submit_button("Rename", key="runs_rename", on_click=rename, args=(store, run_id))

# Deleting takes two clicks: the first asks, the second (a differently labelled button) deletes.
if st.session_state.get("runs_confirm_delete") == run_id:
    st.warning(f"Delete run **{literal(run_id)}** and every file in its folder? This cannot be undone.")
    yes_col, no_col, _ = st.columns([1, 1, 4])
    yes_col.button("Yes, delete it", key="runs_delete_confirm", type="primary", on_click=delete,
                   args=(store, run_id), disabled=active)
    no_col.button("Keep it", key="runs_delete_cancel", on_click=lambda: st.session_state.pop("runs_confirm_delete"))
    if active:
        st.caption("The run is still training: cancel it first.")
else:
    st.button("Delete…", key="runs_delete", on_click=lambda: st.session_state.update(runs_confirm_delete=run_id))
