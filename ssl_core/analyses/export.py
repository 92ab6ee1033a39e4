"""Runs as files to share: a run's map or a comparison of runs as one standalone HTML file, and
the scores of runs as CSV. `ssl-explorer export RUN_ID [RUN_ID ...] --out FILE` and the Compare
page's download buttons both come here.

HTML (opens offline: plotly.js is embedded, nothing is fetched)
    one run      its 2-D map coloured by label, titled with the run's name, method, dataset and
                 scores; every point's image is embedded as a base64 PNG and shown beside the
                 map when the point is hovered (Plotly's hover text cannot hold images). With
                 `animation`, below it the map as it learns (map_animation.py): one frame per
                 kNN check of training, an epoch slider and a play button (~50 kB a snapshot
                 of 2,000 points), or a note when the run has no snapshots.
    2 to 4 runs  the scores table (the best of each score marked), the maps aligned onto the
                 first run's (Procrustes), the CKA and k-NN overlap matrices of every pair, and
                 the images on hover as above (the runs share their images).
    Size: plotly.js is 4.8 MB; each 32 px image adds about 1.4 kB (base64 PNG), so a 5,000-image
    run comes to about 12 MB, and a comparison of 3 such runs (images shared) to about 13 MB.

CSV: one row per run, in the order given. The columns, always present and in this order:
    run_id, display_name, method, backbone, dataset, epochs      what the run is
    knn_top1, knn_top1_k20, knn_top1_k200                        kNN top-1 on the test split
    linear_top1, linear_top1_1pct, linear_top1_10pct             linear probe, all / 1% / 10% labels
    effective_rank, uniformity                                   geometry of the test embeddings
    images_per_s                                                 mean training throughput
    num_train, num_test, embedding_dim, seconds                  sizes; eval.json's scoring time
then any other scalar score present in one of the runs, sorted by name: fine-tuning as
`finetune_<mode>_top1` (analysis/finetune.json), the layer-wise probe as `layer_<layer>_top1`,
the factor probe as `factor_<factor>`, cluster agreement with the labels as
`kmeans_purity|nmi|ari` and `hdbscan_purity|nmi|ari`, other analyses' top-level numbers as
`<analysis>_<key>`, eval.json numbers not listed above. A score a run lacks is an empty cell.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from plotly.colors import qualitative

from ssl_core.analyses.compare import (
    DIRECTION_NOTES,
    aligned_maps,
    best_of,
    check_comparable,
    compare_many,
    run_scores,
    score_rows,
)
from ssl_core.analyses.map_animation import NO_SNAPSHOTS, animation_figure
from ssl_core.steps.browsing import label_name, run_images
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.map_snapshots import read_snapshots
from ssl_core.steps.projection import load_map
from ssl_core.steps.readiness import explorable, refuse
from ssl_core.store.atomic import atomic_write_bytes
from ssl_core.store.runs import Run, get_display_name

FORMATS = (".html", ".csv")
MAX_COMPARED = 4
# An HTML export holds every image as a PNG (about 1.5 KB at 32 px): 100k images is ~150 MB.
HTML_MAX_IMAGES = 100_000
IDENTITY_COLUMNS = ("run_id", "display_name", "method", "backbone", "dataset", "epochs")
SCORE_COLUMNS = ("knn_top1", "knn_top1_k20", "knn_top1_k200", "linear_top1", "linear_top1_1pct",
                 "linear_top1_10pct", "effective_rank", "uniformity", "images_per_s", "num_train", "num_test",
                 "embedding_dim", "seconds")
# 24 distinct colours, as the app's map uses (the default palette repeats after 10).
PALETTE = qualitative.Dark24
Progress = Callable[[float, str], None] | None


# -- what a run is ----------------------------------------------------------------------------
def run_identity(run: Run) -> dict[str, Any]:
    config = run.config
    return {"run_id": run.id, "display_name": get_display_name(run) or "", "method": config.method.get("name", "?"),
            "backbone": config.backbone.name, "dataset": config.data.dataset, "epochs": config.train.epochs}


def run_heading(run: Run, scores: dict[str, float] | None = None) -> str:
    """'name (id) · method, backbone on dataset · kNN 0.290 · linear 0.442'."""
    who = run_identity(run)
    scores = run_scores(run) if scores is None else scores
    name = f"{who['display_name']} ({run.id})" if who["display_name"] else run.id
    parts = [name, f"{who['method']}, {who['backbone']} on {who['dataset']}"]
    parts += [f"{label} {scores[key]:.3f}" for key, label in (("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1"))
              if key in scores]
    return " · ".join(parts)


# -- CSV --------------------------------------------------------------------------------------
def metrics_table(runs: list[Run]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, one dict per run) as the CSV holds them (see the module docstring)."""
    rows, extra = [], set()
    for run in runs:
        scores = run_scores(run)
        extra |= set(scores) - set(SCORE_COLUMNS)
        rows.append({**run_identity(run), **scores})
    return [*IDENTITY_COLUMNS, *SCORE_COLUMNS, *sorted(extra)], rows


