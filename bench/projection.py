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
    args = parser.parse_args()

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
    (RESULTS / "projection_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
