"""Search at scale on the CPU: exact (IndexFlatIP) against IVF (IndexIVFFlat, nprobe chosen for
recall by `ssl_core.steps.index`), at 1,000,000 vectors of 128 dimensions.

    python bench/search_scale.py                    # 1M x 128, writes bench/results/search_cpu.md
    python bench/search_scale.py --n 200000 --no-write

The vectors are synthetic and clustered, with a fixed seed: 1,000 clusters, each a Gaussian in
its own random 32-dimensional subspace around a random centre, plus a little isotropic noise
(learned embeddings have a low intrinsic dimension; isotropic 128-d blobs would make every
neighbour nearly as far as every other). The centres are drawn close enough (CENTRE_SCALE) for
clusters to overlap, so a row's neighbours spread over several lists: at 200,000 vectors (noise
0.1-0.15), centres at 0.7 let nprobe 2 reach recall 0.96, at 0.5 it took 256 of 1,788 lists.
Measured, in one process:
  - build: the exact index (add), and `build_index` above its threshold (k-means training, adding
    the vectors, choosing nprobe), with the choice's time measured again on its own;
  - recall@10 of the IVF index against exact search on 1,000 indexed rows other than the ones
    nprobe was chosen on (each row's own hit left out, as the Explore page asks), and what
    `choose_nprobe` recorded;
  - latency per query: one query at a time (the app's case: neighbours of one image), median of
    300; and 1,000 queries in one call, per query;
  - the same IVF index at the nprobe it had before nprobe was chosen (1/32 of the lists);
  - exact search's single-query latency on the first 100k, 250k and 500k vectors too: where the
    threshold between exact and IVF sits.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from ssl_core.steps.index import IVF_THRESHOLD, RECALL_K, TARGET_RECALL, build_index, choose_nprobe, recall_at_k

RESULTS = Path(__file__).resolve().parent / "results" / "search_cpu.md"
CLUSTERS, SUBSPACE = 1_000, 32
CENTRE_SCALE, NOISE = 0.6, 0.1  # spread of the centres, and of the isotropic noise, per dimension


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32: CLUSTERS Gaussians in random SUBSPACE-dimensional subspaces, plus noise."""
    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n, np.full(CLUSTERS, 1 / CLUSTERS))
    out = np.empty((n, dim), dtype=np.float32)
    start = 0
    for size in sizes:
        centre = CENTRE_SCALE * rng.normal(size=dim)
        basis = rng.normal(size=(SUBSPACE, dim)) / np.sqrt(SUBSPACE)
        spread = rng.uniform(0.5, 1.5)
        block = centre + spread * rng.normal(size=(size, SUBSPACE)) @ basis + NOISE * rng.normal(size=(size, dim))
        out[start:start + size] = block
        start += size
    return out[rng.permutation(n)]