def metrics_csv(runs: list[Run]) -> str:
    if not runs:
        raise ValueError("no runs to export")
    columns, rows = metrics_table(runs)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# -- figures ----------------------------------------------------------------------------------
def plotly_text(value: Any) -> str:
    """`value` as Plotly shows it: Plotly reads its texts (hover texts, legend names, titles, tick
    labels) as a small HTML (<b>, <a href>, <br>, ...), so '<', '>' and '&' in ids, label names and
    run names are written as entities, which it shows as the characters. Not quotes: Plotly
    decodes no `&quot;`."""
    return html.escape(str(value), quote=False)


def hover_text(row_id: str, label: str) -> str:
    """A map point's hover text in Plotly markup: its id over its label name, both escaped."""
    return f"{plotly_text(row_id)}<br>{plotly_text(label)}"


def map_figure(coords: np.ndarray, labels: np.ndarray, names: list[str], ids: list[str], *, title: str = "",
               highlight: np.ndarray | None = None, height: int = 560):
    """A 2-D map as a Plotly WebGL scatter, one trace per label (its legend entry toggles it),
    each point's row in `customdata`. `highlight`: rows drawn again on top as open black rings
    (the images selected on another map). `title` is Plotly markup: escape values in it with
    `plotly_text`; ids and label names are escaped here."""
    import plotly.graph_objects as go  # heavy: plotly only for figures


    labels = np.asarray(labels)
    hover = np.array([hover_text(ids[r], label_name(names, int(labels[r]))) for r in range(len(ids))], dtype=object)
    size = 6 if len(ids) <= 2_000 else 4
    traces = []
    for i, label in enumerate(sorted(set(labels.tolist()), key=lambda v: (v < 0, v))):
        rows = np.flatnonzero(labels == label)
        traces.append(go.Scattergl(
            x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=plotly_text(label_name(names, int(label))),
            customdata=rows, hovertext=hover[rows], hovertemplate="%{hovertext}<extra></extra>",
            marker={"size": size, "opacity": 0.75, "color": PALETTE[i % len(PALETTE)]}))
    if highlight is not None and len(highlight):
        rows = np.asarray(highlight, dtype=np.int64)
        traces.append(go.Scattergl(
            x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=f"selected ({len(rows)})",
            customdata=rows, hovertext=hover[rows], hovertemplate="%{hovertext}<extra></extra>",
            marker={"size": size + 4, "color": "rgba(0,0,0,0)", "line": {"width": 1.5, "color": "black"}}))
    figure = go.Figure(traces)
    figure.update_layout(height=height, margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
                         title={"text": title, "x": 0.01, "font": {"size": 13}}, legend={"itemsizing": "constant"},
                         xaxis={"visible": False}, yaxis={"visible": False, "scaleanchor": "x"})
    return figure


