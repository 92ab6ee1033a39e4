"""The dashboard in a real browser: the README's app command, Debian's Chromium via Playwright.

Starts `ssl-explorer demo` (what `make demo` runs) on a free port over a fresh runs folder, opens
Explore on a bundled run, waits for the map, clicks a point, sees the neighbour grid, and saves a
screenshot of each page under test-artifacts/. Also records how long the app took from its
command to the first rendered map.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from app_server import CHROMIUM, CHROMIUM_ARGS, served_app

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DEMO_RUN = "demo-simclr-shapes"

if not Path(CHROMIUM).exists():
    # CI installs chromium (`make chromium`); there, a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    started = time.perf_counter()
    with served_app(tmp_path_factory.mktemp("browser") / "runs", "demo") as port:
        yield f"http://127.0.0.1:{port}", started


# Screen position and id (first line of its hover text) of a point in the middle of a trace.
# The point's row travels in customdata, and its hover text starts with its id.
POINT_TO_CLICK = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const trace = gd._fullData.filter(t => t.x && t.x.length > 10)[1];
  const layout = gd._fullLayout;
  const box = gd.getBoundingClientRect();
  const i = Math.floor(trace.x.length / 2);
  return {x: box.left + layout.xaxis._offset + layout.xaxis.l2p(trace.x[i]),
          y: box.top + layout.yaxis._offset + layout.yaxis.l2p(trace.y[i]),
          id: String(trace.hovertext[i]).split('<br>')[0]};
}"""


def test_explore_map_click_shows_neighbours_and_every_page_renders(app_url):
    url, started = app_url
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/explore?run={DEMO_RUN}")
        page.wait_for_selector(".js-plotly-plot .scatterlayer, .js-plotly-plot canvas", timeout=120_000)
        page.wait_for_function("() => { const gd = document.querySelector('.js-plotly-plot');"
                               " return gd && gd._fullData && gd._fullData.some(t => t.x && t.x.length > 0); }",
                               timeout=60_000)
        first_map_s = time.perf_counter() - started
        page.screenshot(path=str(ARTIFACTS / "explore_map.png"))

        point = page.evaluate(POINT_TO_CLICK)
        assert point["id"] and point["id"] != "train/0", point
        page.mouse.click(point["x"], point["y"])
        # The neighbour panel names the clicked image once the click's rerun has landed.
        page.get_by_text(f"of {point['id']} (").first.wait_for(timeout=60_000)
        page.get_by_text("Nearest neighbours").first.wait_for()
        captions = page.get_by_text("d=0.")
        assert captions.count() >= 4, "the neighbour grid shows images with their distances"
        page.screenshot(path=str(ARTIFACTS / "explore_neighbours.png"), full_page=True)

        for name in ("Runs", "Train"):
            page.get_by_role("link", name=name).first.click()
            page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            content = page.content()
            assert "Traceback" not in content and "Page not found" not in content, name
            page.screenshot(path=str(ARTIFACTS / f"{name.lower()}.png"), full_page=True)
        browser.close()
    (ARTIFACTS / "timing.json").write_text(json.dumps(
        {"app_command_to_first_map_s": round(first_map_s, 1)}, indent=2) + "\n")
    print(f"app command to first rendered map: {first_map_s:.1f} s")


COMPARED = ["demo-simclr-shapes", "demo-supervised-shapes"]
# Plotly charts on the page, by what they draw: the aligned maps (WebGL scatters), the matrices.
PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  types: (gd._fullData || []).map(t => t.type),
  names: (gd._fullData || []).map(t => t.name),
  points: (gd._fullData || []).reduce((n, t) => n + (t.x ? t.x.length : 0), 0)}))"""
# Screen corners of a box over the middle of the first map's plot area.
BOX_ON_FIRST_MAP = """() => {
  const gd = Array.from(document.querySelectorAll('.js-plotly-plot'))
    .find(g => g._fullData && g._fullData.some(t => t.type === 'scattergl'));
  gd.scrollIntoView({block: 'center'});  // below the scores table: the mouse can only drag on screen
  const l = gd._fullLayout, box = gd.getBoundingClientRect();
  const x0 = box.left + l.xaxis._offset, y0 = box.top + l.yaxis._offset;
  return {x1: x0 + 0.3 * l.xaxis._length, y1: y0 + 0.3 * l.yaxis._length,
          x2: x0 + 0.7 * l.xaxis._length, y2: y0 + 0.7 * l.yaxis._length};
}"""


def test_compare_shows_aligned_maps_and_cka_and_links_a_box_selection(app_url, tmp_path):
    url, _ = app_url
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/compare?runs={','.join(COMPARED)}")
        # Wait for both matrices, not the first: Streamlit draws the page's charts one after another.
        page.wait_for_function(f"() => ({PLOTS})().filter(p => p.types.includes('scattergl') && p.points > 0)"
                               f".length === 2 && ({PLOTS})().filter(p => p.types.includes('heatmap')).length >= 2",
                               timeout=120_000)
        plots = page.evaluate(PLOTS)
        maps = [p for p in plots if "scattergl" in p["types"]]
        assert [m["points"] for m in maps] == [5000, 5000], "both maps draw every image"
        assert sum("heatmap" in p["types"] for p in plots) == 2, "the CKA and overlap matrices"
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

        box = page.evaluate(BOX_ON_FIRST_MAP)
        page.mouse.move(box["x1"], box["y1"])
        page.mouse.down()
        page.mouse.move(box["x2"], box["y2"], steps=12)
        page.mouse.up()
        # The second map rings the selected images once the selection's rerun has landed.
        page.wait_for_function(f"() => ({PLOTS})().filter(p => p.types.includes('scattergl'))"
                               ".some(p => p.names.some(n => String(n).startsWith('selected (')))",
                               timeout=60_000)
        page.get_by_text("Selection: ").first.wait_for(timeout=30_000)
        ringed = [n for p in page.evaluate(PLOTS) for n in p["names"] if str(n).startswith("selected (")]
        assert len(ringed) == 1 and int(ringed[0][len("selected ("):-1]) > 0, ringed
        assert "Traceback" not in page.content()
        page.screenshot(path=str(ARTIFACTS / "compare_selection.png"), full_page=True)

        # The download is made when the button is clicked (a few seconds for 5,000 images).
        with page.expect_download(timeout=120_000) as download:
            page.get_by_text("Comparison as HTML").first.click()
        saved = tmp_path / "comparison.html"
        download.value.save_as(saved)
        html = saved.read_text()
        assert html.count('class="plotly-graph-div"') == 4 and html.count('"iVBORw0KGgo') == 5000
        browser.close()
