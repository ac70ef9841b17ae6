"""Nearest neighbours over stored unit embeddings: exact (a matrix product) up to ``EXACT_MAX`` rows, above it an
approximate index (faiss IVF-Flat) kept in a folder beside the dataset.

Why faiss IVF-Flat (measured in ``bench/bench_search.py``, docs/BENCHMARKS.md): on CLIP-like windows (near-duplicate
neighbouring windows, text queries far from every image embedding) it reached recall@10 >= 0.95 at ~1.4 ms per query
at 10^5 windows and 20 ms at 10^6 (one core), where HNSW graphs (faiss, usearch, hnswlib) needed a far larger search
depth or never got there for text-like queries; its lists are scanned exactly, so scores are true cosines; it adds
and removes ids natively (no tombstones); and faiss-cpu ships wheels for every platform moclip runs on.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

import numpy as np

from moclip.runplan import usable_cores

EXACT_MAX = 100_000  # up to here one query is a 1-thread matrix product of <= ~16 ms on the bench's CPU (goal: 100)
FORMAT = 1  # of the index folder; bumped when its layout changes
LIBRARY = "faiss-ivfflat"
META, DATA = "index.json", "index.faiss"
PROBE_SHARE = 16  # lists probed: 1 in PROBE_SHARE (at least MIN_PROBE): recall@10 >= 0.95 on the bench's data
MIN_PROBE = 16
TRAIN_PER_LIST = 40  # k-means sample per list
KMEANS_ITERATIONS = 10
LIST_GROWTH = 2  # lists are re-trained from the index's vectors once the rows call for this many times as many


def usable_threads() -> int:
    """The threads this process may use: its CPU affinity, capped by ``OMP_NUM_THREADS`` where that is set (worker
    processes set it to share the cores)."""
    cores = usable_cores()
    try:
        return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS", cores))))
    except ValueError:
        return cores


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 chunk: int = 32_768) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` [N, D] (unit rows, float32 or float16) nearest to each of ``queries`` [Q, D]
    (unit rows): (row indices [Q, k'], cosine scores [Q, k'] float32), best first, k' = min(k, N). Rows are scored
    ``chunk`` at a time, so memory stays bounded whatever N; equal scores go to the lower row index, so results are
    deterministic."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    n, q = len(vectors), len(queries)
    k = min(int(k), n)
    best_i = np.zeros((q, 0), np.int64)
    best_s = np.zeros((q, 0), np.float32)
    if k <= 0 or q == 0:
        return best_i, best_s
    for lo in range(0, n, chunk):
        block = np.asarray(vectors[lo:lo + chunk], dtype=np.float32)  # float16 rows: one chunk converted at a time
        scores = queries @ block.T  # [Q, c]
        idx = _top_k_lowest_index(scores, min(k, scores.shape[1])) + lo
        all_i = np.concatenate([best_i, idx], axis=1)
        all_s = np.concatenate([best_s, np.take_along_axis(scores, idx - lo, axis=1)], axis=1)
        order = np.lexsort((all_i, -all_s), axis=-1)[:, :k]  # score descending, then row index
        best_i, best_s = np.take_along_axis(all_i, order, axis=1), np.take_along_axis(all_s, order, axis=1)
    return best_i, best_s


def _top_k_lowest_index(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of ``scores``, the columns of its ``k`` highest, unordered; of equal scores at the cut, the lowest
    columns (argpartition alone picks any of them)."""
    if k >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]  # the k-th highest score of each row
    keep = scores > kth
    ties = scores == kth
    need = k - keep.sum(axis=1, keepdims=True)
    keep |= ties & (np.cumsum(ties, axis=1) <= need)  # the first `need` tied columns
    return np.nonzero(keep)[1].reshape(len(scores), k)