def matrix_figure(matrix: list[list[float]], run_ids: list[str], title: str, height: int = 380):
    """A heatmap of a run-by-run matrix in [0, 1], each cell labelled with its value."""
    import plotly.graph_objects as go  # heavy: plotly only for figures

    names = [plotly_text(run_id) for run_id in run_ids]
    figure = go.Figure(go.Heatmap(z=matrix, x=names, y=names, zmin=0, zmax=1, colorscale="Blues",
                                  text=[[f"{v:.3f}" for v in row] for row in matrix], texttemplate="%{text}",
                                  hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    figure.update_layout(title={"text": title, "x": 0.01, "font": {"size": 13}}, height=height,
                         margin={"l": 0, "r": 0, "t": 40, "b": 0}, yaxis={"autorange": "reversed"})
    return figure


# -- HTML -------------------------------------------------------------------------------------
def thumbnails(images: np.ndarray, progress: Progress = None) -> list[str]:
    """uint8 (N, H, W, 3) -> one base64 PNG per image, at the images' own size (the page scales
    them up without smoothing)."""
    out = []
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG", optimize=True)
        out.append(base64.b64encode(buffer.getvalue()).decode())
        if progress is not None and i % 500 == 0:
            progress(i / len(images), f"images {i:,} of {len(images):,}")
    return out


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 6px; }
.layout { display: flex; gap: 16px; align-items: flex-start; }
.maps { flex: 1; display: grid; gap: 8px; }
.panel { width: 190px; position: sticky; top: 16px; font-size: 13px; }
.panel img { width: 160px; height: 160px; image-rendering: pixelated; border: 1px solid #ccc; background: #f4f4f4; }
#thumb-caption { white-space: pre-line; overflow-wrap: anywhere; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #ddd; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; } .best { font-weight: bold; background: #e6f4ea; }
.note { color: #666; font-size: 12px; } .matrices { display: flex; gap: 16px; } .matrices > div { flex: 1; }
"""

# Shows the hovered point's image in the side panel. THUMBS holds one base64 PNG per row and
# CAPTIONS its id and label name; each point carries its row in customdata. The caption is set
# as text (textContent), never as HTML: ids and label names come from users' files.
_HOVER_SCRIPT = """
function showThumbnails(gd) {
  gd.on('plotly_hover', function (event) {
    var point = event.points[0], row = point.customdata;
    if (Array.isArray(row)) { row = row[0]; }
    if (row === undefined || THUMBS[row] === undefined) { return; }
    document.getElementById('thumb').src = 'data:image/png;base64,' + THUMBS[row];
    document.getElementById('thumb-caption').textContent = CAPTIONS[row];
  });
}
"""


def _plot_div(figure, include_plotlyjs: bool, div_id: str, hover: bool = True) -> str:
    import plotly.io as pio  # heavy: plotly only for figures

    return pio.to_html(figure, full_html=False, include_plotlyjs=include_plotlyjs, div_id=div_id,
                       config={"displaylogo": False, "responsive": True},
                       post_script="showThumbnails(document.getElementById('{plot_id}'));" if hover else None)


def _script_json(value: Any) -> str:
    """JSON to inline in a <script>: '<', '>' and '&' as \\u escapes, so no string in it (an id
    holding '</script>', say) can end the script element."""
    text = json.dumps(value)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _captions(ids: list[str], labels: np.ndarray, names: list[str]) -> list[str]:
    """The hover panel's text of each row: its id, then its label name."""
    return [f"{row_id}\n{label_name(names, int(label))}" for row_id, label in zip(ids, labels)]


def _page(title: str, body: str, thumbs: list[str], captions: list[str]) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style>\n<script>var THUMBS = {json.dumps(thumbs)};\n"
            f"var CAPTIONS = {_script_json(captions)};\n{_HOVER_SCRIPT}</script>\n"
            f"</head><body>\n{body}\n</body></html>\n")


def _panel() -> str:
    return ('<div class="panel"><img id="thumb" alt="hover a point to see its image">'
            '<div id="thumb-caption" class="note">Hover a point to see its image.</div></div>')


def _map_inputs(run: Run) -> tuple[np.ndarray, list[str], list[str]]:
    _, labels, ids, _ = load_all_embeddings(run)
    return labels, ids, run.read_class_names()


def _check_html_size(run: Run, n: int) -> None:
    if n > HTML_MAX_IMAGES:
        raise ValueError(f"run {run.id} has {n:,} images; an HTML export inlines every image and "
                         f"takes at most {HTML_MAX_IMAGES:,} (export a .csv of the scores instead)")


def _animation_section(run: Run, ids: list[str]) -> str:
    """The map as it learns, its points hovering their images (rows of `ids`), or a note when
    the run has none; RunFileError names a snapshot file that cannot be read."""
    snapshots = read_snapshots(run)
    if snapshots is None:
        return f"<h2>The map as it learns</h2>\n<div class=\"note\">{html.escape(NO_SNAPSHOTS)}</div>"
    row_of = {row_id: row for row, row_id in enumerate(ids)}
    rows = np.array([row_of.get(i, -1) for i in snapshots.ids], dtype=np.int64)
    figure = animation_figure(snapshots, customdata=rows, height=600)
    return (f"<h2>The map as it learns</h2>\n<div class=\"note\">{len(snapshots.ids):,} held-out images mapped "
            f"at each of {len(snapshots.steps)} kNN checks of training, each aligned with the one before; press "
            f"Play or move the slider.</div>\n{_plot_div(figure, False, 'map-animation')}")


def map_html(run: Run, progress: Progress = None, animation: bool = False) -> str:
    """One run's map as a standalone HTML page (see the module docstring), with the map as it
    learns below it when `animation`; ValueError with `readiness.explorable`'s reason when the
    run has no map to show yet."""
    refuse(explorable(run))
    coords, kind = load_map(run)
    labels, ids, names = _map_inputs(run)
    if len(coords) != len(ids):
        raise ValueError(f"run {run.id}: the map has {len(coords)} points for {len(ids)} embeddings; "
                         f"run `ssl-explorer project {run.id}`")
    _check_html_size(run, len(ids))
    images = run_images(run)
    if len(images) != len(ids):
        raise ValueError(f"run {run.id}: {len(images)} images for {len(ids)} embeddings; "
                         f"run `ssl-explorer embed {run.id}`")
    thumbs = thumbnails(images, progress)
    heading = run_heading(run)
    figure = map_figure(coords, labels, names, ids, title=f"{kind.upper()} map of {len(ids):,} images", height=700)
    colouring = ("coloured by label. Click a label in the legend to hide it" if (labels >= 0).any() else
                 "all unlabelled (no labels: the run's images carry none)")
    body = (f"<h1>{html.escape(heading)}</h1>\n<div class=\"note\">{len(ids):,} images, {colouring}; "
            "hover a point for its image.</div>\n"
            f"<div class=\"layout\"><div class=\"maps\">{_plot_div(figure, True, 'map')}"
            f"{_animation_section(run, ids) if animation else ''}</div>{_panel()}</div>")
    return _page(f"{run.id}: map", body, thumbs, _captions(ids, labels, names))


def _scores_table(runs: list[Run]) -> str:
    scores = [run_scores(run) for run in runs]
    header = "".join(f"<th>{html.escape(run.id)}</th>" for run in runs)
    lines = [f"<tr><th>score</th>{header}<th>better</th></tr>"]
    for key, label, better in score_rows(scores):
        values = [s.get(key) for s in scores]
        best = best_of(values, better)
        cells = "".join(f"<td class=\"best\">{v:.4g} ★</td>" if i in best else f"<td>{'' if v is None else f'{v:.4g}'}</td>"
                        for i, v in enumerate(values))
        note = better or DIRECTION_NOTES.get(key, "")
        lines.append(f"<tr><td>{html.escape(label)}</td>{cells}<td class=\"note\">{html.escape(note)}</td></tr>")
    return "<table>" + "\n".join(lines) + "</table><div class=\"note\">★ best of these runs.</div>"


def comparison_html(runs: list[Run], progress: Progress = None) -> str:
    """2 to 4 runs over the same images as one standalone HTML page (see the module docstring)."""
    if not 2 <= len(runs) <= MAX_COMPARED:
        raise ValueError(f"a comparison takes 2 to {MAX_COMPARED} runs; got {len(runs)}")
    check_comparable(runs)
    maps = aligned_maps(runs)
    labels, ids, names = _map_inputs(runs[0])
    _check_html_size(runs[0], len(ids))
    matrices = compare_many(runs)
    images = run_images(runs[0])
    thumbs = thumbnails(images, None if progress is None else lambda f, t: progress(0.9 * f, t))
    run_ids = [run.id for run in runs]
    divs = []
    for i, (run, (coords, kind)) in enumerate(zip(runs, maps)):
        title = (f"{plotly_text(run_heading(run))}<br><sup>{kind.upper()}"
                 f"{', aligned onto ' + plotly_text(runs[0].id) if i else ''}</sup>")
        figure = map_figure(coords, labels, names, ids, title=title, height=520)
        # One legend, under the first map: the colours mean the same labels on every map.
        figure.update_layout(showlegend=i == 0, legend={"orientation": "h", "y": -0.02, "yanchor": "top"})
        divs.append(_plot_div(figure, i == 0, f"map{i}"))
    cka = _plot_div(matrix_figure(matrices["cka"], run_ids, "linear CKA"), False, "cka", hover=False)
    overlap = _plot_div(matrix_figure(matrices["knn_overlap"], run_ids, f"k-NN overlap (k={matrices['k']})"),
                        False, "overlap", hover=False)
    columns = 2 if len(runs) > 1 else 1
    body = (f"<h1>{len(runs)} runs on {html.escape(runs[0].config.data.dataset)}</h1>\n"
            f"<h2>Scores</h2>{_scores_table(runs)}\n"
            f"<h2>Maps</h2><div class=\"note\">Each map after the first is rotated, scaled and shifted onto the "
            f"first (orthogonal Procrustes), so the same image sits in about the same place."
            f"{'' if (labels >= 0).any() else ' No labels: every image is drawn as unlabelled.'}</div>\n"
            f"<div class=\"layout\"><div class=\"maps\" style=\"grid-template-columns: repeat({columns}, 1fr)\">"
            f"{''.join(divs)}</div>{_panel()}</div>\n"
            f"<h2>Representation similarity</h2><div class=\"note\">On the {matrices['images']:,} shared test "
            "images: linear CKA (1: the same up to rotation and scale) and the share of each image's nearest "
            f"neighbours that two runs agree on.</div><div class=\"matrices\"><div>{cka}</div><div>{overlap}</div></div>")
    if progress is not None:
        progress(1.0, "done")
    return _page(f"comparison of {', '.join(run_ids)}", body, thumbs, _captions(ids, labels, names))


# -- to a file --------------------------------------------------------------------------------
def export(runs: list[Run], out: str | Path, progress: Progress = None, animation: bool = False) -> dict[str, Any]:
    """Write `runs` to `out`: .csv the scores of every run; .html one run's map (with the map as
    it learns when `animation`) or, for 2 to 4 runs, their comparison. Written atomically.
    Returns {"path", "format", "runs", "bytes"}."""
    if animation and (len(runs) != 1 or Path(out).suffix.lower() != ".html"):
        raise ValueError("the map as it learns is exported with one run's map: one run, to an .html file")
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unknown export format '{out.suffix or '(none)'}' for {out}; use one of {', '.join(FORMATS)}")
    if not runs:
        raise ValueError("no runs to export")
    if suffix == ".csv":
        data = metrics_csv(runs).encode()
        kind = "csv"
    elif len(runs) == 1:
        data = map_html(runs[0], progress, animation).encode()
        kind = "map html"
    else:
        data = comparison_html(runs, progress).encode()
        kind = "comparison html"
    atomic_write_bytes(out, data)
    return {"path": str(out), "format": kind, "runs": [run.id for run in runs], "bytes": len(data)}
