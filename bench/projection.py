"""Our projection path against plain umap-learn, each in a fresh process, on the CPU.

    python bench/projection.py                       # 10,000 `shapes` images through a random convnet (64-d)
    python bench/projection.py --points 5000
    python bench/projection.py --run RUN_ID --runs-dir runs   # a real run's embeddings

Every process starts cold, as a job or `ssl-explorer project` does:
  plain   `umap.UMAP(metric="cosine", n_neighbors=15, min_dist=0.1, random_state=0)` with an
          empty NUMBA_CACHE_DIR: what umap-learn costs in a fresh process without our cache
          (the baseline of the ratio), then again on that folder, which pynndescent's own
          `cache=True` kernels filled: what plain umap-learn gets from a cache alone;
  ours    ssl_core.steps.projection (PCA map first, then umap-learn on FAISS neighbours with every kernel
          in numba's disk cache), run twice on one new cache folder: the first run fills it
          (what the first map on a machine costs), the second is the steady state (headline).
Times are wall-clock from the parent, interpreter start and imports included; "first map" is
when our PCA map is on disk. Trustworthiness (sklearn, k=10, cosine) is measured on a fixed
subsample of 2,000 points of each map. Writes bench/results/projection_cpu.md; the last line
printed is one JSON object.

Large runs (`--large N`): UMAP of a sample with every other point placed, as `project_run` maps
runs above `SAMPLE_ABOVE` points with umap-learn, on a synthetic Gaussian mixture (`mixture`).

    python bench/projection.py --large 100000             # sample+placement vs a full UMAP of all
    python bench/projection.py --large 1000000 --no-full  # sample+placement only (a full UMAP: not run)
    python bench/projection.py --large 30000 --sample-size 3000  # the placement rule on a sparse sample

The points are a run's embeddings (float16, as `embed` and imports store them), and each map is
the run's whole project step (`project_run`) in a fresh process, on one numba cache folder that a
small map filled first (the steady state); the full UMAP is the same step with the threshold
above N. Times are the UMAP map's as projection/params.json records them (the PCA map's apart);
peak RSS is the process's VmHWM, beside its RSS once its libraries were imported.
Trustworthiness (sklearn, k=10, cosine) is computed on a fixed random subset of 5,000 points,
since it is quadratic in the points: it sees the map's structure at the scale of ~N/5,000
neighbours, not the nearest few. Each N writes its own part of the results file's section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
RESULTS_FILE = RESULTS / "projection_cpu.md"

PLAIN = """
import sys, time, warnings
import numpy as np
import umap
warnings.simplefilter("ignore")
x = np.load(sys.argv[1])
coords = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=0).fit_transform(x)
np.save(sys.argv[2], coords.astype(np.float32))
print(time.time(), flush=True)
"""

OURS = """
import sys, time
import numpy as np
from ssl_core.steps.projection import project_pca, project_umap
x = np.load(sys.argv[1])
np.save(sys.argv[3], project_pca(x))
print(time.time(), flush=True)  # the first map is on disk
np.save(sys.argv[2], project_umap(x, backend="umap-learn", n_neighbors=15, min_dist=0.1, seed=0))
print(time.time(), flush=True)
"""


LARGE = """
import json, sys, time
from ssl_core.steps.projection import project_run
from ssl_core.store.run_store import RunStore


def rss_mb(field):  # VmHWM: this process's peak since it started (ru_maxrss would include the parent's)
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) / 1024


run = RunStore(sys.argv[1]).get(sys.argv[2])
ready = rss_mb("VmRSS")  # libraries imported, nothing loaded
started = time.perf_counter()
params = project_run(run, backend="umap-learn", sample_above=int(sys.argv[3]), sample_size=int(sys.argv[4]))
step_s = time.perf_counter() - started
print(json.dumps({"params": params, "step_s": step_s, "peak_rss_mb": rss_mb("VmHWM"), "ready_rss_mb": ready,
                  "growth_mb": rss_mb("VmHWM") - ready}), flush=True)
