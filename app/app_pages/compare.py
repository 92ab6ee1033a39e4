"""Compare: 2 to 4 runs over the same images side by side. Their scores (the best marked), their
maps (Explore's WebGL map, every point drawn) aligned onto the first run's with a selection on
one map highlighted on the others, how alike
their representations are (CKA, k-NN overlap), per-class accuracy, which known factors and which
depths each keeps (from stored probes), training curves, and the
whole as a standalone HTML file or the scores as CSV. Everything is read from the run folders;
the matrices and aligned maps are computed once per version of the runs and cached."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import loaders
from ssl_core.analyses.stored import read_result
from ssl_core.analyses.runner import not_applicable
from ssl_core.analyses.compare import (DIRECTION_NOTES, best_of, knn_skipped, no_label_scores, per_class_accuracy,
                              per_class_unavailable, run_scores, score_rows, training_curve)
from ssl_core.analyses.export import MAX_COMPARED, matrix_figure, metrics_csv, plotly_text
from ssl_core.analyses.robustness import robustness_table, severity_means
from ssl_core.analyses.standings import comparison
from ssl_core.steps.readiness import comparable, viewable
from ssl_core.store.run_store import RunStore
from ssl_core.store.runs import Run, get_display_name, validate_run_id
from widgets.image_grid import image_grid
from widgets.literal import literal, sentence
from widgets.map_figure import colour_options
from widgets.run_picker import SELECTED_RUN
from widgets.scatter_map import scatter_map
from widgets.scatter_map.payload import cached_payload

QUERY_PARAM = "runs"  # ?runs=ID,ID,...: a link to a comparison
PICKED = "compare_runs"
SELECTION = "compare_selection"  # {"source": map index, "rows": [...]}: the latest box or lasso
MAX_SHOWN = 12  # images of a selection shown under the maps


def label_of(run: Run) -> str:
    name = get_display_name(run)
    return f"{name} ({run.id})" if name else run.id


def adopt_link(candidates: dict[str, Run], refused: dict[str, str]) -> None:
    """A `?runs=` that differs from the last one adopted came from a link: check, then pick.
    `refused`: why each run of the folder that is not a candidate cannot be compared."""
    requested = st.query_params.get(QUERY_PARAM)
    if not requested or requested == st.session_state.get("compare_link"):
        return
    st.session_state["compare_link"] = requested
    picked = []
    for run_id in requested.split(",")[:MAX_COMPARED]:
        try:
            validate_run_id(run_id)
        except ValueError as e:
            st.error(f"The address names a run that cannot exist. {sentence(e)}")
            continue
        if run_id in refused:
            st.error(f"The address names run '{literal(run_id)}', which cannot be compared: {sentence(refused[run_id])}")
            continue
        if run_id not in candidates:
            st.error(f"The address names run '{literal(run_id)}', which is not a readable run in this runs folder.")
            continue
        picked.append(run_id)
    st.session_state[PICKED] = picked


def on_select(index: int, rows: np.ndarray) -> None:
    """A selection on map `index` (a click, a box or a lasso) becomes the one highlighted on the
    other maps; clearing it there clears it."""
    if len(rows):
        st.session_state[SELECTION] = {"source": index, "rows": rows.tolist()}
    elif st.session_state.get(SELECTION, {}).get("source") == index:
        st.session_state.pop(SELECTION)


store = RunStore()
st.title("Compare")
readable = {s.id: store.get(s.id) for s in reversed(store.list()) if not s.broken}
refused = {run_id: why for run_id, run in readable.items() if (why := comparable(run)) is not None}
candidates = {run_id: run for run_id, run in readable.items() if run_id not in refused}
if refused:
    with st.expander(f"{len(refused)} run{'s' if len(refused) > 1 else ''} cannot be compared yet"):
        for why in refused.values():
            st.caption(sentence(why[:1].upper() + why[1:]))
if len(candidates) < 2:
    st.info(f"Comparing needs at least two runs with their embeddings and maps; {literal(store.root)} holds "
            f"{len(candidates)}. Train another on the Train page, or run `ssl-explorer demo` for the bundled runs.")
    st.stop()
adopt_link(candidates, refused)
if PICKED not in st.session_state:
    # Opening the page: the floor, the best run of each self-supervised method and the ceiling of
    # the dataset of the session's chosen run (else of the best self-supervised run).
    st.session_state[PICKED] = comparison(loaders.standings(store), MAX_COMPARED,
                                          around=st.session_state.get(SELECTED_RUN),
                                          usable=lambda s: s.run_id in candidates)

# Only runs over the same images as the first pick can join it: rows are compared image by image.
picked = [run_id for run_id in st.session_state.get(PICKED, []) if run_id in candidates]
options = list(candidates)
if picked:
    signature = loaders.ids_signature(candidates[picked[0]])
    options = [run_id for run_id in candidates if loaders.ids_signature(candidates[run_id]) == signature]
    refused = [run_id for run_id in picked if run_id not in options]
    if refused:
        st.warning(f"{literal(', '.join(refused))} did not embed the same images as {literal(picked[0])} (another "
                   "dataset or other split settings), so it cannot be compared with it image by image; it was left "
                   "out.")
        picked = [run_id for run_id in picked if run_id in options]
    left_out = len(candidates) - len(options)
    if left_out:
        st.caption(f"Offering the {len(options)} runs over the same images as {literal(picked[0])}; {left_out} other "
                   f"run{'s' if left_out > 1 else ''} on other images cannot be compared with it.")
st.session_state[PICKED] = picked
chosen = st.multiselect(f"Runs (2 to {MAX_COMPARED}, on the same dataset)", options, key=PICKED,
                        max_selections=MAX_COMPARED, format_func=lambda run_id: label_of(candidates[run_id]),
                        placeholder="Choose runs")
if len(chosen) < 2:
    st.info(f"Pick at least two runs (up to {MAX_COMPARED}) to compare them.")
    st.stop()
st.query_params[QUERY_PARAM] = ",".join(chosen)
st.session_state["compare_link"] = ",".join(chosen)
runs = [candidates[run_id] for run_id in chosen]
if st.session_state.get("compare_for") != chosen:  # a selection belongs to the runs it was made on
    st.session_state["compare_for"] = chosen
    st.session_state.pop(SELECTION, None)

# -- scores -------------------------------------------------------------------------------------
st.subheader("Scores")
scores = [run_scores(run) for run in runs]
table = []
for key, label, better in score_rows(scores):
    values = [s.get(key) for s in scores]
    best = best_of(values, better)
    row = {"score": label}
    for i, (run, value) in enumerate(zip(runs, values)):
        row[run.id] = "" if value is None else f"{value:.4g}" + (" ★" if i in best else "")
    row["better"] = better or DIRECTION_NOTES.get(key, "")
    table.append(row)
st.dataframe(pd.DataFrame(table), hide_index=True, key="compare_scores")
st.caption("★ marks the best value of each score among these runs; an empty cell is a score the run has not "
           "stored (fine-tuning appears once its analysis has been run).")
unlabelled = [run.id for run in runs if no_label_scores(run)]
if unlabelled:
    st.info(f"No labels for {literal(', '.join(unlabelled))}: kNN, linear-probe and per-class scores need "
            "labelled images, so only the label-free scores (effective rank, uniformity), the maps, CKA and k-NN "
            "overlap compare.")

# -- maps -------------------------------------------------------------------------------------
st.subheader("Maps")
try:
    maps = loaders.aligned_maps(runs)
    base = loaders.explore_data(runs[0])  # labels, splits and factors: the runs share their images
except (OSError, ValueError, KeyError) as e:
    st.error(f"Cannot show the maps: {sentence(e)}")
    st.stop()
selection = st.session_state.get(SELECTION)
if st.session_state.get("compare_colour") not in colour_options(base):
    st.session_state.pop("compare_colour", None)  # a factor of runs compared before, not of these
colour_by = st.selectbox("Colour by", colour_options(base), key="compare_colour",
                         help="the label, the split or one of the dataset's known factors, on every map")
st.caption("Each map after the first is rotated, scaled and shifted onto the first (orthogonal Procrustes), so "
           "the same image sits in about the same place. Box or Lasso (above a map) picks a group: the same "
           "images are highlighted on the others.")
images = loaders.images(runs[0]) if viewable(runs[0]) is None else None  # None: imported without images
per_row = 2 if len(runs) == 4 else len(runs)
for start in range(0, len(runs), per_row):
    for column, i in zip(st.columns(per_row), range(start, min(start + per_row, len(runs)))):
        coords, kind = maps[i]
        data = replace(base, run_id=runs[i].id, coords=coords, map_kind=kind)
        # Every map, the one it was made on included, draws the selection: a map that showed an
        # earlier one from another map would otherwise keep it.
        highlight = np.array(selection["rows"] if selection else [], dtype=np.int64)
        with column:
            st.markdown(f"**{literal(label_of(runs[i]))}**" + (" (aligned)" if i else ""))
            try:  # built once per version of the two runs' maps and colouring
                payload = cached_payload(("compare", loaders.explore_key(runs[0]), loaders.explore_key(runs[i])),
                                         colour_by, data)
            except ValueError as e:
                st.error(f"Cannot draw the map of {literal(runs[i].id)}: {sentence(e)}")
                continue
            scatter_map(payload, images, key=f"compare_map_{i}", height=440, on_select=partial(on_select, i),
                        highlight=highlight)
if selection:
    rows = selection["rows"]
    st.markdown(f"**Selection: {len(rows)} images** on the map of {literal(runs[selection['source']].id)}, "
                "highlighted on the others")
    shown = rows[:MAX_SHOWN]
    if images is None:
        st.caption(", ".join(f"{base.ids[r]} · {base.label_name(r)}" for r in shown) + " (imported without images)")
    else:
        image_grid(images[shown], [f"{base.ids[r]} · {base.label_name(r)}" for r in shown], columns=MAX_SHOWN // 2)
    if len(rows) > MAX_SHOWN:
        st.caption(f"showing the first {MAX_SHOWN} of {len(rows)}")

# -- representation similarity ---------------------------------------------------------------------
st.subheader("How alike the representations are")
try:
    similarity = loaders.similarity(runs)
except (OSError, ValueError) as e:
    st.error(f"Cannot compare the embeddings: {sentence(e)}")
else:
    names = [run.id for run in runs]
    cka_col, overlap_col = st.columns(2)
    cka_col.plotly_chart(matrix_figure(similarity["cka"], names, "linear CKA"), key="compare_cka")
    overlap_col.plotly_chart(matrix_figure(similarity["knn_overlap"], names,
                                           f"k-NN overlap (k={similarity['k']})"), key="compare_overlap")
    st.caption(f"On the {similarity['images']:,} shared test images. CKA is 1 for representations equal up to a "
               "rotation and a scale; the overlap is the share of each image's nearest neighbours two runs agree on.")

# -- per class ----------------------------------------------------------------------------------
st.subheader("Accuracy per class (kNN top-1)")
per_class = {run.id: per_class_accuracy(run) for run in runs}
for run in runs:
    reason = per_class_unavailable(run)
    if reason:  # no labels, or scored before eval.json held per-class accuracy
        st.info(f"No per-class scores for {literal(run.id)}: {sentence(reason)}.")
present = [run for run in runs if per_class[run.id] is not None]
if len(present) >= 2:
    reference = present[0]
    count = max(len(per_class[run.id]) for run in present)
    class_names = base.class_names
    frame = pd.DataFrame({"class": [class_names[c] if c < len(class_names) else str(c) for c in range(count)]})
    for run in present:
        values = per_class[run.id]
        frame[run.id] = [values[c] if c < len(values) else None for c in range(count)]
    for run in present[1:]:
        frame[f"{run.id} − {reference.id}"] = (frame[run.id].astype(float) - frame[reference.id].astype(float)).round(4)
    st.dataframe(frame, hide_index=True, key="compare_per_class")
    st.caption(f"The difference columns: each run's accuracy on a class minus {literal(reference.id)}'s.")

# -- what each representation keeps ------------------------------------------------------------
st.subheader("What each representation keeps")
factors = {run.id: read_result(run, "factors") for run in runs}
layers = {run.id: read_result(run, "layers") for run in runs}
without = [run.id for run in runs if not (factors[run.id] or {}).get("factors") and not (layers[run.id] or {}).get("layers")]
unfit = {run.id: not_applicable(run).get("layers") for run in runs}  # no labels, no encoder...
if [run_id for run_id in without if not unfit[run_id]]:
    st.caption("No factor or layer-wise probe stored for " + literal(", ".join(r for r in without if not unfit[r]))
               + ": `ssl-explorer analyze RUN_ID --only factors,layers`, or the Evaluate page's button.")
for run_id, reason in unfit.items():
    if reason and run_id in without:
        st.caption(f"No layer-wise probe for {literal(run_id)} ({sentence(reason)}).")
factor_col, layer_col = st.columns(2)
figure = go.Figure()
for run in runs:
    entries = [e for e in (factors[run.id] or {}).get("factors") or [] if isinstance(e, dict) and "score" in e]
    if entries:
        figure.add_trace(go.Bar(x=[plotly_text(e["name"]) for e in entries], y=[e["score"] for e in entries],
                                name=run.id))  # factor names come from users' metadata
if figure.data:
    figure.update_layout(barmode="group", height=360, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                         title={"text": "known factors read from the embedding (R², accuracy for categorical)",
                                "x": 0.01, "font": {"size": 13}}, yaxis={"range": [0, 1]})
    factor_col.plotly_chart(figure, key="compare_factors")
figure = go.Figure()
for run in runs:
    entries = [e for e in (layers[run.id] or {}).get("layers") or [] if isinstance(e, dict) and "linear_top1" in e]
    if entries:
        figure.add_trace(go.Scatter(x=[e["name"] for e in entries], y=[e["linear_top1"] for e in entries],
                                    mode="lines+markers", name=run.id))
if figure.data:
    figure.update_layout(height=360, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                         title={"text": "linear probe at each depth (shallow → deep)", "x": 0.01, "font": {"size": 13}})
    layer_col.plotly_chart(figure, key="compare_layers")
if any(factors.values()):
    st.caption("A factor the representation reads well is one it kept; a low score on a factor its augmentations "
               "vary (colour under colour jitter, position under crops) is an invariance it learned.")

# -- robustness to corruptions ----------------------------------------------------------------
st.subheader("Robustness to corruptions")
robustness = {run.id: read_result(run, "robustness") for run in runs}
for run in runs:
    if robustness[run.id] is None:
        reason = not_applicable(run).get("robustness")
        st.caption(f"No robustness for {literal(run.id)}: " + (f"{sentence(reason)}." if reason else
                   f"`ssl-explorer analyze {run.id} --only robustness` computes it, or the Evaluate page's button."))
stored = [run for run in runs if robustness[run.id] is not None]
if stored:
    curve_col, table_col = st.columns(2)
    figure = go.Figure()
    for run in stored:
        figure.add_trace(go.Scatter(x=list(range(6)), y=severity_means(robustness[run.id]), mode="lines+markers",
                                    name=run.id))
    figure.update_layout(height=340, margin={"l": 0, "r": 0, "t": 40, "b": 0},
                         title={"text": "kNN top-1, mean over the corruptions", "x": 0.01, "font": {"size": 13}},
                         xaxis={"title": {"text": "severity (0: clean)"}, "tickvals": list(range(6))},
                         yaxis={"tickformat": ".0%", "rangemode": "tozero"})
    curve_col.plotly_chart(figure, key="compare_robustness")
    table = robustness_table({run.id: robustness[run.id] for run in stored})
    table_col.dataframe(pd.DataFrame(table), hide_index=True, key="compare_robustness_table")
    st.caption("kNN top-1 of each run's test images under CIFAR-10-C's corruptions (Hendrycks & Dietterich 2019), "
               "per corruption the mean over its five severities. A run that loses little from clean to corrupted "
               "learned features its augmentations made invariant to such changes.")

# -- training curves --------------------------------------------------------------------------
st.subheader("Training curves")
curve_cols = st.columns(2)
for column, (key, title) in zip(curve_cols, (("loss", "training loss"), ("knn_top1", "held-out kNN top-1"))):
    figure = go.Figure()
    for run in runs:
        epochs, values = training_curve(run, key)
        if values:
            figure.add_trace(go.Scatter(x=epochs, y=values, mode="lines+markers" if len(values) < 3 else "lines",
                                        name=run.id))
    figure.update_layout(title={"text": title, "x": 0.01, "font": {"size": 13}}, height=340,
                         margin={"l": 0, "r": 0, "t": 40, "b": 0}, xaxis={"title": {"text": "epoch"}})
    column.plotly_chart(figure, key=f"compare_curve_{key}")
    if key == "knn_top1":
        for run in runs:
            reason = knn_skipped(run)
            if reason:
                column.caption(f"No kNN curve for {literal(run.id)} ({sentence(reason)}).")
st.caption("Losses of different methods are on different scales: compare their shapes, not their values.")

# -- export -----------------------------------------------------------------------------------
st.subheader("Export")
stem = "comparison-" + "-vs-".join(chosen)[:120]
html_col, csv_col = st.columns(2)
html_col.download_button("Comparison as HTML (opens offline)", data=lambda: loaders.comparison_html(runs),
                         file_name=f"{stem}.html", mime="text/html", on_click="ignore", key="compare_html",
                         help="scores, aligned maps with each image on hover, CKA and overlap: one standalone file")
csv_col.download_button("Scores as CSV", data=metrics_csv(runs), file_name=f"{stem}.csv", mime="text/csv",
                        on_click="ignore", key="compare_csv", help="one row per run: what it is and every stored score")
st.caption("From the command line: `ssl-explorer export " + " ".join(chosen) + " --out comparison.html` (or .csv).")
