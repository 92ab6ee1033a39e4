"""The dashboard in a real browser: the README's app command, Debian's Chromium via Playwright.

Starts `ssl-explorer demo` (what `make demo` runs) on a free port over a copy of the bundled runs
as the demo installs them (the session's `demo_runs`: installing from an empty folder is
tests/test_packaging.py's, from the wheel) and opens the Overview first: one screen (1400 x 900) with a tile per run trained here, each linking to
its run in Explore. It clicks the best self-supervised run's tile, waits for its map, clicks a
point, sees the neighbour grid, and opens the other pages. On the Explore map it hovers a point,
lassos a group (its label counts checked against the points inside) and zooms in until the
points are drawn as their images. Screenshots go under test-artifacts/, and those of the
Overview, of Explore with neighbours and of Explore zoomed in to its thumbnails into
docs/images/ for the README. No request may leave 127.0.0.1 (a demo in a meeting room has no
network). The runs are chosen from what the runs folder holds (analyses.standings), never by
name. Also records how long the app took from its command to the first rendered map, and the
Overview's render time (bench/demo_start.py measures them from a fresh clone).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from PIL import Image

from app_server import CHROMIUM, CHROMIUM_ARGS, MAP_FRAME, drawn_map, served_app
from ssl_core.analyses.standings import best_self_supervised, standings
from ssl_core.steps.readiness import explorable
from ssl_core.store.run_store import RunStore

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"  # the README shows these
VIEWPORT = {"width": 1400, "height": 900}  # a laptop or a projector: the Overview fits on it
MAX_DOCS_PNG = 300_000  # bytes per README screenshot: the repository keeps every version

if not Path(CHROMIUM).exists():
    # CI installs chromium (`make chromium`); there, a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, demo_runs):
    runs = shutil.copytree(demo_runs, tmp_path_factory.mktemp("browser") / "runs")
    started = time.perf_counter()
    with served_app(runs, "demo") as port:
        yield f"http://127.0.0.1:{port}", started, runs


@pytest.fixture
def page():
    """A Chromium page that records every request leaving 127.0.0.1 over the whole test, and
    fails the test when there was one (a font, an icon, a script from a CDN: offline, it fails)."""
    leaving = []

    def record(request) -> None:
        url = urlparse(request.url)
        if url.scheme not in ("data", "blob", "about") and url.hostname != "127.0.0.1":
            leaving.append(request.url)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        context.on("request", record)
        yield context.new_page()
        browser.close()
    assert not leaving, f"requests left 127.0.0.1: {leaving}"


def save_for_docs(page, name: str, height: int = VIEWPORT["height"]) -> Path:
    """The page on a screen `height` px high as docs/images/NAME, in 256 colours (a few hundred KB
    at most). Streamlit scrolls inside its main block, so a taller screen, not a full-page shot,
    shows more of a page."""
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    if height != VIEWPORT["height"]:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
        page.wait_for_timeout(1000)  # the page lays itself out again
    picture = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    page.set_viewport_size(VIEWPORT)
    path = DOCS_IMAGES / name
    picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    assert path.stat().st_size < MAX_DOCS_PNG, f"{path} is {path.stat().st_size:,} bytes"
    return path


def map_ids(runs: Path, run_id: str) -> list[str]:
    """A run's image ids by row: train rows, then test rows."""
    return [i for split in ("train", "test")
            for i in json.loads((runs / run_id / "embeddings" / f"{split}_ids.json").read_text())]


# Every point's place in the map frame, its row and its label's code, in the map's own order.
POINTS = """() => { const m = window.scatterMap.map;
  return Array.from({length: m.n}, (_, i) => [...window.scatterMap.screenOf(i), m.rows[i], m.labels[i]]); }"""


def lone_point(points: np.ndarray, room: float = 6) -> int:
    """The point (of POINTS) nearest the map's middle with no other point within `room` px, so
    that a click or a hover there can only mean it; not row 0, the row shown before any click."""
    x, y, rows = points[:, 0], points[:, 1], points[:, 2]
    alone = np.array([np.sum((np.abs(x - x[i]) < room) & (np.abs(y - y[i]) < room)) == 1 for i in range(len(x))])
    distance = (x - np.median(x)) ** 2 + (y - np.median(y)) ** 2
    return int(np.argmin(np.where(alone & (rows != 0), distance, np.inf)))


def on_page(iframe, frame, point: int) -> tuple[float, float]:
    """Where point `point` of the map (its index in the map's own order) is on the page."""
    box = iframe.bounding_box()
    x, y = frame.evaluate(f"() => window.scatterMap.screenOf({point})")
    return box["x"] + x, box["y"] + y


