"""An exported map is sent to people who did not make it: nothing in the data may run in their
browser. Runs whose image ids, label names, display name and dataset name carry script, HTML,
Plotly-markup and Markdown payloads (hostile_runs) are exported, one run's map and a comparison,
and opened in Chromium. Points holding every payload are hovered with the mouse: no payload runs,
and the hover panel, Plotly's hover label, the legend, the titles and the headings show each
payload as its literal text.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from app_server import CHROMIUM, CHROMIUM_ARGS
from hostile_runs import CLASS_NAMES, DATASET, IDS, LABELS, NAME, hostile_run
from ssl_core.analyses.export import export
from ssl_core.store.run_store import RunStore

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")

HOVERED_ROWS = 15  # rows 0-14 hold every pair of id and label payload

# Screen position of rows 0..HOVERED_ROWS-1 on the page's first map (every map has the same
# hover texts and handler), for the mouse to hover.
POINTS = f"""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(gd => gd._fullData.some(t => t.type === 'scattergl')).slice(0, 1)
  .flatMap(gd => {{ gd.scrollIntoView({{block: 'center'}});  // the mouse reaches only what is on screen
    const l = gd._fullLayout, box = gd.getBoundingClientRect();
    return gd._fullData.filter(t => t.visible === true).flatMap(t => Array.from(t.customdata, (row, i) => ({{
      row: row, x: box.left + l.xaxis._offset + l.xaxis.l2p(t.x[i]),
      y: box.top + l.yaxis._offset + l.yaxis.l2p(t.y[i])}}))).filter(p => p.row < {HOVERED_ROWS}); }})"""
LISTEN = """() => document.querySelectorAll('.js-plotly-plot').forEach(gd =>
  gd.on('plotly_hover', e => { window.hovered = e.points[0].customdata; }))"""
HOVER_STATE = """() => ({row: window.hovered, caption: document.getElementById('thumb-caption').textContent,
  label: Array.from(document.querySelectorAll('.hoverlayer .hovertext')).map(h => h.textContent).join('|'),
  pwned: window.pwned})"""
PAGE_STATE = """() => ({pwned: window.pwned,
  markup: Array.from(document.querySelectorAll('a[*|href*="evil"], img[src*="evil"], img[src="x"], svg a, '
                                               + 'b, i, em, strong, script:not([type]):not([src])'))
    .map(e => e.outerHTML.slice(0, 80)).filter(h => !h.startsWith('<script>')),
  legend: Array.from(document.querySelectorAll('.legendtext')).map(t => t.textContent),
  titles: Array.from(document.querySelectorAll('.gtitle')).map(t => t.textContent),
  headings: Array.from(document.querySelectorAll('h1')).map(t => t.textContent)})"""


def test_no_payload_runs_and_each_shows_as_its_text(tmp_path):
    store = RunStore(tmp_path / "runs")
    runs = [hostile_run(store, seed) for seed in (0, 1)]
    pages = {"map": tmp_path / "map.html", "comparison": tmp_path / "comparison.html"}
    export(runs[:1], pages["map"])
    export(runs, pages["comparison"])
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for kind, path in pages.items():
            page.goto(path.as_uri())
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .legendtext').length > 0")
            page.evaluate(LISTEN)
            hovered = set()
            for point in page.evaluate(POINTS):
                page.mouse.move(point["x"], point["y"])
                with contextlib.suppress(playwright.TimeoutError):  # Plotly throttles hovers (50 ms)
                    page.wait_for_function("row => window.hovered === row", arg=point["row"], timeout=500)
                state = page.evaluate(HOVER_STATE)
                row = int(state["row"])  # the nearest point: another where points overlap
                hovered.add(row)
                assert state["caption"] == f"{IDS[row]}\n{CLASS_NAMES[LABELS[row]]}", (kind, state)
                assert state["label"] == IDS[row] + CLASS_NAMES[LABELS[row]], (kind, state)
                assert state["pwned"] is None, (kind, state)
            assert len(hovered) >= HOVERED_ROWS - 2, f"{kind}: hovered only rows {sorted(hovered)}"
            page.wait_for_timeout(200)  # an <img onerror> would have fired once its load failed
            shown = page.evaluate(PAGE_STATE)
            assert shown["pwned"] is None and shown["markup"] == [], (kind, shown)
            assert shown["legend"] == CLASS_NAMES, (kind, shown["legend"])
            if kind == "map":
                assert NAME in shown["headings"][0], shown["headings"]
            else:
                assert all(title.startswith(NAME) for title in shown["titles"][:2]), shown["titles"]
                assert DATASET in shown["headings"][0], shown["headings"]
        browser.close()
