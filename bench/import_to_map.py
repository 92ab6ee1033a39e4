"""Time bringing your own embeddings: `ssl-explorer import` of 5,000 images with 64-d vectors,
until the map is on screen in a browser.

Run: python bench/import_to_map.py [--n 5000] [--dim 64] [--no-browser] [--work DIR]

Not timed: the data. `shapes` images (32 px) written as PNG files, 64-d vectors (a fixed random
projection of the pixels, so the map has structure to show) as .npy, and labels.csv with each
image's shape class and factors.

Timed from the import command's start, every command a fresh process, as a user would type them:
  - `ssl-explorer import --images DIR --embeddings v.npy --labels labels.csv`: when the run is
    published (its PCA map exists), when its UMAP map exists, and when the command exits;
  - `ssl-explorer app`, started as soon as the run is published (the import goes on computing
    UMAP beside it, as it would for a user), and headless Chromium (Debian's, via Playwright)
    opening Explore on the new run: when the plot has drawn its points (the PCA map standing in),
    and when the UMAP map has replaced it.
"First run" points numba's cache (umap-learn's compiled kernels) at an empty folder, as on a
machine that never made a map; "later run" reuses what the first run left there.
The target: under 45 s from the import command to the map on screen on 2 CPU cores, first run
included. Writes bench/results/import_cpu.md.
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
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ssl_core.core.config import DataConfig
from ssl_core.data import load_dataset

CHROMIUM = "/usr/bin/chromium"
RESULTS = Path(__file__).resolve().parent / "results" / "import_cpu.md"


def make_data(folder: Path, n: int, dim: int) -> None:
    data = load_dataset(DataConfig(dataset="shapes", train_size=n, test_size=0))
    images = data.images.numpy()
    (folder / "images").mkdir(parents=True)
    names = [f"{i:05d}.png" for i in range(n)]
    for name, image in zip(names, images):
        Image.fromarray(image).save(folder / "images" / name)
    pixels = images.reshape(n, -1).astype(np.float32) / 255
    projection = np.random.default_rng(0).normal(size=(pixels.shape[1], dim)).astype(np.float32)
    np.save(folder / "vectors.npy", (pixels - pixels.mean(0)) @ projection / np.sqrt(pixels.shape[1]))
    columns = {"filename": names, "label": [data.class_names[i] for i in data.labels.numpy()]}
    for key, values in data.factors.items():
        levels = data.factor_levels.get(key)
        columns[key] = [levels[int(v)] for v in values] if levels else values
    pd.DataFrame(columns).to_csv(folder / "labels.csv", index=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def drawn(kind: str | None = None) -> str:
    """JS: the plot has drawn points (of the map titled `kind`, if given)."""
    title = "" if kind is None else f" && gd._fullLayout.title && String(gd._fullLayout.title.text).includes('{kind}')"
    return ("() => { const gd = document.querySelector('.js-plotly-plot');"
            " return !!(gd && gd._fullData && gd._fullData.some(t => t.x && t.x.length > 0)" + title + "); }")


def published(runs: Path, name: str) -> Path | None:
    found = [p for p in runs.glob(f"[!.]*/projection/{name}")]
    return found[0].parent.parent if found else None


def one_case(folder: Path, runs: Path, env: dict, browser: bool) -> tuple[dict, list[str], Path | None]:
    """Seconds from the import command to each event; the import's command; a screenshot."""
    command = [sys.executable, "-m", "ssl_core.cli", "import", "--images", str(folder / "images"),
               "--embeddings", str(folder / "vectors.npy"), "--labels", str(folder / "labels.csv"),
               "--runs-dir", str(runs)]
    times: dict[str, float] = {}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch_import() -> None:  # in a thread: records the import's events while the browser waits
        while "import exits" not in times:
            exited = process.poll() is not None
            now = time.perf_counter() - start
            if "run published (PCA map)" not in times and published(runs, "pca_2d.npy"):
                times["run published (PCA map)"] = now
            if "UMAP map file" not in times and published(runs, "umap_2d.npy"):
                times["UMAP map file"] = now
            if exited:
                times["import exits"] = now
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_import, daemon=True)
    watcher.start()
    while "run published (PCA map)" not in times and "import exits" not in times:
        time.sleep(0.05)
    run = published(runs, "pca_2d.npy")
    if run is None:
        raise SystemExit(f"import failed ({process.returncode}):\n{process.communicate()[1]}")
    try:
        shot = open_in_browser(runs, run.name, env, times, start) if browser else None
    except BaseException:
        process.kill()  # the browser part failed: do not leave the import running
        raise
    err = process.communicate()[1]
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"import failed ({process.returncode}):\n{err}")
    order = ["run published (PCA map)", "first map on screen", "UMAP map file", "UMAP map on screen", "import exits"]
    return {k: times[k] for k in order if k in times}, command, shot