# Resolves after two animation frames of the map's frame: a refit (a late resize) lands within them.
TWO_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"


def settled_on_page(iframe, frame, point: int, tries: int = 50) -> tuple[float, float]:
    """`on_page`, once the point stands still: the same place before and after two animation
    frames (the frame may still move on the page, or the map refit, as the page lays itself out)."""
    place = on_page(iframe, frame, point)
    for _ in range(tries):
        frame.evaluate(TWO_FRAMES)
        again = on_page(iframe, frame, point)
        if np.allclose(again, place, atol=0.5):
            return again
        place = again
    raise AssertionError(f"point {point} kept moving on the page: last at {place}")


def click_point(page, iframe, frame, point: int, arrived, timeout: float = 60_000) -> None:
    """Click map point `point` once it stands still and wait for `arrived` (a locator of what the
    click shows on the page). Under load the map can still refit between measuring and clicking, so
    a click that brought nothing within half the time is tried once more, from a fresh measurement."""
    page.mouse.click(*settled_on_page(iframe, frame, point))
    try:
        arrived.wait_for(timeout=timeout / 2)
        return
    except playwright.TimeoutError:
        print(f"no answer to the click on point {point} within {timeout / 2000:.0f} s: clicking it again")
    page.mouse.click(*settled_on_page(iframe, frame, point))
    arrived.wait_for(timeout=timeout)


# The Overview's tiles: the run each links to, and where the tile ends on the screen.
TILES = """() => Array.from(document.querySelectorAll('[data-testid=stPageLink] a')).map(a => ({
  run: new URL(a.href).searchParams.get('run'), path: new URL(a.href).pathname,
  bottom: a.closest('[class*=st-key-overview_tile_]').getBoundingClientRect().bottom}))"""


def test_the_overview_opens_first_and_its_tiles_open_their_runs_in_explore(app_url, page):
    url, started, runs = app_url
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir()
    boards = standings(RunStore(runs).get(s.id) for s in RunStore(runs).list())
    trained = {s.run_id for board in boards for s in board.tiles()}
    best = best_self_supervised(boards).run_id

    opened = time.perf_counter()
    page.goto(url)  # the default page
    page.get_by_role("heading", name="Overview").first.wait_for(timeout=120_000)
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=stPageLink]').length >= {len(trained)}"
                           " && document.querySelectorAll('[data-testid=stImage] img').length >= 1"
                           " && document.querySelector('[data-testid=stVegaLiteChart] .mark-rect path') !== null",
                           timeout=60_000)
    overview_s = time.perf_counter() - opened
    page.wait_for_timeout(1000)  # images and charts finish drawing
    tiles = page.evaluate(TILES)
    assert {t["run"] for t in tiles} == trained and all(t["path"].endswith("/explore") for t in tiles), tiles
    assert all(explorable(RunStore(runs).get(t["run"])) is None for t in tiles), "each tile links to a run to explore"
    assert max(t["bottom"] for t in tiles) <= VIEWPORT["height"], "the Overview fits one screen"
    assert "Traceback" not in page.content()
    save_for_docs(page, "overview.png")
    page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    page.locator(f"[data-testid=stPageLink] a[href*='run={best}']").first.click()  # the best run's tile
    iframe, frame = drawn_map(page)
    first_map_s = time.perf_counter() - started
    assert parse_qs(urlparse(page.url).query).get("run") == [best], page.url
    assert page.get_by_role("heading", name="Explore").first.is_visible()
    ids = map_ids(runs, best)
    assert frame.evaluate("() => window.scatterMap.map.n") == len(ids), "the map draws every image of the run"
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "explore_map.png"))

    points = np.array(frame.evaluate(POINTS))
    point = lone_point(points)
    row = int(points[point, 2])
    # The neighbour panel names the clicked image once the click's rerun has landed.
    click_point(page, iframe, frame, point, page.get_by_text(f"of {ids[row]} (").first)
    page.get_by_text("Nearest neighbours").first.wait_for()
    captions = page.get_by_text("d=0.")
    assert captions.count() >= 4, "the neighbour grid shows images with their distances"
    page.mouse.move(5, 5)  # off the map: no hover box in the picture
    page.wait_for_timeout(500)
    save_for_docs(page, "explore_neighbours.png", height=1150)  # the map and the first neighbours
    page.screenshot(path=str(ARTIFACTS / "explore_neighbours.png"), full_page=True)

    for name in ("Runs", "Train"):
        page.get_by_role("link", name=name).first.click()
        page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        content = page.content()
        assert "Traceback" not in content and "Page not found" not in content, name
        page.screenshot(path=str(ARTIFACTS / f"{name.lower()}.png"), full_page=True)
    (ARTIFACTS / "timing.json").write_text(json.dumps(
        {"app_command_to_first_map_s": round(first_map_s, 1), "overview_render_s": round(overview_s, 1)}, indent=2) + "\n")
    print(f"app command to first rendered map: {first_map_s:.1f} s; the Overview rendered in {overview_s:.1f} s")