"""


def mixture(n: int, dim: int = 64, clusters: int = 100, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """(n, dim) float16: a Gaussian mixture of `clusters` components in 20 groups of 5 (nearby
    centres), each stretched along its own 8 random directions, with unequal weights. Tuned so
    that a full UMAP of 20k points scores a trustworthiness of ~0.95, as the `shapes` embeddings
    above do: clusters that touch, not islands that any map separates."""
    rng = np.random.default_rng(seed)
    groups = rng.normal(size=(clusters // 5, dim))
    centres = np.repeat(groups, 5, axis=0) + 0.3 * rng.normal(size=(clusters, dim))
    directions = 0.5 * rng.normal(size=(clusters, 8, dim))
    component = rng.choice(clusters, size=n, p=rng.dirichlet(np.full(clusters, 2.0)))
    x = np.empty((n, dim), np.float16)
    for start in range(0, n, chunk):
        c = component[start:start + chunk]
        spread = np.einsum("nk,nkd->nd", rng.normal(size=(len(c), 8)), directions[c])
        x[start:start + chunk] = centres[c] + spread + 0.3 * rng.normal(size=(len(c), dim))
    return x


def placed_by_mean(x: np.ndarray, sample: np.ndarray, sample_coords: np.ndarray, k: int) -> np.ndarray:
    """The map with every non-sample row at the similarity-weighted mean of all of its k nearest
    sample points (the rule `placed_coords` improves on), for comparison."""
    from ssl_core.steps.index import build_index
    from ssl_core.steps.projection import KNN_EXACT_MAX, _normalized

    coords = np.empty((len(x), 2), np.float32)
    coords[sample] = sample_coords
    rest = np.setdiff1d(np.arange(len(x)), sample)
    index = build_index(x[sample], ivf_threshold=KNN_EXACT_MAX)
    for start in range(0, len(rest), 65_536):
        rows = rest[start:start + 65_536]
        sims, found = index.search(_normalized(x[rows]), k)
        weights = np.maximum(sims, 0) + 1e-6
        coords[rows] = (weights[:, :, None] * sample_coords[found]).sum(1) / weights.sum(1, keepdims=True)
    return coords


def mixture_run(root: Path, x16: np.ndarray):
    """A run holding `x16` as its embeddings (4/5 train, then test; no labels), as an import or
    `embed` stores them, whose project step the benchmark times."""
    from ssl_core.core.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
    from ssl_core.store import files
    from ssl_core.store.run_store import RunStore

    config = RunConfig(data=DataConfig(dataset="mixture"), backbone=BackboneConfig(name="none"),
                       method={"name": "imported"}, train=TrainConfig(epochs=0, device="cpu", seed=0))
    run = RunStore(root).create(config)
    run.embeddings_dir.mkdir(parents=True)
    n_train = len(x16) * 4 // 5
    for split, rows in (("train", slice(0, n_train)), ("test", slice(n_train, len(x16)))):
        np.save(run.embeddings_dir / files.vectors(split), x16[rows])
        np.save(run.embeddings_dir / files.labels(split), np.full(rows.stop - rows.start, -1, np.int64))
        (run.embeddings_dir / files.ids(split)).write_text(json.dumps([f"{split}/{i}" for i in range(rows.stop - rows.start)]))
    (run.embeddings_dir / files.CLASS_NAMES).write_text("[]")
    return run


def large(args: argparse.Namespace) -> None:
    from ssl_core.steps.projection import SAMPLE_ABOVE, SAMPLE_SIZE, sample_rows

    x16 = mixture(args.large, args.dim, args.clusters)
    x = x16.astype(np.float32)
    subset = np.sort(np.random.default_rng(1).choice(len(x), size=min(5_000, len(x)), replace=False))
    print(f"{len(x):,} x {x.shape[1]} mixture of {args.clusters} Gaussians", flush=True)
    load = os.getloadavg()[0]
    r: dict = {"points": len(x), "dim": int(x.shape[1]), "clusters": args.clusters}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run, warm = mixture_run(tmp / "runs", x16), mixture_run(tmp / "runs", x16[:2_000])
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "numba"), "PYTHONPATH": str(ROOT)}

        # A sample size of one's own is also the threshold: the run above it is mapped so.
        above, size = (args.sample_size, args.sample_size) if args.sample_size else (SAMPLE_ABOVE, SAMPLE_SIZE)

        def project(which, sample_above: int) -> tuple[dict, np.ndarray, np.ndarray]:
            out = subprocess.run([sys.executable, "-c", LARGE, str(tmp / "runs"), which.id, str(sample_above),
                                  str(size)],
                                 env=env, capture_output=True, text=True, check=True).stdout
            maps = [np.load(which.projection_dir / name) for name in ("umap_2d.npy", "pca_2d.npy")]
            return json.loads(out.strip().splitlines()[-1]), *maps

        project(warm, len(x))  # fills the numba cache: the maps below start warm
        r["sampled"], coords, pca = project(run, above)
        umap = r["sampled"]["params"]["umap"]
        print(f"sample+placement: {umap['seconds']:.1f} s, peak RSS {r['sampled']['peak_rss_mb']:.0f} MB", flush=True)
        r["trust_sampled"], r["trust_pca"] = trust(x, coords, subset), trust(x, pca, subset)
        info = umap["sample"]
        sample = sample_rows(len(x), info["size"], info["seed"])
        r["trust_mean_rule"] = trust(x, placed_by_mean(x, sample, coords[sample], info["placement"]["k"]), subset)
        if not args.no_full:
            r["full"], full, _ = project(run, len(x))  # above every run's size: one UMAP of all
            print(f"full UMAP: {r['full']['params']['umap']['seconds']:.1f} s", flush=True)
            r["trust_full"] = trust(x, full, subset)
    r.update(load_before=round(load, 2), load_after=round(os.getloadavg()[0], 2), cpus=os.cpu_count(),
             python=platform.python_version())
    write_large_markdown(r, args)
    print(json.dumps(r))


def shapes_embeddings(n: int, dim: int) -> np.ndarray:
    """`shapes` images through a randomly initialized convnet whose last width is `dim`."""
    import torch

    from ssl_core.models.backbones.convnet import ConvNet
    from ssl_core.core.config import DataConfig
    from ssl_core.data import load_dataset

    data = load_dataset(DataConfig(dataset="shapes", train_size=n, test_size=100))
    torch.manual_seed(0)
    net = ConvNet(widths=(16, 32, dim)).eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, n, 1000):
            images = data.train.images[start:start + 1000].permute(0, 3, 1, 2).float() / 255
            chunks.append(net((images - 0.5) / 0.25))
    return torch.cat(chunks).numpy()


def run_embeddings(run_id: str, runs_dir: str) -> np.ndarray:
    from ssl_core.steps.embed import load_all_embeddings
    from ssl_core.store.run_store import RunStore

    return load_all_embeddings(RunStore(runs_dir).get(run_id))[0]


def timed_process(script: str, args: list[str], cache: Path) -> tuple[float, list[float]]:
    """(wall seconds of a fresh `python -c script args`, seconds from its start to each time it
    printed)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    started = time.time()
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                         check=True).stdout
    wall = time.time() - started
    return wall, [float(line) - started for line in out.split()]