def open_in_browser(runs: Path, run_id: str, env: dict, times: dict[str, float], start: float) -> Path:
    """`ssl-explorer app`, then Chromium on Explore: record when the first map and the UMAP map
    are drawn; returns a screenshot of the UMAP map."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    app = subprocess.Popen([sys.executable, "-m", "ssl_core.cli", "app", "--port", str(port), "--runs-dir",
                            str(runs)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            page = chromium.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/explore?run={run_id}", timeout=300_000)
            page.wait_for_function(drawn(), timeout=300_000, polling=100)
            times["first map on screen"] = time.perf_counter() - start
            page.wait_for_function(drawn("UMAP"), timeout=300_000, polling=100)
            times["UMAP map on screen"] = time.perf_counter() - start
            shot = Path(tempfile.gettempdir()) / f"import_to_map_{run_id}.png"
            page.screenshot(path=str(shot))
            chromium.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    return shot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--work", type=Path, help="working folder (default: a fresh temporary one)")
    parser.add_argument("--no-browser", action="store_true", help="time the import only")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    browser = not args.no_browser and Path(CHROMIUM).exists()

    work = args.work or Path(tempfile.mkdtemp(prefix="ssl-import-bench-"))
    if not (work / "vectors.npy").exists():
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        make_data(work, args.n, args.dim)
    cache = work / "numba-cache"
    shutil.rmtree(cache, ignore_errors=True)  # the first run compiles umap-learn's kernels
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    rows = []
    for label in ("first run (empty numba cache)", "later run (cache of the first)"):
        runs = work / f"runs-{len(rows)}"
        shutil.rmtree(runs, ignore_errors=True)
        times, command, shot = one_case(work, runs, env, browser)
        rows.append({"case": label, **times})
        print(label + ": " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()), flush=True)
        if shot:
            print(f"screenshot: {shot}")

    if args.no_write:
        return
    keys = list(rows[0])
    lines = [
        f"# Import to map: {args.n:,} images with {args.dim}-d vectors, CPU",
        "",
        f"`python bench/import_to_map.py{'' if browser else ' --no-browser'}`: {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}.",
        "",
        "Seconds from the start of the import command, every step a fresh process as a user types it: "
        "`ssl-explorer import` (PNG files of `shapes` at 32 px, 64-d float32 vectors, labels.csv with the "
        "class and the factors); `ssl-explorer app` started once the run is published (its PCA map "
        "exists; the import goes on with UMAP beside the app), then headless Chromium on Explore until the "
        "plot has drawn its points, first the PCA map standing in, then the UMAP map replacing it.",
        "",
        "| " + " | ".join(keys) + " |",
        "|" + "---|" * len(keys),
        *("| " + " | ".join(f"{r[k]:.1f}" if isinstance(r[k], float) else r[k] for k in keys) + " |" for r in rows),
        "",
        "Target: under 45 s from the import command to the map on screen, first run included.",
        "",
        "The import's command: `ssl-explorer " + " ".join(command[3:]) + "`",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