EDGE_MARGIN = 1  # px: a point this close to an edge of a box or lasso may fall on either side of it


def in_polygon(x: np.ndarray, y: np.ndarray, polygon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside, near): whether each point lies inside the closed `polygon` (V, 2) by the even-odd
    rule, and whether it lies within EDGE_MARGIN of one of its edges."""
    inside, near = np.zeros(len(x), bool), np.zeros(len(x), bool)
    points = np.stack([x, y], axis=1)
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y1 > y) != (y2 > y)
        inside ^= crosses & (x < x1 + (y - y1) * (x2 - x1) / np.where(y2 == y1, 1e-12, y2 - y1))
        edge = np.array([x2 - x1, y2 - y1])
        t = np.clip(((points - [x1, y1]) @ edge) / max(edge @ edge, 1e-12), 0, 1)
        near |= np.linalg.norm(points - ([x1, y1] + t[:, None] * edge), axis=1) < EDGE_MARGIN
    return inside, near


def clear_lasso(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The vertices (px) of a freehand-like lasso holding 20 to 500 points, with as few as can be
    found near its edges: a wobbly loop of 36 points that stops short of its start (a lasso
    released where it began is a click), as the map closes it with a straight edge."""
    rng = np.random.default_rng(0)
    turns = np.linspace(0, 1.85 * np.pi, 36)
    best, fewest = None, len(x)
    for _ in range(400):
        centre = rng.integers(len(x))
        radius = rng.uniform(25, 70) * (1 + 0.15 * np.sin(3 * turns + rng.uniform(0, 2 * np.pi)))
        polygon = np.round(np.stack([x[centre] + radius * np.cos(turns), y[centre] + radius * np.sin(turns)], 1))
        inside, near = in_polygon(x, y, polygon)
        if 20 <= (inside & ~near).sum() and (inside | near).sum() <= 500 and near.sum() < fewest:
            best, fewest = polygon, near.sum()
    assert best is not None, "no lasso of 20 to 500 points on the map"
    return best