def single_query_ms(index, queries: np.ndarray, k: int) -> float:
    """Median milliseconds of one search of one query."""
    times = []
    for q in queries:
        started = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def batched_ms(index, queries: np.ndarray, k: int) -> float:
    """Milliseconds per query when all of `queries` go in one call (best of 2)."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        index.search(queries, k)
        best = min(best, time.perf_counter() - started)
    return 1e3 * best / len(queries)


def others(found: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    return np.stack([f[f != r][:k] for f, r in zip(found, rows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args()
    n, dim, k = args.n, args.dim, RECALL_K
    load_before = os.getloadavg()[0]

    started = time.perf_counter()
    x = clustered(n, dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    print(f"data: {n:,} x {dim} in {time.perf_counter() - started:.1f} s", flush=True)
    rng = np.random.default_rng(123)  # not the seed nprobe is chosen with: other rows
    rows = np.sort(rng.choice(n, 1_000, replace=False))
    queries = x[rows]
    singles = x[rng.choice(n, 300, replace=False)]

    started = time.perf_counter()
    exact = faiss.IndexFlatIP(dim)
    exact.add(x)
    exact_build = time.perf_counter() - started
    exact_single = single_query_ms(exact, singles, k + 1)
    exact_batched = batched_ms(exact, queries, k + 1)
    _, truth = exact.search(queries, k + 1)
    truth = others(truth, rows, k)
    print(f"exact: build {exact_build:.1f} s, {exact_single:.1f} ms single, {exact_batched:.2f} ms batched", flush=True)
    smaller = {}
    for size in (100_000, 250_000, 500_000):
        if size < n:
            part = faiss.IndexFlatIP(dim)
            part.add(x[:size])
            smaller[size] = single_query_ms(part, singles, k + 1)
            del part
    del exact

    started = time.perf_counter()
    ivf_index = build_index(x, ivf_threshold=n - 1, use_gpu=False)
    ivf_build = time.perf_counter() - started
    ivf = faiss.extract_index_ivf(ivf_index)
    started = time.perf_counter()
    record = choose_nprobe(ivf_index, x)  # again, alone: its share of the build
    choose_seconds = time.perf_counter() - started
    _, found = ivf_index.search(queries, k + 1)
    ivf_recall = recall_at_k(others(found, rows, k), truth)
    ivf_single = single_query_ms(ivf_index, singles, k + 1)
    ivf_batched = batched_ms(ivf_index, queries, k + 1)
    chosen = ivf.nprobe
    ivf.nprobe = former = min(ivf.nlist, max(16, ivf.nlist // 32))  # the fixed nprobe before it was chosen
    _, found = ivf_index.search(queries, k + 1)
    former_recall = recall_at_k(others(found, rows, k), truth)
    former_single = single_query_ms(ivf_index, singles, k + 1)
    former_batched = batched_ms(ivf_index, queries, k + 1)
    ivf.nprobe = chosen
    print(f"ivf: nlist {ivf.nlist}, nprobe {ivf.nprobe}, build {ivf_build:.1f} s (choosing nprobe "
          f"{choose_seconds:.1f} s), recall@10 {ivf_recall:.4f} (recorded {record['recall_at_10']}), "
          f"{ivf_single:.2f} ms single, {ivf_batched:.3f} ms batched", flush=True)
    print(f"ivf at the former fixed nprobe {former}: recall@10 {former_recall:.4f}, {former_single:.2f} ms single, "
          f"{former_batched:.3f} ms batched")
    print("recall by nprobe (the choice's sample):", record["recall_by_nprobe"])
    print("exact single-query ms by size:", {**smaller, n: round(exact_single, 2)})

    if args.no_write:
        return
    sizes = "; ".join(f"{size // 1000:,}k: {ms:.1f} ms" for size, ms in {**smaller, n: exact_single}.items())
    lines = [
        f"# Search at scale: {n:,} x {dim} on the CPU, exact against IVF",
        "",
        f"`flock /tmp/ssl-heavy.lock .venv/bin/python bench/search_scale.py"
        f"{'' if (n, dim) == (1_000_000, 128) else f' --n {n} --dim {dim}'}`: {os.cpu_count()} CPU cores "
        f"({platform.processor() or platform.machine()}), faiss {faiss.__version__} (CPU, "
        f"{faiss.omp_get_max_threads()} threads), Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after.",
        "",
        f"Data: {CLUSTERS:,} overlapping clusters, each a Gaussian in its own random {SUBSPACE}-d subspace "
        f"around a random centre (N(0, {CENTRE_SCALE}²) per dimension) plus isotropic noise (N(0, {NOISE}²)), "
        "L2-normalized (seed 0). Queries: 1,000 indexed rows not among "
        "the ones nprobe was chosen on, each row's own hit left out; single-query latency is the median of 300 "
        "one-row searches, batched is 1,000 rows in one call (best of 2), both for k = 11 (10 neighbours and "
        "the row itself).",
        "",
        "| index | build | recall@10 vs exact | single query | batched, per query |",
        "|---|---:|---:|---:|---:|",
        f"| exact (IndexFlatIP) | {exact_build:.1f} s | 1 | {exact_single:.1f} ms | {exact_batched:.2f} ms |",
        f"| IVF (IndexIVFFlat, nlist {ivf.nlist}, nprobe {ivf.nprobe}) | {ivf_build:.1f} s (choosing nprobe: "
        f"{choose_seconds:.1f} s) | {ivf_recall:.4f} | {ivf_single:.2f} ms | {ivf_batched:.3f} ms |",
        f"| the same IVF index at the former fixed nprobe {former} (nlist / 32) | | {former_recall:.4f} | "
        f"{former_single:.2f} ms | {former_batched:.3f} ms |",
        "",
        f"nprobe chosen by `choose_nprobe` for a target recall@10 of {TARGET_RECALL} on {record['recall_queries']:,} "
        f"rows (seed {record['recall_seed']}): recall by nprobe {record['recall_by_nprobe']}.",
        "",
        f"Exact search, one query, by the number of vectors: {sizes}.",
        f"The library's threshold: exact up to {IVF_THRESHOLD:,} vectors, IVF above.",
    ]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
