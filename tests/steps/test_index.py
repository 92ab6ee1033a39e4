"""ssl_core.steps.index: exact search on small sets, IVF above the threshold (checked against brute force
on a small set with the threshold lowered), the GPU build's plumbing, and the stored record."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest

from ssl_core.steps import index as index_module
from ssl_core.steps.embed import load_all_embeddings
from ssl_core.steps.index import build_index, index_run, ivf_sizes, load_index, neighbors, search
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


def test_above_the_threshold_an_ivf_index_finds_nearly_all_true_neighbours():
    vectors = clustered()
    index = build_index(vectors, ivf_threshold=1_000)
    ivf = faiss.extract_index_ivf(index)
    assert isinstance(index, faiss.IndexIVFFlat) and index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert (ivf.nlist, ivf.nprobe) == ivf_sizes(5_000) and ivf.nprobe < ivf.nlist  # approximate
    queries = vectors[::25]
    distances, rows = search(index, queries, 10)
    assert recall(rows, brute_force(vectors, queries, 10)) >= 0.9
    assert np.all(np.diff(distances, axis=1) >= -1e-6)  # nearest first, as cosine distances


def test_ivf_sizes_follow_the_square_root_and_stay_trainable():
    assert ivf_sizes(1_000_000) == (4_000, 125)
    nlist, nprobe = ivf_sizes(5_000)
    assert nlist == 5_000 // 39 and nprobe == 16  # k-means needs ~39 points per list
    assert ivf_sizes(10) == (1, 1)


def test_index_run_stores_the_ivf_index_with_its_nprobe_and_a_record(store):
    run = embedded_run(store, train_size=1_500, test_size=500)
    info = index_run(run, ivf_threshold=1_000)
    nlist, nprobe = ivf_sizes(2_000)
    assert {k: info[k] for k in ("kind", "num_vectors", "nlist", "nprobe", "built_on")} == {
        "kind": "IndexIVFFlat", "num_vectors": 2_000, "nlist": nlist, "nprobe": nprobe, "built_on": "cpu"}
    assert json.loads(run.index_path.with_name("params.json").read_text()) == info
    loaded = load_index(run)
    assert faiss.extract_index_ivf(loaded).nprobe == nprobe  # read back from faiss.index itself
    result = neighbors(run, 17, k=8)
    assert len(result["neighbors"]) == 8 and 17 not in [h["row"] for h in result["neighbors"]]
    vectors, *_ = load_all_embeddings(run)
    assert recall([[h["row"] for h in result["neighbors"]]], brute_force(vectors, vectors[[17]], 9)[:, 1:]) >= 0.75


def test_a_small_run_keeps_the_exact_index(store):
    run = embedded_run(store)
    assert index_run(run)["kind"] == "IndexFlatIP"
    assert "nprobe" not in json.loads(run.index_path.with_name("params.json").read_text())


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
