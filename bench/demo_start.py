"""Time from a command to the first screen: `ssl-explorer demo` over a fresh runs folder until the
Overview is drawn in Chromium, and `ssl-explorer app` over runs already installed.

Run: python bench/demo_start.py [--repeats 5] [--other-tree DIR] [--no-write]

Each case is a fresh server process and a fresh headless Chromium (Debian's, via Playwright; an
empty HTTP cache), launched before the command as a user's browser would be. The clock starts
when the command starts; the browser opens the page as soon as the server answers
(`/_stcore/health`), and the page is on screen when its content is drawn:
  - the Overview: a tile per run trained here with its map loaded, and a chart per dataset drawn;
  - the Runs page (the baseline): its table drawn and the run picker below it.
Each round runs every case once (demo -> Overview, demo -> Runs, app -> Overview), so that other
load on the machine hits them alike; the table gives medians and the Overview's time over
the Runs page's, both from `demo`, measured in the same invocation. For the Overview it also
records the time from the server answering to the page drawn ("cold": the first page of a fresh
server and browser) and a second visit in a new tab of the same browser ("warm": the server's
modules and caches loaded, the browser's cache filled).
`--other-tree DIR` adds a fourth case to each round: `app` -> Overview served by the code of another
checkout (e.g. `git archive HEAD | tar -x -C DIR`, the version before a change), over the same runs.
The goal (issue 18): under 10 s from the app command to the Overview on 2 CPU cores, and the
Overview drawn within 2 s of the server answering. Writes bench/results/demo_start_cpu.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from statistics import median
from pathlib import Path

from playwright.sync_api import sync_playwright

REPOSITORY = Path(__file__).resolve().parent.parent
RESULTS = REPOSITORY / "bench" / "results" / "demo_start_cpu.md"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # as tests/app_server.py
VIEWPORT = {"width": 1400, "height": 900}  # tests/test_browser.py's: the Overview fits on it
TIMEOUT_MS = 180_000

# JS: the Overview is on screen. `tiles` page links with their maps loaded, and `charts` charts
# with their marks drawn (a Vega-Lite canvas or SVG, or a Plotly bar layer: either counts, so
# that the same check times any version of the page).
OVERVIEW_DRAWN = """([tiles, charts]) => {
  const title = Array.from(document.querySelectorAll('h1')).some(h => h.textContent.includes('Overview'));
  const links = document.querySelectorAll('[data-testid=stPageLink]').length;
  const maps = Array.from(document.querySelectorAll('[data-testid=stImage] img'))
    .filter(img => img.complete && img.naturalWidth > 0).length;
  const vega = Array.from(document.querySelectorAll('[data-testid=stVegaLiteChart]'))
    .filter(c => c.querySelector('canvas, svg .mark-rect path')).length;
  const plotly = document.querySelectorAll('.js-plotly-plot .barlayer').length;
  return title && links >= tiles && maps >= tiles && vega + plotly >= charts;
}"""
# JS: the Runs page is on screen: its table (a canvas grid) and the run picker below it.
RUNS_DRAWN = """() => {
  const title = Array.from(document.querySelectorAll('h1')).some(h => h.textContent.includes('Runs'));
  return title && document.querySelector('[data-testid=stDataFrame] canvas') !== null
    && document.querySelector('[data-testid=stSelectbox]') !== null;
}"""


@dataclass(frozen=True)
class Case:
    label: str
    command: str  # demo | app
    page: str  # the URL path: "" (the Overview, the default page) or "runs"
    fresh: bool  # a new, empty runs folder (else the runs `demo` installed, already there)
    tree: Path = REPOSITORY  # the checkout whose ssl_core and app/ serve


CASES = [
    Case("`demo` -> Overview", "demo", "", fresh=True),
    Case("`demo` -> Runs (baseline)", "demo", "runs", fresh=True),
    Case("`app` -> Overview (runs installed)", "app", "", fresh=False),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bundled_counts() -> tuple[int, int]:
    """(runs trained here, datasets) among the bundled runs: the tiles and charts of the Overview."""
    from ssl_core.analyses.standings import standings
    from ssl_core.store.run_store import RunStore

    store = RunStore(REPOSITORY / "pretrained")
    boards = standings(store.get(s.id) for s in store.list() if not s.broken)
    return sum(len(b.tiles()) for b in boards), len(boards)


def wait_up(port: int, process: subprocess.Popen) -> None:
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the app exited with {process.returncode}: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            time.sleep(0.05)


def drawn(page, case: Case, tiles: int, charts: int) -> None:
    if case.page == "runs":
        page.wait_for_function(RUNS_DRAWN, timeout=TIMEOUT_MS)
    else:
        page.wait_for_function(OVERVIEW_DRAWN, arg=[tiles, charts], timeout=TIMEOUT_MS)


def one_case(case: Case, runs: Path, tiles: int, charts: int) -> dict[str, float]:
    """Seconds from the command's start to the server answering and to the page drawn; for the
    Overview, also the warm visit."""
    if case.fresh:
        shutil.rmtree(runs, ignore_errors=True)
    port = free_port()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "ssl_core.cli", case.command, "--port", str(port), "--runs-dir", str(runs)],
            cwd=case.tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_up(port, process)
            up = time.perf_counter() - start
            page.goto(f"http://127.0.0.1:{port}/{case.page}", timeout=TIMEOUT_MS)
            drawn(page, case, tiles, charts)
            times = {"server up": up, "on screen": time.perf_counter() - start}
            times["after up"] = times["on screen"] - up
            if case.page == "":
                again = context.new_page()
                opened = time.perf_counter()
                again.goto(f"http://127.0.0.1:{port}/", timeout=TIMEOUT_MS)
                drawn(again, case, tiles, charts)
                times["warm"] = time.perf_counter() - opened
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds of the cases, one after another")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    parser.add_argument("--note", default="", help="a sentence on the machine's load, written with the table")
    parser.add_argument("--other-tree", type=Path, metavar="DIR",
                        help="also time `app` -> Overview served by the checkout in DIR (the code before a change)")
    args = parser.parse_args()
    cases = CASES + ([Case(f"`app` -> Overview, code of {args.other_tree}", "app", "", fresh=False,
                           tree=args.other_tree.resolve())] if args.other_tree else [])
    tiles, charts = bundled_counts()
    work = Path(tempfile.mkdtemp(prefix="ssl-demo-start-"))
    times: dict[str, list[dict[str, float]]] = {case.label: [] for case in cases}
    load_before = os.getloadavg()[0]
    try:
        for round_ in range(args.repeats):
            for case in cases:
                result = one_case(case, work / ("runs" if case.page == "" else "runs-baseline"), tiles, charts)
                times[case.label].append(result)
                print(f"round {round_ + 1} {case.label}: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.items()),
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    def med(label: str, key: str) -> float:
        return median([t[key] for t in times[label]])

    rows = ["| case | server up | on screen | server up -> on screen | warm visit | rounds (on screen) |",
            "|---|---:|---:|---:|---:|---|"]
    for case in cases:
        warm = f"{med(case.label, 'warm'):.2f}" if "warm" in times[case.label][0] else ""
        rounds = ", ".join(f"{t['on screen']:.1f}" for t in times[case.label])
        rows.append(f"| {case.label} | {med(case.label, 'server up'):.2f} | **{med(case.label, 'on screen'):.2f}** | "
                    f"{med(case.label, 'after up'):.2f} | {warm} | {rounds} |")
    overview, baseline, app = (c.label for c in CASES)

    def ratio(label: str, over: str, key: str) -> str:
        ratios = [a[key] / b[key] for a, b in zip(times[label], times[over])]
        return f"**{median(ratios):.2f}** (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"

    summary = ("Overview / Runs page, both from `demo`, round by round: median ratio "
               f"{ratio(overview, baseline, 'on screen')}.")
    if args.other_tree:
        other = cases[-1].label
        summary += (f"\n\nThis checkout / {args.other_tree}, `app` -> Overview, round by round: on screen "
                    f"{ratio(app, other, 'on screen')}; server up -> on screen {ratio(app, other, 'after up')}; "
                    f"warm visit {ratio(app, other, 'warm')}.")
    print("\n".join(rows) + "\n\n" + summary)
    if args.no_write:
        return
    command = "python bench/demo_start.py" + (f" --repeats {args.repeats}" if args.repeats != 5 else "") + (
        f" --other-tree {args.other_tree}" if args.other_tree else "")
    lines = [
        "# From the command to the first screen: `ssl-explorer demo` and `ssl-explorer app`, CPU",
        "",
        f"`{command}`: {os.cpu_count()} CPU cores, no GPU, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; the bundled runs of pretrained/ ({tiles} tiles, {charts} "
        f"chart{'s' if charts != 1 else ''}); load average {load_before:.1f} before, {load_after:.1f} after.",
        *([""] + [args.note] if args.note else []),
        "",
        "Seconds from the command's start (medians of the rounds), every case a fresh server and a fresh "
        "headless Chromium (empty cache) launched before the command; the browser opens the page as soon as "
        "the server answers. `demo` starts from an empty runs folder (it copies the bundled runs in and builds "
        "their search indexes); `app` serves the runs `demo` installed. Warm visit: the same page opened again "
        "in a new tab of the same browser, from its request to drawn.",
        "",
        *rows,
        "",
        summary,
        "",
        f"Goal (issue 18): under 10 s from the app command to the Overview on 2 cores: "
        f"{med(app, 'on screen'):.1f} s here ({'met' if med(app, 'on screen') < 10 else 'not met'}); "
        f"the Overview within 2 s of the server answering: {med(app, 'after up'):.1f} s cold "
        f"({'met' if med(app, 'after up') < 2 else 'not met'}), {med(app, 'warm'):.1f} s warm.",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
