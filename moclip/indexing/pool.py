"""A shard indexed by a pool of decoder processes feeding one CLIP model: the GPU worker's path.

A GPU worker is one process per GPU (``flows.runtime``); decoding in it would leave the GPU idle. Here its videos
are decoded by ``decode_workers`` child processes (``python -m moclip.indexing.decode``, as in the isolated retry),
several at a time, while this process embeds their frames: batches of ``clip_batch_size`` images that span
videos, each forward run in a background thread so decoding, copying and the forward pass overlap. At most
``MAX_BATCHES_IN_FLIGHT`` batches wait for the GPU; past that, reading from the decoders pauses (they block on
their next result), so memory stays bounded however fast they decode.

A decoder that crashes or hangs past the hard limit costs its video only: that video is a ``failed`` row that says
so, the child is started again, and the shard goes on (no isolated retry is needed). The rows, the Parquet file and
the result are the ones ``index_shard`` writes.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait

import numpy as np

from moclip.config import RunConfig
from moclip.dataset.schema import STATUS_OK
from moclip.indexing.isolated import DecoderCrash, DecoderProcess
from moclip.indexing.shard import ShardResult, ShardTarget, video_row, worker_encoder, write_rows
from moclip.video import DecodeError, VideoFeatures

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 2


def decoders_for(run: RunConfig, device_type: str) -> int:
    """Decoder processes a worker of ``device_type`` gets: ``run.decode_workers`` when set; else none on CPU (each
    of the one-per-core workers decodes its own videos) and, with CUDA, this machine's cores less one (the feeding
    process) shared among its visible GPUs."""
    if run.decode_workers is not None:
        return run.decode_workers
    if device_type != "cuda":
        return 0
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, (cores - 1) // max(1, torch.cuda.device_count()))


@dataclass
class Decoded:
    """One video's decode: its features, or the error that is its ``failed`` reason; seconds in the decoder."""

    index: int
    features: VideoFeatures | None
    error: BaseException | None
    seconds: float
    crashed: bool = False


class DecoderPool:
    """``size`` decoder child processes, each decoding one video at a time; children that die are started again."""

    def __init__(self, size: int, rgb_size: Callable[[int, int], tuple[int, int]]) -> None:
        if size < 1:
            raise ValueError(f"a decoder pool needs at least one process, got {size}")
        self.children = [DecoderProcess(rgb_size) for _ in range(size)]
        self.rgb_size = rgb_size

    @property
    def size(self) -> int:
        return len(self.children)

    def decode(self, paths: list[str], job: Callable[[str], tuple], hard_timeout_s: float) -> Iterator[Decoded]:
        """Decode every path, as many at once as there are children; yields each result as it comes (any order).
        ``job(path)`` is the message a child decodes. While the caller holds a result nothing is read, so a slow
        consumer makes the children wait (their finished results are never mistaken for hangs)."""
        pending = deque(enumerate(paths))
        # child -> (index, started, since): ``since`` is when we last let it work (job sent, question answered); an
        # answer that waits unread while the caller holds a result is not the child's time
        busy: dict[DecoderProcess, tuple[int, float, float]] = {}
        self._start_idle(len(paths))
        while pending or busy:
            for child in self.children:
                if child not in busy and pending:
                    i, path = pending.popleft()
                    try:
                        child.send_job(job(path))
                        now = time.monotonic()
                        busy[child] = (i, now, now)
                    except DecoderCrash as exc:
                        yield Decoded(i, None, exc, 0.0, crashed=True)
            if not busy:
                continue
            by_conn = {child.conn: child for child in busy}
            first_deadline = min(since for _, _, since in busy.values()) + hard_timeout_s
            for conn in wait(list(by_conn), timeout=min(max(0.0, first_deadline - time.monotonic()), 1.0)):
                child = by_conn[conn]
                i, started, _ = busy[child]
                try:
                    status, payload = child.next_answer()
                except DecoderCrash as exc:
                    del busy[child]
                    yield Decoded(i, None, exc, time.monotonic() - started, crashed=True)
                    continue
                if status == "size":  # a frame-size question, answered: the child works again from now
                    busy[child] = (i, started, time.monotonic())
                    continue
                del busy[child]
                error = DecodeError(payload) if status == "failed" else None
                yield Decoded(i, None if error else payload, error, time.monotonic() - started)
            now = time.monotonic()
            for child, (i, started, since) in list(busy.items()):
                if now - since > hard_timeout_s and not child.conn.poll(0):  # and no answer waiting to be read
                    del busy[child]
                    yield Decoded(i, None, child.kill_hung(hard_timeout_s), now - started, crashed=True)

    def _start_idle(self, wanted: int) -> None:
        """Launch children that are not running (at most ``wanted``), all at once, then wait for each to be ready."""
        idle = [c for c in self.children if c.proc is None][:wanted]
        for child in idle:
            child.launch()
        for child in idle:
            child.wait_ready()

    def close(self) -> None:
        for child in self.children:
            child.close()