def _lists_for(n: int) -> int:
    """IVF lists for ``n`` rows: the power of two nearest 4 sqrt(n), with enough rows per list to train k-means."""
    if n < 2 * TRAIN_PER_LIST:
        return 1
    lists = 2 ** round(math.log2(4 * math.sqrt(n)))
    return int(max(1, min(lists, n // TRAIN_PER_LIST, 65_536)))


class AnnIndex:
    """An approximate index of (key: uint64, unit vector) pairs saved in one folder; keys can be added and removed
    (incremental: only new shards added, removed shards' keys removed).

    A faiss IVF-Flat index over inner products (= cosine for unit rows): k-means lists, trained on the first rows
    added and re-trained from the index's own vectors once its rows call for ``LIST_GROWTH`` times as many lists
    (about 4x the rows: re-training stays a fraction of the adds); a query scans ``nprobe`` lists exactly. faiss
    removes ids natively, so there are no tombstones. Keys must be below 2**63 (faiss ids are int64). ``threads``
    (default: ``usable_threads()``) is what faiss may use; one query runs on one thread whatever it is. One process
    updates a folder at a time (no locking here)."""

    def __init__(self, folder: Path, dim: int, index=None):
        self.folder, self.dim = folder, dim
        self.threads = usable_threads()
        self.nprobe: int | None = None  # None: nlist // PROBE_SHARE, at least MIN_PROBE
        self._index = index

    @classmethod
    def open(cls, folder: str | Path, dim: int) -> AnnIndex:
        """The index saved in ``folder``, or an empty one if there is none yet. An index of another dimension, library
        or format is refused (ValueError naming the folder): delete the folder to rebuild it."""
        import faiss

        folder = Path(folder)
        meta_path = folder / META
        if not meta_path.exists():
            return cls(folder, dim)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{folder}: unreadable search index metadata ({e}); delete the folder to rebuild "
                             "it") from e
        found = (meta.get("library"), meta.get("format"), meta.get("dim"))
        if found != (LIBRARY, FORMAT, dim):
            raise ValueError(f"{folder}: the search index there is library {found[0]!r}, format {found[1]!r}, "
                             f"dim {found[2]!r}; wanted {LIBRARY!r}, format {FORMAT}, dim {dim}: delete the folder "
                             "to rebuild it")
        if not (folder / DATA).exists():  # saved while empty, or a first save stopped between its two files
            return cls(folder, dim)
        index = faiss.read_index(str(folder / DATA))
        if not isinstance(index, faiss.IndexIVFFlat) or index.d != dim:
            raise ValueError(f"{folder}: {DATA} is not a {dim}-d IVF-Flat index; delete the folder to rebuild it")
        return cls(folder, dim, index)

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add unit ``vectors`` [n, dim] under ``keys`` [n]; a key already present gets the new vector."""
        import faiss

        ids = _ids(keys)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {vectors.shape[1]}, the index {self.dim}")
        if not len(ids):
            return
        faiss.omp_set_num_threads(self.threads)
        if self._index is not None:
            self.remove(ids)
            n = len(self) + len(ids)
            if _lists_for(n) >= LIST_GROWTH * self._index.nlist:  # 2x the lists: ~4x the rows
                old_ids, old_vectors = self._contents()
                ids, vectors = np.concatenate([old_ids, ids]), np.concatenate([old_vectors, vectors])
                self._index = None
        if self._index is None:
            self._index = self._trained(vectors)
        centroids = self._centroids()
        for lo in range(0, len(ids), 65_536):  # lists assigned by numpy's BLAS (see _trained)
            x, i = vectors[lo:lo + 65_536], ids[lo:lo + 65_536]
            lists = _nearest(x, centroids)
            self._index.add_core(len(i), faiss.swig_ptr(x), faiss.swig_ptr(i), faiss.swig_ptr(lists))

    def remove(self, keys: np.ndarray) -> None:
        """Remove ``keys`` (those not present are ignored)."""
        import faiss

        ids = _ids(keys)
        if self._index is not None and len(ids) and self._index.ntotal:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` keys nearest to each of ``queries`` [Q, dim] (unit rows): (keys [Q, k'] uint64, cosine scores
        [Q, k'] float32), best first, k' = min(k, len(self))."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), len(self))
        if k <= 0:
            return np.zeros((len(queries), 0), np.uint64), np.zeros((len(queries), 0), np.float32)
        faiss.omp_set_num_threads(self.threads)
        nlist = self._index.nlist
        self._index.nprobe = min(nlist, self.nprobe or max(MIN_PROBE, nlist // PROBE_SHARE))
        scores, ids = self._index.search(queries, k)
        short = (ids < 0).any(axis=1)
        if short.any():  # the probed lists held fewer than k rows: scan them all for those queries
            self._index.nprobe = nlist
            scores[short], ids[short] = self._index.search(queries[short], k)
        return ids.view(np.uint64), scores

    def keys(self) -> np.ndarray:
        """Every key in the index (uint64, in no particular order)."""
        if self._index is None:
            return np.zeros(0, np.uint64)
        invlists = self._index.invlists
        parts = [_from_ptr(invlists.get_ids(i), invlists.list_size(i), np.int64) for i in range(self._index.nlist)]
        return np.concatenate(parts).view(np.uint64) if parts else np.zeros(0, np.uint64)

    def save(self) -> None:
        """Write the index to its folder atomically: each file goes to a temporary name there and is ``os.replace``d
        over the old one, so a save that stops part way leaves the previous index readable."""
        import faiss

        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {"library": LIBRARY, "format": FORMAT, "dim": self.dim, "faiss": faiss.__version__}
        tmp = f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        meta_tmp, data_tmp = self.folder / (META + tmp), self.folder / (DATA + tmp)
        try:
            if self._index is not None:
                faiss.write_index(self._index, str(data_tmp))
            meta_tmp.write_text(json.dumps(meta))
            # metadata first: it says only what the folder holds (library, format, dim), the same before and after
            os.replace(meta_tmp, self.folder / META)
            if self._index is not None:
                os.replace(data_tmp, self.folder / DATA)
            else:
                (self.folder / DATA).unlink(missing_ok=True)
        finally:
            meta_tmp.unlink(missing_ok=True)
            data_tmp.unlink(missing_ok=True)

    def _trained(self, vectors: np.ndarray):
        """A new, empty IVF-Flat index whose lists are spherical k-means of (a sample of) ``vectors``. k-means and list
        assignment run on numpy's BLAS: the OpenBLAS that faiss-cpu 1.15 bundles (0.3.15) does not know recent Xeons
        and falls back to a generic kernel, 4-6x slower (measured on the bench's CPU)."""
        import faiss

        lists = _lists_for(len(vectors))
        rng = np.random.default_rng(0)
        sample = vectors
        if len(vectors) > lists * TRAIN_PER_LIST:
            sample = vectors[np.sort(rng.choice(len(vectors), lists * TRAIN_PER_LIST, replace=False))]
        centroids = sample[rng.choice(len(sample), lists, replace=False)].copy()
        for _ in range(KMEANS_ITERATIONS):
            assign = _nearest(sample, centroids)
            counts = np.bincount(assign, minlength=lists)
            order = np.argsort(assign, kind="stable")
            sums = np.zeros_like(centroids)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            empty = counts == 0
            sums[~empty] = np.add.reduceat(sample[order], starts[~empty], axis=0)
            sums[empty] = sample[rng.choice(len(sample), int(empty.sum()))]  # reseeded on a random row
            centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        quantizer = faiss.IndexFlatIP(self.dim)
        quantizer.add(centroids)
        index = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.own_fields = True
        quantizer.this.disown()  # the index frees it
        return index

    def _centroids(self) -> np.ndarray:
        import faiss

        quantizer = faiss.downcast_index(self._index.quantizer)
        return faiss.rev_swig_ptr(quantizer.get_xb(), self._index.nlist * self.dim).reshape(self._index.nlist, self.dim)

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector) in the index, read from its lists (IVF-Flat keeps the vectors as they were added)."""
        invlists, ids, vectors = self._index.invlists, [], []
        for i in range(self._index.nlist):
            n = invlists.list_size(i)
            ids.append(_from_ptr(invlists.get_ids(i), n, np.int64))
            vectors.append(_from_ptr(invlists.get_codes(i), n * self.dim * 4, np.uint8).view(np.float32))
        return np.concatenate(ids), np.concatenate(vectors).reshape(-1, self.dim)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The list (int64) of each row of ``x``: its highest-inner-product centroid."""
    return np.argmax(x @ centroids.T, axis=1).astype(np.int64)


def _from_ptr(ptr, n: int, dtype) -> np.ndarray:
    """A copy of ``n`` items behind a faiss pointer."""
    import faiss

    if n == 0:
        return np.zeros(0, dtype)
    return np.array(faiss.rev_swig_ptr(ptr, n), copy=True).view(dtype)


def _ids(keys: np.ndarray) -> np.ndarray:
    keys = np.asarray(keys).reshape(-1)
    if keys.dtype.kind == "i" and len(keys) and keys.min() < 0:
        raise ValueError("keys must be >= 0")
    keys = keys.astype(np.uint64)
    if len(keys) and keys.max() >= np.uint64(2**63):
        raise ValueError("keys must be below 2**63 (faiss ids are int64)")
    return np.ascontiguousarray(keys.view(np.int64))


def library_info() -> str:
    """The library, its version and the index's parameters, for benchmark reports."""
    import faiss

    return (f"faiss-cpu {faiss.__version__} IndexIVFFlat, inner product; lists: power of two nearest 4 sqrt(rows) "
            f"(spherical k-means, {KMEANS_ITERATIONS} iterations on {TRAIN_PER_LIST} rows per list, re-trained when "
            "that doubles); probed: 1 in "
            f"{PROBE_SHARE}, at least {MIN_PROBE}")
