"""Search over stored embeddings: exact (a matrix product) vs the approximate index (``moclip.search.ann``).

Synthetic embeddings shaped like CLIP's, not uniform noise: unit rows made of a large common component (CLIP image
embeddings share one: unrelated images have a cosine of ~0.4-0.6, not 0), a topic (a few dozen), a video centre (a
few thousand videos) and a window part that is a slow random walk (AR(1)) along the video, so neighbouring windows
are near-duplicates. Queries: half are stored windows perturbed (query by example, cosine ~0.9 to their source), half
text-like points near a video centre that carry a component of their own (CLIP's modality gap): cosine ~0.25-0.35 to
their video's windows and ~0.2 to the rest.

For each size: exact search latency per single query, the index's build time (all cores this process may use), its
latency per single query (median and p95) and recall@10 against exact search, all queries on one thread
(``threadpoolctl`` limits numpy's and faiss's BLAS and OpenMP threads where it is installed; else the BLAS env vars
are set to 1 before numpy loads, builds included), and the cost of a rerun that adds one new shard (1,000 windows)
to the saved index and saves it again.

Usage: .venv/bin/python bench/bench_search.py [--sizes 10000,100000,1000000] [--dim 512] [--queries 200]
       [--out bench/results/search.md] [--build-threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

if importlib.util.find_spec("threadpoolctl") is None:  # no way to limit BLAS threads later: one thread from the start
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu_description, write_table  # noqa: E402
from moclip.search import ann  # noqa: E402

# Squared weights of an image embedding's parts (they sum to 1): common, topic, video, window walk.
W_COMMON, W_TOPIC, W_VIDEO, W_WINDOW = 0.45, 0.15, 0.20, 0.20
RHO = 0.97  # window walk: correlation of neighbouring windows' walk parts
TOPICS = 40


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


class Corpus:
    """Synthetic CLIP-like windows, generated in float32 chunks (10^6 x 512 is 2 GB)."""

    def __init__(self, n: int, dim: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.n, self.dim = n, dim
        self.common = _unit(rng.standard_normal(dim)).astype(np.float32)
        self.text_common = _unit(rng.standard_normal(dim)).astype(np.float32)  # the modality gap
        self.topics = _unit(rng.standard_normal((TOPICS, dim))).astype(np.float32)
        videos = min(5000, max(200, n // 20))
        lengths = rng.lognormal(0.0, 0.8, videos)  # long and short videos
        lengths = np.maximum(1, np.floor(lengths / lengths.sum() * n)).astype(np.int64)
        lengths[np.argmax(lengths)] += n - lengths.sum()
        self.lengths = lengths
        self.video_topic = rng.integers(0, TOPICS, videos)
        self.centres = _unit(rng.standard_normal((videos, dim))).astype(np.float32)
        self.video_of = np.repeat(np.arange(videos), lengths)
        self.vectors = np.empty((n, dim), np.float32)
        row = 0
        for v, length in enumerate(lengths):  # the walk, per video; each video's rows are consecutive
            walk = self._walk(rng, int(length))
            base = (np.sqrt(W_COMMON) * self.common + np.sqrt(W_TOPIC) * self.topics[self.video_topic[v]]
                    + np.sqrt(W_VIDEO) * self.centres[v])
            self.vectors[row:row + length] = _unit(base + np.sqrt(W_WINDOW) * walk)
            row += length

    def _walk(self, rng: np.random.Generator, length: int) -> np.ndarray:
        noise = rng.standard_normal((length, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        out = np.empty_like(noise)
        out[0] = noise[0]
        scale = np.float32(np.sqrt(1 - RHO ** 2))
        for t in range(1, length):  # AR(1): unit variance, slow drift
            out[t] = RHO * out[t - 1] + scale * noise[t]
        return out

    def queries(self, count: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``count`` queries, half by example, half text-like; and which half each is in (True: by example)."""
        rng = np.random.default_rng(seed)
        half = count // 2
        rows = rng.integers(0, self.n, half)
        noise = rng.standard_normal((half, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        example = _unit(self.vectors[rows] + 0.45 * noise)  # cosine ~0.9 to the stored window
        vids = self.video_of[rng.integers(0, self.n, count - half)]  # videos weighted by their length
        noise = rng.standard_normal((count - half, self.dim), dtype=np.float32) / np.sqrt(self.dim)
        text = _unit(0.84 * self.text_common + np.sqrt(0.072) * self.common + 0.1 * self.topics[self.video_topic[vids]]
                     + 0.17 * self.centres[vids] + 0.4 * noise)
        return np.concatenate([example, text]).astype(np.float32), np.arange(count) < half


def threads(n: int):
    """At most ``n`` BLAS/OpenMP threads (numpy's and faiss's) inside the block, where threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def blas_description() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS threads limited by OMP/OPENBLAS/MKL_NUM_THREADS=1"
    return ", ".join(f"{i['internal_api']} {i.get('version', '')} ({Path(i['filepath']).parent.name})"
                     for i in threadpool_info() if i.get("user_api") == "blas")


def recall_at(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per query: the share of the exact top-k found by the index."""
    return np.array([len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth)])


def measure(n: int, dim: int, queries: int, build_threads: int, folder: Path) -> dict:
    t0 = time.perf_counter()
    corpus = Corpus(n, dim)
    gen_s = time.perf_counter() - t0
    q, by_example = corpus.queries(queries)
    truth, _ = ann.exact_search(corpus.vectors, q, 10)  # batched: the reference
    lat = []
    with threads(1):
        for i in range(len(q)):  # single queries, one thread
            t = time.perf_counter()
            ann.exact_search(corpus.vectors, q[i:i + 1], 10)
            lat.append(time.perf_counter() - t)
    exact_ms = np.array(lat) * 1e3
    # cosines, for the record: query to its nearest windows, and unrelated windows to each other
    top1 = np.einsum("qd,qd->q", q, corpus.vectors[truth[:, 0]])
    pairs = np.random.default_rng(2).integers(0, n, (2000, 2))
    unrelated = np.einsum("pd,pd->p", corpus.vectors[pairs[:, 0]], corpus.vectors[pairs[:, 1]])
    unrelated = unrelated[corpus.video_of[pairs[:, 0]] != corpus.video_of[pairs[:, 1]]]

    index_dir = folder / f"index-{n}"
    index = ann.AnnIndex.open(index_dir, dim)
    index.threads = build_threads
    keys = np.arange(n, dtype=np.uint64)
    t = time.perf_counter()
    with threads(build_threads):
        index.add(keys, corpus.vectors)  # one build; incremental adds are timed apart
    build_s = time.perf_counter() - t
    t = time.perf_counter()
    index.save()
    save_s = time.perf_counter() - t
    size_mb = sum(p.stat().st_size for p in index_dir.iterdir()) / 1e6
    index = ann.AnnIndex.open(index_dir, dim)  # as the search command finds it
    assert len(index) == n
    index.threads = 1
    found, lat = [], []
    with threads(1):
        for i in range(len(q)):
            t = time.perf_counter()
            k, _ = index.search(q[i:i + 1], 10)
            lat.append(time.perf_counter() - t)
            found.append(k[0])
    ann_ms = np.array(lat) * 1e3
    rec = recall_at(np.array(found).astype(np.int64), truth)
    extra = Corpus(1000, dim, seed=3).vectors  # a rerun: one new shard added, the index saved again
    t = time.perf_counter()
    with threads(build_threads):
        index = ann.AnnIndex.open(index_dir, dim)
        index.add(np.arange(n, n + len(extra), dtype=np.uint64), extra)
        index.save()
    rerun_s = time.perf_counter() - t
    return {"n": n, "gen_s": gen_s, "exact_med": np.median(exact_ms), "exact_p95": np.percentile(exact_ms, 95),
            "build_s": build_s, "save_s": save_s, "rerun_s": rerun_s, "size_mb": size_mb, "ann_med": np.median(ann_ms),
            "ann_p95": np.percentile(ann_ms, 95), "recall": rec.mean(), "recall_example": rec[by_example].mean(),
            "recall_text": rec[~by_example].mean(), "recall_min": rec.min(),
            "cos_example": np.median(top1[by_example]), "cos_text": np.median(top1[~by_example]),
            "cos_unrelated": np.median(unrelated)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "search.md"))
    p.add_argument("--build-threads", type=int, default=ann.usable_threads(), help="threads to build the index")
    args = p.parse_args()
    blas = blas_description()
    rows = []
    with tempfile.TemporaryDirectory(prefix="moclip-bench-search-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            r = measure(n, args.dim, args.queries, args.build_threads, Path(tmp))
            rows.append(r)
            print({k: round(float(v), 4) for k, v in r.items()}, flush=True)
    info = ann.library_info()
    lines = [
        "## Search: exact vs approximate",
        "",
        f"CPU: {cpu_description()}. BLAS: {blas}. Queries: {args.queries} single queries per size, one thread, "
        f"half by example, half text-like; {args.dim}-d float32 unit rows. Index: {info}; built with "
        f"{args.build_threads} thread(s), all rows in one `add`. Exact search is used up to "
        f"`EXACT_MAX` = {ann.EXACT_MAX:,} rows.",
        "",
        "| windows | exact, ms/query (median / p95) | index build, s | rerun: +1,000 windows, s | index on disk, MB "
        "| index, ms/query (median / p95) | recall@10 (all / by example / text-like / worst query) "
        "| cosine: by-example top-1, text-like top-1, unrelated windows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['exact_med']:.2f} / {r['exact_p95']:.2f} | {r['build_s']:.1f} | {r['rerun_s']:.2f} | "
            f"{r['size_mb']:.0f} | "
            f"{r['ann_med']:.3f} / {r['ann_p95']:.3f} | {r['recall']:.3f} / {r['recall_example']:.3f} / "
            f"{r['recall_text']:.3f} / {r['recall_min']:.1f} | {r['cos_example']:.2f}, {r['cos_text']:.2f}, "
            f"{r['cos_unrelated']:.2f} |")
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