def test_the_explore_map_shows_images_on_hover_counts_a_lasso_and_turns_into_images_when_zoomed(app_url, page):
    url, _, runs = app_url
    ARTIFACTS.mkdir(exist_ok=True)
    best = best_self_supervised(standings(RunStore(runs).get(s.id) for s in RunStore(runs).list())).run_id
    received = []  # websocket messages from the server, by size
    page.on("websocket", lambda ws: ws.on("framereceived", lambda message: received.append(len(message))))
    page.goto(f"{url}/explore?run={best}")
    iframe, frame = drawn_map(page)
    page.get_by_text("Nearest neighbours").first.wait_for(timeout=60_000)
    points = np.array(frame.evaluate(POINTS))
    x, y, rows, label_codes = points[:, 0], points[:, 1], points[:, 2].astype(int), points[:, 3].astype(int)
    labels = frame.evaluate("() => window.scatterMap.labelNames")
    block = 16 + 16 * len(rows)  # the map's binary block: 16 bytes a point
    assert max(received) >= block, "the map came as one binary message"

    # Hover: the image and its label, from a sprite sheet fetched once.
    hovered = lone_point(points)
    started = time.perf_counter()
    page.mouse.move(*on_page(iframe, frame, hovered))
    frame.wait_for_function("() => document.getElementById('frame').dataset.hovered"
                            " && document.getElementById('frame').dataset.hoverImage === 'drawn'", timeout=10_000)
    print(f"hover image shown {time.perf_counter() - started:.2f} s after the mouse moved")
    assert frame.evaluate("() => document.getElementById('frame').dataset.hovered") == str(rows[hovered])
    assert frame.locator("#tip .label").text_content() == labels[label_codes[hovered]]
    assert frame.locator("#tip .detail").text_content() == f"row {rows[hovered]}"
    page.screenshot(path=str(ARTIFACTS / "explore_hover.png"))

    # A lasso drawn with the mouse: the page counts the points inside it.
    frame.locator("#mode-lasso").click()
    polygon = clear_lasso(x, y)
    inside, near = in_polygon(x, y, polygon)
    box = iframe.bounding_box()
    page.mouse.move(box["x"] + polygon[0, 0], box["y"] + polygon[0, 1])
    page.mouse.down()
    for vx, vy in polygon[1:]:  # at a person's pace: the map samples the mouse every 10 ms
        page.mouse.move(box["x"] + vx, box["y"] + vy)
        page.wait_for_timeout(20)
    page.wait_for_timeout(100)
    received.clear()
    page.mouse.up()
    page.get_by_text("Selection: ").first.wait_for(timeout=60_000)
    # The rest of the rerun draws the table of counts; on a loaded machine that can take seconds.
    for _ in range(60):
        selected = int(page.get_by_text("Selection: ").first.text_content().split()[1].replace(",", ""))
        cells = page.evaluate("() => Array.from(document.querySelectorAll('[data-testid=stDataFrame] table td'),"
                              " c => c.textContent)")
        counts = Counter({name: int(count) for name, count in zip(cells[::2], cells[1::2])})
        if sum(counts.values()) == selected:
            break
        page.wait_for_timeout(500)
    assert sum(counts.values()) == selected, (counts, selected)
    # Every point inside the lasso and none outside: the counts lie between those of the points
    # surely inside and those of the points inside or on an edge (equal when no point is on one).
    surely = Counter(labels[c] for c in label_codes[inside & ~near])
    maybe = Counter(labels[c] for c in label_codes[inside | near])
    assert surely <= counts <= maybe, (counts, surely, maybe)
    print(f"lasso of {selected} points: {(inside & ~near).sum()} surely inside, {(inside | near).sum()} with "
          "those on its edges")
    page.mouse.move(5, 5)  # off the map: no hover card over the lasso in the screenshot
    page.wait_for_timeout(300)
    assert max(received) < block, f"the rerun sent the map again: a message of {max(received):,} bytes"
    page.screenshot(path=str(ARTIFACTS / "explore_lasso.png"), full_page=True)

    # Zoom into the densest patch until few enough points are in view to draw each as its image.
    densest = int(np.argmax(((np.abs(x[:, None] - x) < 30) & (np.abs(y[:, None] - y) < 30)).sum(axis=1)))
    page.mouse.move(*on_page(iframe, frame, densest))
    for _ in range(20):
        page.mouse.wheel(0, -250)
        page.wait_for_timeout(150)
        if int(frame.evaluate("() => document.getElementById('frame').dataset.inView") or 1e9) < 500:
            break
    frame.wait_for_function("() => +document.getElementById('frame').dataset.thumbnails > 0"
                            " && document.getElementById('frame').dataset.thumbnails"
                            " === document.getElementById('frame').dataset.inView", timeout=10_000)
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    save_for_docs(page, "explore_thumbnails.png")
    assert "Traceback" not in page.content()


