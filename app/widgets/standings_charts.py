"""The Overview's chart of one dataset: every run's kNN top-1 against its floors and its ceiling
(bars, coloured by role), and beside it, on the same rows, what each representation keeps of the
dataset's known factors (the stored factor probe, a heatmap). Built from
`analyses.standings.DatasetStandings`; every text is escaped for Plotly."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ssl_core.analyses.export import plotly_text
from ssl_core.analyses.standings import FLOOR, SELF_SUPERVISED, SUPERVISED, DatasetStandings

# Role -> colour: grey floors, blue self-supervised runs, green supervised ones (the page says so).
ROLE_COLOURS = {FLOOR: "#9e9e9e", SELF_SUPERVISED: "#2f6fd0", SUPERVISED: "#2e9d57"}
FRAME = 70  # px of title and factor names above the rows
TITLE = 30  # px of title alone


def standings_figure(board: DatasetStandings, row_height: int = 20) -> go.Figure:
    """One row per run, the best at the top: its kNN top-1 as a bar, then (when any run of the
    dataset stored a factor probe) its probe score for each known factor, R² or accuracy from 0
    (discarded) to 1 (kept). Runs without a score have an empty bar."""
    runs = sorted(board.runs, key=lambda s: s.knn_top1 if s.knn_top1 is not None else -1.0)
    rows = [plotly_text(board.label(s)) for s in runs]
    _, names, _ = board.factor_table()
    with_factors = bool(names)
    figure = make_subplots(rows=1, cols=2 if with_factors else 1, shared_yaxes=True, horizontal_spacing=0.03,
                           column_widths=[0.45, 0.55] if with_factors else None)
    figure.add_trace(go.Bar(
        x=[s.knn_top1 or 0 for s in runs], y=rows, orientation="h", marker={"color": [ROLE_COLOURS[s.role] for s in runs]},
        text=[f"{s.knn_top1:.3f}" if s.knn_top1 is not None else "no score" for s in runs], textposition="auto",
        textfont={"size": 10}, insidetextanchor="end", hovertemplate="%{y}: kNN top-1 %{x:.3f}<extra></extra>"),
        row=1, col=1)
    if with_factors:
        scores = [[dict(s.factors or ()).get(name) for name in names] for s in runs]
        figure.add_trace(go.Heatmap(
            z=scores, x=[plotly_text(n) for n in names], y=rows, zmin=0, zmax=1, colorscale="Blues", showscale=False,
            hoverongaps=False, hovertemplate="%{y} · %{x}: %{z:.2f}<extra></extra>"), row=1, col=2)
        figure.update_xaxes(side="top", tickangle=-35, tickfont={"size": 10}, fixedrange=True, row=1, col=2)
    figure.update_xaxes(range=[0, 1], showticklabels=False, showgrid=False, fixedrange=True, row=1, col=1)
    figure.update_yaxes(tickfont={"size": 11}, fixedrange=True)
    frame = FRAME if with_factors else TITLE
    figure.update_layout(
        height=frame + row_height * len(runs), bargap=0.2, showlegend=False,
        margin={"l": 0, "r": 0, "t": frame - 6, "b": 0},
        title={"text": f"<b>{plotly_text(board.dataset)}</b>: kNN top-1" + (" · factors kept" if with_factors else ""),
               "x": 0, "xanchor": "left", "y": 0.99, "yanchor": "top", "font": {"size": 13}})
    return figure
