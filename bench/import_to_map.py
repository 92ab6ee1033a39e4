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

Memory (`--memory`): the peak RSS of importing N x D float32 vectors (default 1,000,000 x 64,
256 MB) from a .npy and from a parquet list column, with this tree's ssl_core and with a
commit's (`--baseline`, default HEAD, taken with `git archive`), each in a fresh process:

    python bench/import_to_map.py --memory [--n 1000000] [--dim 64] [--baseline HEAD]

What is measured is the import's own work on the vectors and ids: reading and checking the file,
matching rows to images by order, the split, and writing the run's float16 embeddings, ids and
labels. The images stand in (N names; each decodes to an empty picture, so no pixels are held or
written: 1M real pictures of 8 px alone are a 192 MB array), and the steps the import then runs
on the stored run (scoring, the search index, the map) are left out: they read the stored
float16 file and hold what their own step needs. Writes the "Memory" section of import_cpu.md.

A million vectors without images (`--million`): 1,000,000 x 64 float32 vectors (20 clusters) as
.npy and labels.csv (each row's cluster, in row order), then `ssl-explorer import --embeddings
v.npy --labels labels.csv` (no --images) timed as above, to the run published with its PCA map,
that map on screen in Chromium, the UMAP map (a sample's UMAP, the rest placed by kNN) written and
on screen; and the import's peak RSS (VmHWM of its process, read while it runs). Goal: the map on
screen within 2 minutes of the command. Writes the "A million vectors" section of import_cpu.md.

    flock /tmp/ssl-heavy.lock .venv/bin/python bench/import_to_map.py --million [--n 1000000]
"""

from __future__ import annotations

import argparse
import json
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
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "import_cpu.md"
MEMORY_SECTION = "## Memory"
MILLION_SECTION = "## A million vectors without images"
MAP_FRAME = "iframe[src*='scatter_map']"  # the Explore map's component (widgets/scatter_map)

# One import in a fresh process, whichever ssl_core PYTHONPATH points at; prints a JSON line.
IMPORT_MEMORY = """
import json, sys, time
from pathlib import Path
import numpy as np
import ssl_core
import ssl_core.workflows.importer as importer
from ssl_core.data.user_files import ImageSource
from ssl_core.store.run_store import RunStore

vectors, runs = Path(sys.argv[1]), Path(sys.argv[2])
n = int(sys.argv[3])
names = [f"{i:07d}.png" for i in range(n)]
empty = np.zeros((0,), dtype=np.uint8)
importer.read_images = lambda path, column=None: ImageSource(Path(path), names, "folder")
importer._decode = lambda source, positions, resolution, progress: [empty] * len(positions)
importer.score_and_index = lambda run, report, warn: None
importer.map_run = lambda run, warn: run.set_status("finished", stage="done")

def status_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the RSS now: what starting up took does not count
before = status_mib("VmRSS")
started = time.perf_counter()
done = importer.import_embeddings(RunStore(runs), images=vectors.parent, embeddings=vectors, resolution=8)
seconds = time.perf_counter() - started
peak = status_mib("VmHWM")
stored = sorted(str(p.relative_to(done.run.path)) for p in (done.run.path / "embeddings").iterdir())
print(json.dumps({"library": str(Path(ssl_core.__file__).parent), "before_mib": before, "peak_mib": peak,
                  "seconds": seconds, "files": stored}))
"""


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


def drawn(kind: str, after: str | None = None) -> str:
    """JS for the map's frame: it has drawn the points of a map titled `kind` ("PCA", "UMAP"),
    from a block other than `after` (the digest of the map it replaces)."""
    other = "" if after is None else f" && f.dataset.digest !== '{after}'"
    return ("() => { const f = document.getElementById('frame'); const t = document.getElementById('title');"
            f" return !!(f && f.dataset.points && t && t.textContent.includes('{kind}'){other}); }}")


def published(runs: Path, name: str) -> Path | None:
    found = [p for p in runs.glob(f"[!.]*/projection/{name}")]
    return found[0].parent.parent if found else None


def vm_hwm_mib(pid: int) -> float | None:
    """A process's peak RSS so far (VmHWM), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def one_case(folder: Path, runs: Path, env: dict, browser: bool,
             images: bool = True) -> tuple[dict, list[str], Path | None]:
    """Seconds from the import command to each event (and "import peak RSS (MiB)"); the import's
    command; a screenshot."""
    command = [sys.executable, "-m", "ssl_core.cli", "import",
               *(["--images", str(folder / "images")] if images else []),
               "--embeddings", str(folder / "vectors.npy"), "--labels", str(folder / "labels.csv"),
               "--runs-dir", str(runs)]
    times: dict[str, float] = {}
    peak = [0.0]
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch_import() -> None:  # in a thread: records the import's events while the browser waits
        while "import exits" not in times:
            peak[0] = max(peak[0], vm_hwm_mib(process.pid) or 0.0)  # before poll() reaps it
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
    return {**{k: times[k] for k in order if k in times}, "import peak RSS (MiB)": peak[0]}, command, shot


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
            page.goto(f"{url}/explore?run={run_id}", timeout=600_000)
            frame = page.wait_for_selector(MAP_FRAME, timeout=600_000).content_frame()
            frame.wait_for_function(drawn("PCA"), timeout=600_000, polling=100)
            times["first map on screen"] = time.perf_counter() - start
            pca = frame.evaluate("() => document.getElementById('frame').dataset.digest")
            # The same frame draws the UMAP map when the page reruns with it.
            frame.wait_for_function(drawn("UMAP", after=pca), timeout=900_000, polling=250)
            times["UMAP map on screen"] = time.perf_counter() - start
            shot = Path(tempfile.gettempdir()) / f"import_to_map_{run_id}.png"
            page.screenshot(path=str(shot))
            chromium.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    return shot


def import_memory(library: Path, vectors: Path, n: int) -> dict:
    """Peak RSS of one import in a fresh process that imports ssl_core from `library`."""
    runs = vectors.parent / f"runs-{library.name}"
    shutil.rmtree(runs, ignore_errors=True)
    # cwd outside the clone: `python -c` puts the working folder first on sys.path.
    done = subprocess.run([sys.executable, "-c", IMPORT_MEMORY, str(vectors), str(runs), str(n)],
                          env={**os.environ, "PYTHONPATH": str(library)}, cwd=vectors.parent,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the import with {library} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(result["library"]).resolve() != (library / "ssl_core").resolve():
        raise SystemExit(f"the import ran {result['library']}, not {library / 'ssl_core'}")
    shutil.rmtree(runs, ignore_errors=True)
    return result


def memory(args) -> None:
    """Peak RSS of importing N x D float32 vectors from a .npy and from a parquet list column:
    this tree's ssl_core against `args.baseline`'s."""
    import pyarrow as pa  # only --memory writes a parquet
    import pyarrow.parquet as pq  # (as above)

    work = args.work or Path(tempfile.mkdtemp(prefix="ssl-import-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    npy = work / f"vectors-{args.n}x{args.dim}.npy"
    parquet = npy.with_suffix(".parquet")
    if not npy.exists():
        out = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(args.n, args.dim))
        rng = np.random.default_rng(0)
        for start in range(0, args.n, 100_000):
            out[start:start + 100_000] = rng.normal(size=(min(100_000, args.n - start), args.dim))
        out.flush()
        del out
    if not parquet.exists():  # the same vectors as a list<float> column, in row groups of 100k rows
        flat = pa.array(np.load(npy, mmap_mode="r").reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, args.dim).cast(pa.list_(pa.float32()))
        pq.write_table(pa.table({"vector": column}), parquet, row_group_size=100_000)
        del flat, column
    baseline = work / "baseline"
    shutil.rmtree(baseline, ignore_errors=True)
    baseline.mkdir()
    commit = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    archive = subprocess.run(["git", "archive", args.baseline, "ssl_core"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive.stdout, check=True)
    load_before = os.getloadavg()[0]
    cases: dict[tuple[str, str], dict] = {}
    for vectors in (npy, parquet):
        for label, library in ((f"before: ssl_core of {commit}", baseline), ("after: this tree's ssl_core", ROOT)):
            r = cases[vectors.suffix, label] = import_memory(library, vectors, args.n)
            print(f"{vectors.suffix} {label}: RSS {r['before_mib']:.0f} MiB before the import, peak "
                  f"{r['peak_mib']:.0f} MiB (+{r['peak_mib'] - r['before_mib']:.0f}), {r['seconds']:.1f} s", flush=True)
    shutil.rmtree(baseline, ignore_errors=True)

    def growth(r: dict) -> float:
        return r["peak_mib"] - r["before_mib"]

    ratios = {}
    for suffix in (".npy", ".parquet"):
        old, new = (r for (s, _), r in cases.items() if s == suffix)
        ratios[suffix] = growth(old) / max(1e-9, growth(new))
    size = args.n * args.dim * 4 / 2**20
    command = "flock /tmp/ssl-heavy.lock .venv/bin/python bench/import_to_map.py --memory" + (
        "" if (args.n, args.dim) == (1_000_000, 64) else f" --n {args.n} --dim {args.dim}") + (
        "" if args.baseline == "HEAD" else f" --baseline {args.baseline}")
    lines = [
        f"{MEMORY_SECTION}: importing {args.n:,} x {args.dim} float32 vectors ({size:.0f} MiB as .npy)",
        "",
        f"`{command}`: {os.cpu_count()} CPU cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"pyarrow {pa.__version__}, {time.strftime('%Y-%m-%d')}; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after. Each case is a fresh process running `import_embeddings` (images "
        "matched by order) on the same vectors, as a .npy or as a parquet list<float> column in row groups of "
        "100,000 rows; RSS is the process's: VmRSS before the import, and VmHWM after it, its peak reset just "
        "before the import (/proc/self/clear_refs), so that starting up does not count (the parquet cases "
        "import pandas and pyarrow during the import: ~70 MiB of the growth).",
        "",
        "| file | ssl_core | RSS before the import | peak RSS | peak growth | import time |",
        "|---|---|---:|---:|---:|---:|",
        *(f"| {suffix} | {label} | {r['before_mib']:.0f} MiB | {r['peak_mib']:.0f} MiB | {growth(r):.0f} MiB | "
          f"{r['seconds']:.1f} s |" for (suffix, label), r in cases.items()),
        "",
        "Peak growth, before / after: " + ", ".join(f"**{ratio:.1f}x** ({suffix})" for suffix, ratio in ratios.items())
        + ".",
        "",
        "Measured: reading and checking the vectors, matching rows to images by order, the 80/20 split, and "
        "writing the run's float16 embeddings, ids and labels. Not measured: the images (N names standing in, "
        "each decoding to an empty picture) and the steps the import runs on the stored run afterwards "
        "(scores, search index, map), which read the float16 file and hold what their own step needs.",
    ]
    if not args.no_write:
        write_section(lines)
        print(f"wrote {RESULTS}")


def write_section(lines: list[str]) -> None:
    """Put the memory section at the end of the results file, in place of an earlier one."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    kept = text.split("\n" + MEMORY_SECTION)[0].rstrip("\n")
    million_section = text[text.index(MILLION_SECTION):] if MILLION_SECTION in text else ""  # stays last
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text((kept + "\n\n" if kept else "") + "\n".join(lines) + "\n"
                       + ("\n" + million_section if million_section else ""))


def million(args) -> None:
    """1,000,000 x 64 float32 vectors in 20 clusters, no images, labels.csv in row order: the
    import command to the PCA map, then the UMAP map, on screen; the import's peak RSS."""
    work = args.work or Path(tempfile.mkdtemp(prefix="ssl-import-million-"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "labels.csv").exists():
        rng = np.random.default_rng(0)
        centres = rng.normal(size=(20, args.dim)).astype(np.float32) * 3
        clusters = rng.integers(0, 20, args.n)
        out = np.lib.format.open_memmap(work / "vectors.npy", mode="w+", dtype=np.float32, shape=(args.n, args.dim))
        for begin in range(0, args.n, 100_000):
            part = clusters[begin:begin + 100_000]
            out[begin:begin + len(part)] = centres[part] + rng.normal(size=(len(part), args.dim))
        out.flush()
        del out
        pd.DataFrame({"label": [f"cluster {c:02d}" for c in clusters]}).to_csv(work / "labels.csv", index=False)
    browser = not args.no_browser and Path(CHROMIUM).exists()
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    # numba's cache of umap-learn's kernels is the user's usual one: a machine that has made a map before.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    load_before = os.getloadavg()
    times, command, shot = one_case(work, runs, env, browser, images=False)
    load_after = os.getloadavg()
    print(", ".join(f"{k} {v:.1f}" for k, v in times.items()), flush=True)
    if shot:
        print(f"screenshot: {shot}")
    if args.no_write:
        return
    rss = times.pop("import peak RSS (MiB)")
    keys = list(times)
    lines = [
        f"{MILLION_SECTION}: {args.n:,} x {args.dim} float32 vectors, 20 clusters, labels",
        "",
        f"`flock /tmp/ssl-heavy.lock .venv/bin/python bench/import_to_map.py --million"
        f"{'' if args.n == 1_000_000 else f' --n {args.n}'}{'' if browser else ' --no-browser'}`: "
        f"{os.cpu_count()} CPU cores (shared with other work), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; load average (1, 5, 15 min) {', '.join(f'{x:.2f}' for x in load_before)} "
        f"before, {', '.join(f'{x:.2f}' for x in load_after)} after.",
        "",
        "Seconds from the start of `ssl-explorer " + " ".join(command[3:]).replace(str(work), "DIR") + "` "
        "(no --images: the vectors.npy, 244 MiB, and labels.csv, one label per row in row order); "
        "`ssl-explorer app` started once the run is published, then headless Chromium on Explore until the "
        "map's frame has drawn the PCA map's points, then the UMAP map's (a UMAP of a 50,000-row sample, the "
        "rest placed by kNN). Peak RSS: the import process's VmHWM.",
        "",
        "| " + " | ".join(keys) + " | import peak RSS |",
        "|" + "---:|" * (len(keys) + 1),
        "| " + " | ".join(f"{times[k]:.1f}" for k in keys) + f" | {rss:,.0f} MiB |",
        "",
        "Goal: the map on screen within 120 s of the import command.",
    ]
    text = RESULTS.read_text() if RESULTS.exists() else ""
    if MILLION_SECTION in text:  # replace the earlier section, up to the next one
        head, _, rest = text.partition("\n" + MILLION_SECTION)
        tail = rest[rest.index("\n## "):] if "\n## " in rest else ""
        text = head.rstrip("\n") + tail
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="images (default 5,000; --memory: 1,000,000 vectors)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--work", type=Path, help="working folder (default: a fresh temporary one)")
    parser.add_argument("--no-browser", action="store_true", help="time the import only")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    parser.add_argument("--memory", action="store_true", help="peak RSS of importing a large .npy, before and after")
    parser.add_argument("--baseline", default="HEAD", help="--memory: the commit whose ssl_core is 'before'")
    parser.add_argument("--million", action="store_true",
                        help="1,000,000 vectors without images: import to the map on screen, and peak RSS")
    args = parser.parse_args()
    if args.million:
        args.n = args.n or 1_000_000
        million(args)
        return
    if args.memory:
        args.n = args.n or 1_000_000
        memory(args)
        return
    args.n = args.n or 5000
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
    earlier = RESULTS.read_text() if RESULTS.exists() else ""
    memory_section = earlier[earlier.index(MEMORY_SECTION):] if MEMORY_SECTION in earlier else ""
    RESULTS.write_text("\n".join(lines) + "\n" + ("\n" + memory_section if memory_section else ""))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