# Plotly charts on the page, by what they draw: the matrices (heatmaps); the maps are components.
PLOTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
  types: (gd._fullData || []).map(t => t.type),
  points: (gd._fullData || []).reduce((n, t) => n + (t.x ? t.x.length : 0), 0)}))"""
# The rows a map draws as selected (its own selection, or the page's highlight).
SELECTED_ROWS = "() => window.scatterMap.plot.get('selectedPoints').map(i => window.scatterMap.map.rows[i])"
PLOT_AREA = "() => { const r = document.getElementById('plot').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }"


def test_compare_shows_aligned_maps_and_cka_and_links_a_box_selection(app_url, page, tmp_path):
    url, _, runs = app_url
    ARTIFACTS.mkdir(exist_ok=True)
    # The best self-supervised run and the supervised ceiling of its dataset, over the same images.
    boards = standings(RunStore(runs).get(s.id) for s in RunStore(runs).list())
    best = best_self_supervised(boards)
    ceiling = next(board.ceiling for board in boards if best in board.runs)
    assert ceiling is not None and ceiling.images == best.images
    rows = sum(len(json.loads((runs / best.run_id / "embeddings" / f"{split}_ids.json").read_text()))
               for split in ("train", "test"))
    page.goto(f"{url}/compare?runs={best.run_id},{ceiling.run_id}")
    page.wait_for_function(f"() => document.querySelectorAll(\"{MAP_FRAME}\").length === 2", timeout=120_000)
    iframes = page.query_selector_all(MAP_FRAME)
    frames = [iframe.content_frame() for iframe in iframes]
    for frame in frames:
        frame.wait_for_selector("#frame[data-points]", timeout=120_000)
    assert [frame.evaluate("() => window.scatterMap.map.n") for frame in frames] == [rows, rows], \
        "both maps draw every image"
    # Wait for both matrices, not the first: Streamlit draws the page's charts one after another.
    page.wait_for_function(f"() => ({PLOTS})().filter(p => p.types.includes('heatmap')).length >= 2", timeout=120_000)
    plots = page.evaluate(PLOTS)
    assert sum("heatmap" in p["types"] for p in plots) == 2, "the CKA and overlap matrices"
    assert not any("scattergl" in p["types"] for p in plots), "no Plotly map beside the components"
    page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

    # A box over the middle of the first map, drawn at a person's pace (the map samples the mouse every 10 ms).
    frames[0].locator("#mode-box").click()
    iframes[0].scroll_into_view_if_needed()  # below the scores table: the mouse can only drag on screen
    page.wait_for_timeout(300)
    box = iframes[0].bounding_box()
    left, top, width, height = frames[0].evaluate(PLOT_AREA)
    x1, y1 = box["x"] + left + 0.3 * width, box["y"] + top + 0.3 * height
    x2, y2 = box["x"] + left + 0.7 * width, box["y"] + top + 0.7 * height
    page.mouse.move(x1, y1)
    page.mouse.down()
    for step in np.linspace(0, 1, 16):
        page.mouse.move(x1 + step * (x2 - x1), y1 + step * (y2 - y1))
        page.wait_for_timeout(20)
    page.wait_for_timeout(100)
    page.mouse.up()
    # The second map highlights the same images once the selection's rerun has landed.
    page.get_by_text("Selection: ").first.wait_for(timeout=60_000)
    selected = int(page.get_by_text("Selection: ").first.text_content().split()[1].replace(",", ""))
    assert selected > 0
    frames[1].wait_for_function(f"() => document.getElementById('frame').dataset.highlighted === '{selected}'",
                                timeout=30_000)
    first, second = (sorted(frame.evaluate(SELECTED_ROWS)) for frame in frames)
    assert len(first) == selected and first == second, (selected, len(first), len(second))
    assert "Traceback" not in page.content()
    page.screenshot(path=str(ARTIFACTS / "compare_selection.png"), full_page=True)

    # The download is made when the button is clicked (a few seconds for 5,000 images).
    with page.expect_download(timeout=120_000) as download:
        page.get_by_text("Comparison as HTML").first.click()
    saved = tmp_path / "comparison.html"
    download.value.save_as(saved)
    html = saved.read_text()
    assert html.count('class="plotly-graph-div"') == 4 and html.count('"iVBORw0KGgo') == rows


# The animation's plot (st.plotly_chart draws in the page itself, the map in its own frame): the
# x of its first point (decoded: the figure's arrays arrive base64) and the slider's position.
ANIMATION_STATE = """() => { const gd = document.querySelector('.js-plotly-plot');
  return gd && gd._fullData && gd._fullData.length ? [Number(gd._fullData[0].x[0]), gd._fullLayout.sliders[0].active]
    : null; }"""


def test_explore_plays_the_map_as_it_learns(app_url, page):
    # Here, not at the top: only this test writes into a run (the others read what `demo` made).
    from ssl_core.steps.browsing import load_explore_data
    from ssl_core.steps.map_snapshots import start_snapshots, store_snapshot

    url, _, runs = app_url
    store = RunStore(runs)
    run = store.get(best_self_supervised(standings(store.get(s.id) for s in store.list())).run_id)
    data = load_explore_data(run)
    test = np.flatnonzero(data.splits == "test")[:300]
    start_snapshots(run, [data.ids[r] for r in test], data.labels[test], data.class_names)
    for epoch in (1, 2, 3):  # epoch t: every point at x = 10 t + a little, so each frame is told apart
        coords = np.stack([10 * epoch + np.arange(len(test)) / len(test), np.cos(np.arange(len(test)))], axis=1)
        store_snapshot(run, step=100 * epoch, epoch=epoch, coords=coords, seconds=0.1)
    page.goto(f"{url}/explore?run={run.id}")
    drawn_map(page)
    page.get_by_text("The map as it learns (epoch by epoch").click()
    page.wait_for_function(f"({ANIMATION_STATE})() !== null", timeout=60_000)
    x, active = page.evaluate(ANIMATION_STATE)
    assert 10 <= x < 11 and active == 0, (x, active)  # opens on the first snapshot
    page.locator(".updatemenu-button").filter(has_text="Play").click()
    page.wait_for_function(f"(() => {{ const s = ({ANIMATION_STATE})(); return s[0] >= 30 && s[1] === 2; }})()",
                           timeout=20_000)  # played through to epoch 3, the slider with it
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explore_map_as_it_learns.png"))
