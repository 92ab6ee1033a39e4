"""ssl_core.data.user_embeddings: an import's vectors read a chunk of rows at a time, so that a large
.npy or parquet never sits in memory whole; checked and stored as float16 chunk by chunk."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pandas as pd
import pytest

from ssl_core.data import user_embeddings
from ssl_core.data.user_embeddings import Embeddings, read_embeddings
from ssl_core.data.user_files import InvalidImport
from ssl_core.store import files
from ssl_core.workflows.importer import write_rows
from tiny_runs import tiny_config


def chunk_lengths(embeddings: Embeddings) -> list[int]:
    return [len(chunk) for chunk in embeddings.chunks()]


def test_a_large_npy_is_checked_and_stored_as_float16_in_bounded_memory(store, tmp_path, monkeypatch):
    """200,000 x 64 float32 (51 MB): reading, checking and writing the run's float16 files hold a
    few chunks at a time, not a float32 copy (numpy's allocations, traced)."""
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 1 << 20)  # 4,096 rows of 64 float32
    n, dim = 200_000, 64
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    np.save(tmp_path / "vectors.npy", vectors)
    is_train = np.random.default_rng(1).random(n) < 0.8  # a split scatters the rows over the file
    rows = np.concatenate([np.flatnonzero(is_train), np.flatnonzero(~is_train)])
    ids = [str(i) for i in rows]
    run = store.create(tiny_config())

    tracemalloc.start()
    try:
        embeddings, none, _ = read_embeddings(tmp_path / "vectors.npy")
        check = embeddings.check()
        write_rows(run, embeddings.take(rows), ids, np.zeros(n, dtype=np.int64), [], int(is_train.sum()),
                   np.zeros((0, 8, 8, 3), dtype=np.uint8), {}, {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert none is None and embeddings.shape == (n, dim) and check.finite.all() and not check.zero.any()
    assert chunk_lengths(embeddings) == [4_096] * 48 + [n - 48 * 4_096]
    assert peak < vectors.nbytes / 4, f"{peak / 2**20:.1f} MiB traced for a {vectors.nbytes / 2**20:.0f} MiB file"
    train = np.load(run.embeddings_dir / files.vectors("train"))
    test = np.load(run.embeddings_dir / files.vectors("test"))
    assert train.dtype == test.dtype == np.float16
    np.testing.assert_array_equal(train, vectors[is_train].astype(np.float16))
    np.testing.assert_array_equal(test, vectors[~is_train].astype(np.float16))


def test_a_selection_reads_its_rows_across_chunk_boundaries_in_the_files_order(tmp_path, monkeypatch):
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 7 * 4 * 3)  # 7 rows of 3 numbers
    vectors = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    np.save(tmp_path / "v.npy", vectors)
    embeddings, _, _ = read_embeddings(tmp_path / "v.npy")
    assert chunk_lengths(embeddings) == [7] * 14 + [2]
    rows = np.array([0, 6, 7, 8, 50, 97, 98, 99])
    np.testing.assert_array_equal(embeddings.take(rows).to_array(), vectors[rows])
    np.testing.assert_array_equal(embeddings.take(rows)[2:5].to_array(), vectors[[7, 8, 50]])
    assert embeddings.take(np.array([], dtype=np.int64)).to_array().shape == (0, 3)
    with pytest.raises(ValueError, match="must ascend"):
        embeddings.take(np.array([5, 3])).to_array()


@pytest.mark.parametrize("layout", ["big-endian float64", "Fortran order", "int16"])
def test_every_numeric_npy_layout_reads_as_float32(tmp_path, monkeypatch, layout):
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 4 * 5 * 4)  # 4 rows of 5 numbers
    vectors = np.random.default_rng(0).normal(size=(30, 5)) * 100
    stored = {"big-endian float64": vectors.astype(">f8"), "Fortran order": np.asfortranarray(vectors),
              "int16": vectors.astype(np.int16)}[layout]
    np.save(tmp_path / "v.npy", stored)
    embeddings, _, _ = read_embeddings(tmp_path / "v.npy")
    np.testing.assert_array_equal(embeddings.to_array(), stored.astype(np.float32))
    assert all(chunk.dtype == np.float32 for chunk in embeddings.chunks())


def test_a_parquet_list_column_is_read_in_batches_with_its_ids_and_metadata(tmp_path, monkeypatch):
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 6 * 4 * 4)  # 6 rows of 4 numbers
    vectors = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    pd.DataFrame({"filename": [f"{i}.png" for i in range(50)], "vector": list(vectors),
                  "camera": ["a", "b"] * 25}).to_parquet(tmp_path / "v.parquet", row_group_size=16)
    embeddings, ids, extra = read_embeddings(tmp_path / "v.parquet")
    assert ids == [f"{i}.png" for i in range(50)] and list(extra.columns) == ["camera"]
    assert max(chunk_lengths(embeddings)) <= 6 and sum(chunk_lengths(embeddings)) == 50
    np.testing.assert_array_equal(embeddings.to_array(), vectors)


def test_nan_and_infinite_rows_are_found_in_every_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(user_embeddings, "CHUNK_BYTES", 8 * 4 * 4)
    vectors = np.ones((40, 4), dtype=np.float32)
    vectors[[3, 8, 39], 1] = [np.nan, np.inf, -np.inf]
    vectors[20] = 0
    np.save(tmp_path / "v.npy", vectors)
    check = read_embeddings(tmp_path / "v.npy")[0].check()
    assert list(np.flatnonzero(~check.finite)) == [3, 8, 39] and list(np.flatnonzero(check.zero)) == [20]


def test_wrong_shapes_are_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones(12, dtype=np.float32))
    with pytest.raises(InvalidImport, match=r"flat.npy has shape \(12,\); embeddings must be \(N, D\)"):
        read_embeddings(tmp_path / "flat.npy")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    with pytest.raises(InvalidImport, match=r"text.npy holds <U1, not real numbers"):
        read_embeddings(tmp_path / "text.npy")
    np.save(tmp_path / "short.npy", np.ones((100, 4), dtype=np.float32))
    with open(tmp_path / "short.npy", "r+b") as f:
        f.truncate(400)
    with pytest.raises(InvalidImport, match="short.npy is not a plain numeric .npy array: it holds an incomplete"):
        read_embeddings(tmp_path / "short.npy")
    pd.DataFrame({"vector": [[1.0, 2.0], None, [1.0, 2.0]]}).to_parquet(tmp_path / "gap.parquet")
    with pytest.raises(InvalidImport, match=r"gap.parquet: vectors must all have the same length; most have 2 "
                                            r"numbers, but 1 differ: row 1 \(0\)"):
        read_embeddings(tmp_path / "gap.parquet")
