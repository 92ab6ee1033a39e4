"""The Overview's chart of one dataset: every run's kNN top-1 against its floors and its ceiling
(bars, coloured by role), and beside it, on the same rows, what each representation keeps of the
dataset's known factors (the stored factor probe, a heatmap). Built from
`analyses.standings.DatasetStandings` as a Vega-Lite spec for `st.vega_lite_chart`.

Vega-Lite, not Plotly: the Overview is the first page a demo opens, and a fresh browser loads
and parses the JavaScript of a chart's renderer before it draws the chart: Streamlit's Vega-Lite
renderer is 1.1 MB of it, its Plotly one 4.7 MB (the Overview's scripts: 3.2 MB in all, against
6.8 MB with Plotly; bench/results/demo_start_cpu.md).
Vega draws titles and axis labels as text and escapes what its tooltips show, so a user's dataset
and run names need no escaping here (checked in Chromium with tests/hostile_runs.py's names)."""

from __future__ import annotations

from ssl_core.analyses.standings import FLOOR, SELF_SUPERVISED, SUPERVISED, DatasetStandings

# Role -> colour: grey floors, blue self-supervised runs, green supervised ones (the page says so).
ROLE_COLOURS = {FLOOR: "#9e9e9e", SELF_SUPERVISED: "#2f6fd0", SUPERVISED: "#2e9d57"}
INSIDE = 0.8  # a bar longer than this (of 1) carries its score inside its end, in white
FACTOR_WIDTH = 20  # px per factor column of the heatmap


def standings_spec(board: DatasetStandings, row_height: int = 20, bar_width: int = 140) -> dict:
    """One row per run, the best at the top: its kNN top-1 as a bar `bar_width` px long at 1.0,
    then (when any run of the dataset stored a factor probe) its probe score for each known factor,
    R² or accuracy from 0 (discarded) to 1 (kept). Runs without a score have an empty bar."""
    runs = sorted(board.runs, key=lambda s: s.knn_top1 if s.knn_top1 is not None else -1.0, reverse=True)
    rows = [board.label(s) for s in runs]
    _, names, _ = board.factor_table()
    y = {"field": "run", "type": "nominal", "sort": rows, "scale": {"domain": rows}, "title": None}
    bars = [{"run": board.label(s), "knn": s.knn_top1 or 0.0, "role": s.role,
             "score": f"{s.knn_top1:.3f}" if s.knn_top1 is not None else "no score"} for s in runs]
    score_text = {"text": {"field": "score"}, "x": {"field": "knn", "type": "quantitative"}, "y": y}
    knn_view = {
        "width": bar_width, "height": {"step": row_height}, "data": {"values": bars},
        "layer": [
            {"mark": {"type": "bar", "cornerRadiusEnd": 1},
             "encoding": {
                 "x": {"field": "knn", "type": "quantitative", "scale": {"domain": [0, 1]}, "axis": None},
                 "y": {**y, "axis": {"ticks": False, "domain": False, "labelFontSize": 11, "labelLimit": 160,
                                        "labelOverlap": False}},
                 "color": {"field": "role", "type": "nominal", "legend": None,
                           "scale": {"domain": list(ROLE_COLOURS), "range": list(ROLE_COLOURS.values())}},
                 "tooltip": [{"field": "run", "title": "run"},
                             {"field": "score", "title": "kNN top-1"}]}},
            {"transform": [{"filter": f"datum.knn > {INSIDE}"}],
             "mark": {"type": "text", "align": "right", "dx": -3, "fontSize": 10, "color": "white"},
             "encoding": score_text},
            {"transform": [{"filter": f"datum.knn <= {INSIDE}"}],
             "mark": {"type": "text", "align": "left", "dx": 3, "fontSize": 10, "color": "#555"},
             "encoding": score_text},
        ],
    }
    title = {"text": f"{board.dataset}: kNN top-1" + (" · factors kept" if names else ""), "anchor": "start",
             "fontSize": 13, "fontWeight": "bold"}
    if not names:  # concatenated all the same: Streamlit would take a top-level "data" out of the spec
        return {"title": title, "hconcat": [knn_view], "config": {"view": {"stroke": None}}}
    cells = [{"run": board.label(s), "factor": name, "kept": score}
             for s in runs for name, score in (s.factors or ())]
    factor_view = {
        "width": {"step": FACTOR_WIDTH}, "height": {"step": row_height}, "data": {"values": cells},
        "mark": "rect",
        "encoding": {
            "x": {"field": "factor", "type": "nominal", "sort": names, "title": None,
                  "axis": {"orient": "top", "labelAngle": -45, "labelFontSize": 10, "labelOverlap": False,
                           "ticks": False, "domain": False}},
            "y": {**y, "axis": None},
            "color": {"field": "kept", "type": "quantitative", "legend": None,
                      "scale": {"scheme": "blues", "domain": [0, 1]}},
            "tooltip": [{"field": "run"}, {"field": "factor"}, {"field": "kept", "format": ".2f"}]},
    }
    return {"title": title, "hconcat": [knn_view, factor_view], "spacing": 8,
            "config": {"view": {"stroke": None}}}
