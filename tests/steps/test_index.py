"""ssl_core.steps.index: exact search on small sets, IVF above the threshold (checked against brute force
with the threshold lowered: its nprobe reaches the target recall, and the recall it records is the one
a recomputation finds), the GPU build's plumbing, and the stored record."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from ssl_core.steps import index as index_module
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import (RECALL_QUERIES, TARGET_RECALL, build_index, choose_nprobe, index_run,
                                  ivf_nlist, load_index, neighbors, search)
from tiny_runs import embedded_run


def clustered(n: int = 5_000, dim: int = 32, clusters: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    return (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def brute_force(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    return np.argsort(-(q @ unit.T), axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def test_below_the_threshold_the_index_is_exact():
    vectors = clustered(n=2_000)
    index = build_index(vectors)
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == 2_000
    _, rows = search(index, vectors[:100], 10)
    assert recall(rows, brute_force(vectors, vectors[:100], 10)) > 0.999


def neighbours_of_rows(vectors: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Brute-force k nearest rows of each of `rows`, itself left out (as the Explore page asks)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit[rows] @ unit.T
    sims[np.arange(len(rows)), rows] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return np.take_along_axis(top, np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1), axis=1)


def test_above_the_threshold_an_ivf_index_reaches_the_target_recall():
    vectors = clustered(n=30_000)
    index = build_index(vectors, ivf_threshold=1_000)
    ivf = faiss.extract_index_ivf(index)
    assert isinstance(index, faiss.IndexIVFFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert ivf.nlist == ivf_nlist(30_000) and ivf.nprobe < ivf.nlist  # approximate
    # Rows other than the ones nprobe was chosen on: the recall holds beyond its own sample.
    rows = np.random.default_rng(7).choice(30_000, 1_000, replace=False)
    distances, found = search(index, vectors[rows], 11)
    found = np.stack([f[f != r][:10] for f, r in zip(found, rows)])
    assert recall(found, neighbours_of_rows(vectors, rows, 10)) >= TARGET_RECALL  # 0.974 here
    assert np.all(np.diff(distances, axis=1) >= -1e-6)  # nearest first, as cosine distances


def test_nprobe_is_the_smallest_power_of_two_that_reaches_the_target():
    vectors = clustered(n=20_000)
    index = build_index(vectors, ivf_threshold=1_000)
    x = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    record = choose_nprobe(index, x)  # the same measurement again: the same choice
    nprobe = faiss.extract_index_ivf(index).nprobe
    assert record["nprobe"] == nprobe and record["target_reached"] and record["recall_at_10"] >= TARGET_RECALL
    tried = {int(p): r for p, r in record["recall_by_nprobe"].items()}
    assert list(tried) == [2 ** i for i in range(len(tried))] and max(tried) == nprobe
    assert all(r < TARGET_RECALL for p, r in tried.items() if p < nprobe)


def test_an_index_that_cannot_reach_the_target_searches_every_list(monkeypatch):
    vectors = clustered(n=5_000)
    # Stands in for lists that never gather a row's neighbours, whatever nprobe.
    monkeypatch.setattr(index_module, "recall_at_k", lambda found, truth: 0.5)
    index = build_index(vectors, ivf_threshold=1_000)
    ivf = faiss.extract_index_ivf(index)
    assert ivf.nprobe == ivf.nlist == ivf_nlist(5_000)  # exhaustive: exact up to ties
    record = choose_nprobe(index, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    assert record["target_reached"] is False and record["nprobe"] == ivf.nlist
    assert list(record["recall_by_nprobe"]) == ["1", "2", "4", "8", "16", "32", "64", "128"]
    with pytest.raises(ValueError, match="target recall must be in"):
        choose_nprobe(index, vectors, target=1.5)


def test_ivf_lists_follow_the_square_root_and_stay_trainable():
    assert ivf_nlist(1_000_000) == 4_000
    assert ivf_nlist(5_000) == 5_000 // 39  # k-means needs ~39 points per list
    assert ivf_nlist(10) == 1


def test_index_run_records_nprobe_and_a_recall_that_a_recomputation_finds(store):
    run = embedded_run(store, train_size=24_000, test_size=6_000)
    info = index_run(run, ivf_threshold=1_000)
    assert json.loads(run.index_path.with_name("params.json").read_text()) == info
    loaded = load_index(run)
    ivf = faiss.extract_index_ivf(loaded)
    assert {k: info[k] for k in ("kind", "num_vectors", "nlist", "nprobe", "built_on", "recall_queries")} == {
        "kind": "IndexIVFFlat", "num_vectors": 30_000, "nlist": ivf_nlist(30_000), "nprobe": ivf.nprobe,
        "built_on": "cpu", "recall_queries": RECALL_QUERIES}  # nprobe read back from faiss.index itself
    assert info["target_reached"] and info["recall_at_10"] >= info["target_recall"] == TARGET_RECALL
    # Recompute: the same sample of rows, the stored index, brute force in numpy.
    vectors, *_ = load_all_embeddings(run)
    rows = np.sort(np.random.default_rng(info["recall_seed"]).choice(30_000, info["recall_queries"], replace=False))
    _, found = search(loaded, vectors[rows], 11)
    found = np.stack([f[f != r][:10] for f, r in zip(found, rows)])
    assert recall(found, neighbours_of_rows(vectors, rows, 10)) == pytest.approx(info["recall_at_10"], abs=2e-3)
    result = neighbors(run, 17, k=8)
    assert len(result["neighbors"]) == 8 and 17 not in [h["row"] for h in result["neighbors"]]


def test_a_small_run_keeps_the_exact_index(store):
    run = embedded_run(store)
    assert index_run(run)["kind"] == "IndexFlatIP"
    recorded = json.loads(run.index_path.with_name("params.json").read_text())
    assert "nprobe" not in recorded and "recall_at_10" not in recorded


class FakeGpuFaiss:
    """Stands in for faiss-gpu's three entry points on a CPU build: the index stays on the CPU,
    and the calls are recorded."""

    def __init__(self):
        self.calls = []

    def StandardGpuResources(self):
        self.calls.append("resources")
        return object()

    def index_cpu_to_gpu(self, resources, device, index):
        self.calls.append(("to_gpu", device))
        return index

    def index_gpu_to_cpu(self, index):
        self.calls.append("to_cpu")
        return index

    def get_num_gpus(self):
        return 1


def test_with_gpu_faiss_the_ivf_index_is_built_on_the_gpu_and_stored_from_a_cpu_copy(store, monkeypatch):
    fake = FakeGpuFaiss()
    for name in ("StandardGpuResources", "index_cpu_to_gpu", "index_gpu_to_cpu", "get_num_gpus"):
        monkeypatch.setattr(faiss, name, getattr(fake, name), raising=False)
    run = embedded_run(store, train_size=1_500, test_size=500)
    assert index_run(run, ivf_threshold=1_000)["built_on"] == "cuda"
    assert fake.calls == ["resources", ("to_gpu", 0), "to_cpu"]
    fake.calls.clear()
    assert index_run(run)["built_on"] == "cpu" and fake.calls == []  # an exact index needs no GPU


@pytest.mark.skipif(not index_module.faiss_gpu_available(),
                    reason="needs faiss with GPU support (the `gpu` extra) and a CUDA GPU")
def test_the_gpu_built_ivf_index_matches_brute_force():
    vectors = clustered()
    index = build_index(vectors, ivf_threshold=1_000, use_gpu=True)
    assert isinstance(index, faiss.IndexIVFFlat)  # a CPU index, ready to store
    queries = vectors[::25]
    assert recall(search(index, queries, 10)[1], brute_force(vectors, queries, 10)) >= 0.9
