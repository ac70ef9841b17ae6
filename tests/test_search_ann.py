"""Vector search layer: exact search is right (ties included), the approximate index finds what exact search finds,
and its folder survives removals, reopening and interrupted saves."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.search import ann


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(n: int, dim: int = 64, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit rows around a few centres sharing a common component, as CLIP embeddings do."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(dim)
    centres = rng.standard_normal((clusters, dim))
    rows = 0.8 * common + centres[rng.integers(0, clusters, n)] \
        + 0.5 * rng.standard_normal((n, dim))
    return _unit(rows)


def _brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries.astype(np.float64) @ vectors.astype(np.float64).T
    return np.array([sorted(range(len(vectors)), key=lambda i: (-s[i], i))[:k] for s in scores], dtype=np.int64)


@pytest.mark.parametrize(("n", "k", "chunk"), [(300, 10, 64), (300, 10, 1000), (7, 10, 3), (50, 50, 16), (1, 3, 4)])
def test_exact_search_matches_brute_force(n, k, chunk):
    rng = np.random.default_rng(n)
    vectors, queries = _unit(rng.standard_normal((n, 16))), _unit(rng.standard_normal((5, 16)))
    idx, scores = ann.exact_search(vectors, queries, k, chunk=chunk)
    assert idx.shape == scores.shape == (5, min(k, n))
    np.testing.assert_array_equal(idx, _brute(vectors, queries, k))
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, idx, axis=1), rtol=1e-5)
    assert scores.dtype == np.float32 and np.all(np.diff(scores, axis=1) <= 0)


def test_exact_search_breaks_ties_by_row_index_across_chunks():
    rng = np.random.default_rng(1)
    base = _unit(rng.standard_normal((4, 8)))
    vectors = np.concatenate([base] * 25)  # every row has 24 exact duplicates, spread over every chunk
    queries = base[:2]
    for chunk in (3, 7, 100):
        idx, _ = ann.exact_search(vectors, queries, 10, chunk=chunk)
        np.testing.assert_array_equal(idx, _brute(vectors, queries, 10))
        assert list(idx[0]) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]


def test_exact_search_takes_float16_rows():
    vectors = _clustered(500, 32)
    queries = vectors[:3]
    idx16, s16 = ann.exact_search(vectors.astype(np.float16), queries, 5, chunk=128)
    assert s16.dtype == np.float32 and list(idx16[:, 0]) == [0, 1, 2]


def test_index_finds_what_exact_search_finds(tmp_path):
    vectors = _clustered(4000)
    index = ann.AnnIndex.open(tmp_path / "ix", 64)
    assert len(index) == 0
    keys = np.arange(1000, 5000, dtype=np.uint64)
    for lo in range(0, 4000, 1000):  # shard by shard, as the dataset is indexed
        index.add(keys[lo:lo + 1000], vectors[lo:lo + 1000])
    assert len(index) == 4000
    queries = _unit(vectors[::40] + 0.05 * np.random.default_rng(2).standard_normal((100, 64)))
    truth, truth_scores = ann.exact_search(vectors, queries, 10)
    found, scores = index.search(queries, 10)
    assert found.dtype == np.uint64 and scores.dtype == np.float32 and found.shape == (100, 10)
    recall = np.mean([len(np.intersect1d(f.astype(np.int64) - 1000, t)) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores[:, 0], truth_scores[:, 0], atol=1e-4)  # exact scores of what it found
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert sorted(index.keys().tolist()) == keys.tolist()


def test_index_grows_its_lists_and_keeps_every_key(tmp_path):
    vectors = _clustered(6000, seed=3)
    index = ann.AnnIndex.open(tmp_path / "ix", 64)
    index.add(np.arange(200), vectors[:200])
    small = index._index.nlist
    index.add(np.arange(200, 6000), vectors[200:])
    assert index._index.nlist > small and len(index) == 6000
    found, _ = index.search(vectors[[10, 5000]], 1)
    assert found[:, 0].tolist() == [10, 5000]


def test_removed_keys_disappear_and_readded_keys_are_replaced(tmp_path):
    vectors = _clustered(3000, seed=4)
    index = ann.AnnIndex.open(tmp_path / "ix", 64)
    index.add(np.arange(3000), vectors)
    gone = np.arange(0, 1500)  # half the keys: a removed shard's
    index.remove(gone)
    index.remove(np.array([999_999]))  # absent: ignored
    assert len(index) == 1500
    found, _ = index.search(vectors[:200], 10)
    assert not np.isin(found.astype(np.int64), gone).any()
    index.add(np.array([2000]), vectors[:1])  # key 2000 now holds row 0's vector
    assert len(index) == 1500
    found, scores = index.search(vectors[:1], 1)
    assert found[0, 0] == 2000 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    found, _ = index.search(vectors[2000:2001], 3)
    assert 2000 not in found[0].tolist()


def test_k_above_the_size_and_empty_index(tmp_path):
    index = ann.AnnIndex.open(tmp_path / "ix", 64)
    keys, scores = index.search(_clustered(2), 5)
    assert keys.shape == scores.shape == (2, 0)
    vectors = _clustered(30)
    index.add(np.arange(30), vectors)
    keys, scores = index.search(vectors[:2], 50)
    assert keys.shape == (2, 30) and sorted(keys[0].tolist()) == list(range(30))
    with pytest.raises(ValueError, match="dimension"):
        index.add(np.arange(2), _clustered(2, dim=32))
    with pytest.raises(ValueError, match="2\\*\\*63"):
        index.add(np.array([2**63], dtype=np.uint64), vectors[:1])


def test_save_then_open_gives_the_same_results(tmp_path):
    vectors = _clustered(3000, seed=5)
    folder = tmp_path / "ix"
    index = ann.AnnIndex.open(folder, 64)
    index.save()  # empty: a folder that says what it is
    assert len(ann.AnnIndex.open(folder, 64)) == 0
    index.add(np.arange(3000), vectors)
    index.remove(np.arange(100))
    index.save()
    before = index.search(vectors[:50], 10)
    again = ann.AnnIndex.open(folder, 64)
    assert len(again) == 2900
    after = again.search(vectors[:50], 10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    again.add(np.arange(3000, 3010), vectors[:10])  # a rerun adds a new shard and saves
    again.save()
    assert len(ann.AnnIndex.open(folder, 64)) == 2910


def test_another_dimension_is_refused_naming_the_folder(tmp_path):
    folder = tmp_path / "my-index"
    index = ann.AnnIndex.open(folder, 64)
    index.add(np.arange(100), _clustered(100))
    index.save()
    with pytest.raises(ValueError, match="my-index.*dim 64.*dim 32"):
        ann.AnnIndex.open(folder, 32)
    (folder / ann.META).write_text('{"library": "usearch", "format": 1, "dim": 64}')
    with pytest.raises(ValueError, match="my-index.*usearch"):
        ann.AnnIndex.open(folder, 64)


def test_an_interrupted_save_leaves_the_previous_index(tmp_path):
    vectors = _clustered(2000, seed=6)
    folder = tmp_path / "ix"
    index = ann.AnnIndex.open(folder, 64)
    index.add(np.arange(2000), vectors)
    index.save()
    # a save that died before its os.replace: half-written temp files beside the index
    (folder / (ann.DATA + ".tmp-123-deadbeef")).write_bytes(b"\x00garbage")
    (folder / (ann.META + ".tmp-123-deadbeef")).write_text("{not json")
    again = ann.AnnIndex.open(folder, 64)
    assert len(again) == 2000
    np.testing.assert_array_equal(again.search(vectors[:5], 3)[0], index.search(vectors[:5], 3)[0])
    again.remove(np.arange(10))
    again.save()
    assert len(ann.AnnIndex.open(folder, 64)) == 1990