_POOLS: dict[int, DecoderPool] = {}  # one per worker process and size: its children serve every shard


def worker_pool(size: int, rgb_size: Callable[[int, int], tuple[int, int]]) -> DecoderPool:
    """This process's decoder pool of ``size`` children (started on first use, stopped when the process exits)."""
    pool = _POOLS.get(size)
    if pool is None:
        pool = _POOLS[size] = DecoderPool(size, rgb_size)
        if len(_POOLS) == 1:
            atexit.register(close_pools)
    pool.rgb_size = rgb_size
    return pool


def close_pools() -> None:
    while _POOLS:
        _POOLS.popitem()[1].close()


class Embedder:
    """Frames of many videos embedded in shared batches, each forward in a background thread, results in order."""

    def __init__(self, encoder, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        self.frames: list[np.ndarray] = []
        self.owners: list[int] = []
        self.batches: list[tuple[np.ndarray, Future]] = []  # (owners, embeddings)
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="moclip-embed")
        self.busy_s = 0.0

    def add(self, owner: int, frames: list[np.ndarray]) -> None:
        self.frames.extend(frames)
        self.owners.extend([owner] * len(frames))
        while len(self.frames) >= self.batch_size:
            self._submit(self.batch_size)

    def wait_room(self) -> None:
        """Block while ``MAX_BATCHES_IN_FLIGHT`` batches wait for the device (the decoders wait meanwhile)."""
        waiting = [f for _, f in self.batches if not f.done()]
        if len(waiting) >= MAX_BATCHES_IN_FLIGHT:
            waiting[0].result()

    def finish(self) -> dict[int, np.ndarray]:
        """Every owner's embeddings [K, D], in the order its frames were added."""
        if self.frames:
            self._submit(len(self.frames))
        self.thread.shutdown(wait=True)
        owners = np.concatenate([o for o, _ in self.batches]) if self.batches else np.zeros(0, int)
        emb = np.concatenate([f.result() for _, f in self.batches]) if self.batches else None
        return {int(i): emb[owners == i] for i in np.unique(owners)}

    def _submit(self, n: int) -> None:
        frames, self.frames = self.frames[:n], self.frames[n:]
        owners, self.owners = np.asarray(self.owners[:n]), self.owners[n:]
        self.batches.append((owners, self.thread.submit(self._embed, frames)))

    def _embed(self, frames: list[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.encoder.embed(frames, batch_size=len(frames))
        self.busy_s += time.perf_counter() - t0
        return out


def index_shard_pooled(videos: list[dict], shard_name: str, target: ShardTarget, decoders: int) -> ShardResult:
    """``index_shard`` with the shard's videos decoded by ``decoders`` child processes (see the module docstring)."""
    started = time.time()
    t_start = time.perf_counter()
    encoder, load_s = worker_encoder(target)
    settings, run = target.features, target.run
    result = ShardResult(shard=shard_name, started_at=started)
    pool = worker_pool(decoders, encoder.target_size)
    embedder = Embedder(encoder, run.clip_batch_size)
    rows: list[dict | None] = [None] * len(videos)
    decode_s = 0.0

    def job(path: str) -> tuple:
        return (path, settings.mv, settings.clip.frames, run.decode_timeout_s, settings.window)

    try:
        for done in pool.decode([v["path"] for v in videos], job, run.hard_timeout_s):
            decode_s += done.seconds

            def decoded(_path: str, done: Decoded = done) -> VideoFeatures:
                if done.error is not None:
                    raise done.error
                return done.features

            row, frames = video_row(videos[done.index], target.settings_hash, encoder.weights_id, decoded)
            row["elapsed_s"] = done.seconds
            rows[done.index] = row
            if done.crashed:
                result.culprits.append(videos[done.index]["video_id"])
                log.warning("shard %s: the decoder died on %s: %s", shard_name, videos[done.index]["path"],
                            row["error"])
            if row["status"] == STATUS_OK and frames:
                embedder.add(done.index, frames)
                embedder.wait_room()
        t_wait = time.perf_counter()
        embeddings = embedder.finish()
    finally:
        embedder.thread.shutdown(wait=True)
    for i, emb in embeddings.items():
        rows[i].update(clip=emb.ravel(), clip_shape=list(emb.shape))
    result.images_embedded = sum(len(e) for e in embeddings.values())
    result = write_rows(rows, target.store(), result)
    result.seconds.update(decode=decode_s, embed=embedder.busy_s, load_model=load_s,
                          embed_wait=time.perf_counter() - t_wait - result.seconds["write"],
                          wall=time.perf_counter() - t_start)
    return result