def trust(x: np.ndarray, coords: np.ndarray, sample: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return round(float(trustworthiness(x[sample], coords[sample], n_neighbors=10, metric="cosine")), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--run", help="use this run's embeddings instead of `shapes` through a random convnet")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--note", default="", help="a line for the results file (e.g. the machine was shared)")
    parser.add_argument("--large", type=int, help="map this many mixture points as a sample plus placement")
    parser.add_argument("--clusters", type=int, default=100, help="--large: Gaussians in the mixture")
    parser.add_argument("--no-full", action="store_true", help="--large: no full UMAP of every point to compare")
    parser.add_argument("--sample-size", type=int, help="--large: sample (and threshold) instead of the module's")
    args = parser.parse_args()
    if args.large:
        return large(args)

    x = run_embeddings(args.run, args.runs_dir) if args.run else shapes_embeddings(args.points, args.dim)
    x = np.ascontiguousarray(x, dtype=np.float32)
    source = f"run {args.run}" if args.run else "shapes through a random convnet"
    print(f"{len(x):,} x {x.shape[1]} embeddings ({source})", flush=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "x.npy", x)
        data, out = str(tmp / "x.npy"), tmp / "out"
        out.mkdir()
        plain_wall, _ = timed_process(PLAIN, [data, str(out / "plain.npy")], tmp / "plain-cache")
        print(f"plain umap-learn, fresh process, empty cache: {plain_wall:.1f} s", flush=True)
        plain_cached_wall, _ = timed_process(PLAIN, [data, str(out / "plain.npy")], tmp / "plain-cache")
        print(f"plain umap-learn, fresh process, its own cache: {plain_cached_wall:.1f} s", flush=True)
        cold_wall, cold_marks = timed_process(OURS, [data, str(out / "ours.npy"), str(out / "pca.npy")],
                                              tmp / "our-cache")
        print(f"ours, fresh process, cold cache: {cold_wall:.1f} s (first map at {cold_marks[0]:.1f} s)",
              flush=True)
        ours_wall, ours_marks = timed_process(OURS, [data, str(out / "ours.npy"), str(out / "pca.npy")],
                                              tmp / "our-cache")
        print(f"ours, fresh process, warm cache: {ours_wall:.1f} s (first map at {ours_marks[0]:.1f} s)",
              flush=True)
        sample = np.sort(np.random.default_rng(0).choice(len(x), size=min(2_000, len(x)), replace=False))
        scores = {name: trust(x, np.load(out / f"{name}.npy"), sample) for name in ("plain", "ours", "pca")}

    result = {
        "points": len(x), "dim": int(x.shape[1]), "source": source,
        "plain_s": round(plain_wall, 2), "plain_own_cache_s": round(plain_cached_wall, 2),
        "ours_cold_cache_s": round(cold_wall, 2), "ours_s": round(ours_wall, 2),
        "ours_first_map_s": round(ours_marks[0], 2), "ratio": round(plain_wall / ours_wall, 2),
        "ratio_first_map": round(plain_wall / ours_marks[0], 2),
        "trustworthiness_plain": scores["plain"], "trustworthiness_ours": scores["ours"],
        "trustworthiness_pca": scores["pca"],
        "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    write_markdown(result, args)
    print(json.dumps(result))


def write_markdown(r: dict, args: argparse.Namespace) -> None:
    import umap

    command = "python bench/projection.py " + " ".join(sys.argv[1:])
    lines = [
        "# Projection on the CPU: our path vs plain umap-learn, fresh processes",
        "",
        f"`{command.strip()}` ({r['points']:,} x {r['dim']} embeddings, {r['source']}; umap-learn "
        f"{umap.__version__}, Python {r['python']}, {r['cpus']} CPUs, load average {r['load_before']} before, "
        f"{r['load_after']} after).",
        "",
        "| path | wall time (fresh process) | first map | trustworthiness (k=10) |",
        "| --- | ---: | ---: | ---: |",
        f"| plain umap-learn, empty numba cache | {r['plain_s']:.1f} s | {r['plain_s']:.1f} s | "
        f"{r['trustworthiness_plain']:.4f} |",
        f"| plain umap-learn, pynndescent's own cached kernels | {r['plain_own_cache_s']:.1f} s | | |",
        f"| ours, first run on a machine (cold cache) | {r['ours_cold_cache_s']:.1f} s | | |",
        f"| **ours, warm cache** | **{r['ours_s']:.1f} s** | {r['ours_first_map_s']:.1f} s (PCA, "
        f"trustworthiness {r['trustworthiness_pca']:.4f}) | {r['trustworthiness_ours']:.4f} |",
        "",
        f"Plain / ours: **{r['ratio']:.1f}x** to the UMAP map, **{r['ratio_first_map']:.0f}x** to the first map.",
        "",
        "Ours = `ssl_core.steps.projection`: the PCA map is written first; UMAP is umap-learn fed exact cosine "
        "neighbours from FAISS (no pynndescent kernels to compile) with all of its numba kernels in "
        "the disk cache (~/.cache/ssl-explorer/numba in real use; a fresh temporary folder here).",
    ]
    if args.note:
        lines += ["", args.note]
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else ""
    large_section = old[old.index(LARGE_HEADING):] if LARGE_HEADING in old else ""
    RESULTS_FILE.write_text("\n".join(lines) + "\n" + ("\n" + large_section if large_section else ""))


LARGE_HEADING = "## Large runs: UMAP of a sample, every other point placed"


def write_large_markdown(r: dict, args: argparse.Namespace) -> None:
    """Write this N's part of the large-runs section, keeping the rest of the file."""
    from ssl_core.steps.projection import PLACE_RULE

    s, umap = r["sampled"], r["sampled"]["params"]["umap"]
    info = umap["sample"]
    command = "flock /tmp/ssl-heavy.lock .venv/bin/python bench/projection.py " + " ".join(sys.argv[1:])
    input_mb = r["points"] * r["dim"] * 4 / 2**20
    lines = [
        f"### {r['points']:,} points" + (f", a {args.sample_size:,}-point sample" if args.sample_size else ""),
        "",
        f"`{command.strip()}` ({r['points']:,} x {r['dim']} mixture of {r['clusters']} Gaussians; umap-learn "
        f"{umap['version']}, Python {r['python']}, {r['cpus']} CPUs, load average {r['load_before']} before, "
        f"{r['load_after']} after).",
        "",
        "| map | time | trustworthiness (k=10, 5,000-point subset) |",
        "| --- | ---: | ---: |",
    ]
    if "full" in r:
        lines.append(f"| full UMAP of all {r['points']:,} points | {r['full']['params']['umap']['seconds']:.1f} s | "
                     f"{r['trust_full']:.4f} |")
    lines += [
        f"| **UMAP of a {info['size']:,}-point sample + placement (k={info['placement']['k']})** | "
        f"**{umap['seconds']:.1f} s** ({info['umap_seconds']:.1f} s UMAP, {info['placement_seconds']:.1f} s "
        f"placement) | **{r['trust_sampled']:.4f}** |",
        f"| the same sample, every other point at the weighted mean of all k | | {r['trust_mean_rule']:.4f} |",
        f"| PCA map (written first) | {s['params']['pca']['seconds']:.1f} s | {r['trust_pca']:.4f} |",
        "",
    ]
    if "full" in r:
        ratio = r["full"]["params"]["umap"]["seconds"] / umap["seconds"]
        lines += [f"Full UMAP / sample+placement: **{ratio:.1f}x** the time; trustworthiness "
                  f"{r['trust_sampled'] - r['trust_full']:+.4f}.", ""]
    lines += [f"The whole project step (`project_run`: loading, checks, PCA, UMAP, writes) took {s['step_s']:.1f} s "
              f"with sampling. Its process peaked at **{s['peak_rss_mb']:,.0f} MB** RSS; it held {s['ready_rss_mb']:,.0f} MB "
              f"once its libraries (torch among them) were imported, so the step added {s['growth_mb']:,.0f} MB "
              f"at most, umap-learn's and numba's imports included (the float32 vectors alone: {input_mb:,.0f} MB)."]
    if args.note:
        lines += ["", args.note]
    part = "\n".join(lines) + "\n"

    RESULTS.mkdir(parents=True, exist_ok=True)
    text = RESULTS_FILE.read_text() if RESULTS_FILE.exists() else ""
    if LARGE_HEADING not in text:
        text = text.rstrip("\n") + "\n\n" + "\n".join([
            LARGE_HEADING, "",
            "Above `SAMPLE_ABOVE` points, `project_run` maps a run with umap-learn as UMAP of a seeded sample, "
            f"every other point placed from its nearest sample points (cosine, FAISS): the {PLACE_RULE}. "
            "Synthetic data: `mixture` in bench/projection.py (seed 0). Each map ran in a fresh process "
            "on a numba cache that a 2,000-point map filled first; times are the UMAP map's in projection/params.json. Trustworthiness "
            "is computed on one fixed random subset of 5,000 points (it is quadratic in the points), so it "
            "judges the map at the scale of the ~N/5,000 nearest neighbours.", ""]) + "\n"
    key = f"{r['points']}" + (f" sample {args.sample_size}" if args.sample_size else "")
    marker, end = f"<!-- large {key} -->", f"<!-- end large {key} -->"
    block = f"{marker}\n{part}{end}\n"
    if marker in text:
        text = text[:text.index(marker)] + block + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    RESULTS_FILE.write_text(text)


if __name__ == "__main__":
    main()
