"""A shard indexed by a pool of decoder processes feeding one CLIP model: the GPU worker's path.

A GPU worker is one process per GPU (``flows.cluster``); decoding in it would leave the GPU idle. Here its videos
are decoded by ``decode_workers`` child processes (``python -m moclip.indexing.decode``, as in the isolated retry),
several at a time, while this process embeds their frames in batches of ``clip_batch_size`` images that span
videos. Two embedding threads take turns, so one batch is cropped, stacked and copied while the other runs its
forward. At most ``MAX_BATCHES_IN_FLIGHT`` batches are unfinished; past that, reading from the decoders pauses
(they block on their next answer), so memory stays bounded however fast they decode. A long video's frame grid
(time windows) is never sent whole: its child sends each batch of 64 frames as it decodes them and gets their
embeddings back.

A decoder that crashes or hangs past the hard limit costs its video only: that video is a ``failed`` row that says
so, the child is started again, and the shard goes on (no isolated retry is needed). The rows, the Parquet file and
the result are the ones ``index_shard`` writes.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import wait

import numpy as np

from moclip.dataset.schema import STATUS_OK
from moclip.indexing.child import DecoderCrash, DecoderProcess
from moclip.indexing.common import ShardResult, ShardTarget, video_row, worker_encoder, write_rows
from moclip.video import DecodeError, VideoFeatures

log = logging.getLogger(__name__)

MAX_BATCHES_IN_FLIGHT = 2


@dataclass
class Decoded:
    """One video's decode: its features, or the error that is its ``failed`` reason; seconds in the decoder."""

    index: int
    features: VideoFeatures | None
    error: BaseException | None
    seconds: float
    crashed: bool = False


class DecoderPool:
    """``size`` decoder child processes, each decoding one video at a time; children that die are started again.
    One shard at a time uses it (``lock``)."""

    def __init__(self, size: int, rgb_size: Callable[[int, int], tuple[int, int]],
                 embed: Callable[[list], object] | None = None) -> None:
        if size < 1:
            raise ValueError(f"a decoder pool needs at least one process, got {size}")
        self.children = [DecoderProcess(rgb_size, embed) for _ in range(size)]
        self.lock = threading.Lock()

    def answer_with(self, rgb_size: Callable[[int, int], tuple[int, int]],
                    embed: Callable[[list], object] | None) -> None:
        """The frame size and embeddings the children's questions get from now on (this shard's CLIP model)."""
        for child in self.children:
            child.rgb_size, child.embed = rgb_size, embed

    def decode(self, paths: list[str], job: Callable[[str], tuple], hard_timeout_s: float) -> Iterator[Decoded]:
        """Decode every path, as many at once as there are children; yields each result as it comes (any order).
        ``job(path)`` is the message a child decodes. While the caller holds a result nothing is read, so a slow
        consumer makes the children wait (their finished answers are never mistaken for hangs). Children still
        busy when the caller stops early (an error, a closed generator) are killed: their late answers must not
        reach the next shard."""
        pending = deque(enumerate(paths))
        # child -> (index, started, since): ``since`` is when we last let it work (job sent, question answered); an
        # answer that waits unread while the caller holds a result is not the child's time
        busy: dict[DecoderProcess, tuple[int, float, float]] = {}
        try:
            self._start_idle(len(paths))
            while pending or busy:
                for child in self.children:
                    if child not in busy and pending:
                        i, path = pending.popleft()
                        crash = self._send(child, job(path))
                        if crash is None:
                            now = time.monotonic()
                            busy[child] = (i, now, now)
                        else:
                            yield Decoded(i, None, crash, 0.0, crashed=True)
                if not busy:
                    continue
                by_conn = {child.conn: child for child in busy}
                first_deadline = min(since for _, _, since in busy.values()) + hard_timeout_s
                for conn in wait(list(by_conn), timeout=min(max(0.0, first_deadline - time.monotonic()), 1.0)):
                    child = by_conn[conn]
                    i, started, _ = busy[child]
                    try:
                        msg = child.next_answer()
                    except DecoderCrash as exc:
                        del busy[child]
                        yield Decoded(i, None, exc, time.monotonic() - started, crashed=True)
                        continue
                    if msg[0] == "question":  # answered: the child works again from now
                        busy[child] = (i, started, time.monotonic())
                        continue
                    del busy[child]
                    status, payload, seconds = msg
                    error = DecodeError(payload) if status == "failed" else None
                    yield Decoded(i, None if error else payload, error, seconds)
                now = time.monotonic()
                for child, (i, started, since) in list(busy.items()):
                    if now - since > hard_timeout_s and not child.conn.poll(0):  # and no answer waiting to be read
                        del busy[child]
                        yield Decoded(i, None, child.kill_hung(hard_timeout_s), now - started, crashed=True)
        finally:
            for child in busy:
                child.kill()

    @staticmethod
    def _send(child: DecoderProcess, job: tuple) -> DecoderCrash | None:
        """Hand ``job`` to ``child``; a child found dead on sending is started again and gets it once more (it
        had no video of ours then). The crash, if the second try fails too."""
        try:
            child.send_job(job)
        except DecoderCrash:
            try:
                child.send_job(job)
            except DecoderCrash as exc:
                return exc
        return None

    def _start_idle(self, wanted: int) -> None:
        """Launch children that are not running (at most ``wanted``), all at once, then wait for each to be ready;
        if one cannot start, none of them is left half started."""
        for child in self.children:
            if child.proc is not None and child.proc.poll() is not None:  # died while idle: reap it
                child.close()
        idle = [c for c in self.children if c.proc is None][:wanted]
        try:
            for child in idle:
                child.launch()
            for child in idle:
                child.wait_ready()
        except BaseException:
            for child in idle:
                child.kill()
            raise

    def close(self) -> None:
        for child in self.children:
            child.close()


_POOLS: dict[int, DecoderPool] = {}  # one per worker process and size: its children serve every shard
_POOLS_LOCK = threading.Lock()


def worker_pool(size: int) -> DecoderPool:
    """This process's decoder pool of ``size`` children (started on first use, stopped when the process exits or
    dies: the children die with it, ``die_with_parent``)."""
    with _POOLS_LOCK:
        pool = _POOLS.get(size)
        if pool is None:
            pool = _POOLS[size] = DecoderPool(size, lambda w, h: (w, h))
            if len(_POOLS) == 1:
                atexit.register(close_pools)
        return pool


def close_pools() -> None:
    with _POOLS_LOCK:
        while _POOLS:
            _POOLS.popitem()[1].close()


class Embedder:
    """Frames of many videos embedded in shared batches, in order. On CUDA two threads: while one batch runs its
    forward, the next one is cropped, stacked and copied (one thread on the CPU). ``busy_s``: the time at
    least one batch was being embedded."""

    def __init__(self, encoder, batch_size: int) -> None:
        self.encoder, self.batch_size = encoder, batch_size
        self.frames: list[np.ndarray] = []
        self.owners: list[int] = []
        self.batches: list[tuple[np.ndarray, Future]] = []  # (owners, embeddings)
        # two threads on CUDA, where the forward releases the GIL and kernels queue on one stream; one on the CPU,
        # where two concurrent forwards' OpenMP pools fought over the cores (a CI run stalled for an hour)
        self.threads = ThreadPoolExecutor(2 if encoder.device.type == "cuda" else 1, thread_name_prefix="moclip-embed")
        self.spans: list[tuple[float, float]] = []

    def add(self, owner: int, frames: list[np.ndarray]) -> None:
        """Queue one video's frames; full batches start at once, never more than ``MAX_BATCHES_IN_FLIGHT``
        unfinished (this blocks meanwhile, and the decoders wait)."""
        self.frames.extend(frames)
        self.owners.extend([owner] * len(frames))
        while len(self.frames) >= self.batch_size:
            self._wait_room()
            self._submit(self.batch_size)

    def finish(self) -> dict[int, np.ndarray]:
        """Every owner's embeddings [K, D], in the order its frames were added."""
        if self.frames:
            self._submit(len(self.frames))
        self.threads.shutdown(wait=True)
        owners = np.concatenate([o for o, _ in self.batches]) if self.batches else np.zeros(0, int)
        emb = np.concatenate([f.result() for _, f in self.batches]) if self.batches else None
        return {int(i): emb[owners == i] for i in np.unique(owners)}

    @property
    def busy_s(self) -> float:
        """Seconds during which at least one batch was being embedded (the union of the batches' spans)."""
        total, end = 0.0, float("-inf")
        for a, b in sorted(self.spans):
            if b > end:
                total += b - max(a, end)
                end = b
        return total

    def _wait_room(self) -> None:
        while True:
            waiting = [f for _, f in self.batches if not f.done()]
            if len(waiting) < MAX_BATCHES_IN_FLIGHT:
                return
            waiting[0].result()  # an embedding error is raised here, failing the shard

    def _submit(self, n: int) -> None:
        frames, self.frames = self.frames[:n], self.frames[n:]
        owners, self.owners = np.asarray(self.owners[:n]), self.owners[n:]
        self.batches.append((owners, self.threads.submit(self._embed, frames)))

    def _embed(self, frames: list[np.ndarray]) -> np.ndarray:
        t0 = time.perf_counter()
        out = self.encoder.embed(frames, batch_size=len(frames))
        self.spans.append((t0, time.perf_counter()))
        return out


def index_shard_pooled(videos: list[dict], shard_name: str, target: ShardTarget, decoders: int) -> ShardResult:
    """``index_shard`` with the shard's videos decoded by ``decoders`` child processes (see the module docstring)."""
    started = time.time()
    encoder, load_s = worker_encoder(target)
    t_start = time.perf_counter()
    settings, run = target.features, target.run
    result = ShardResult(shard=shard_name, started_at=started)
    pool = worker_pool(decoders)
    embedder = Embedder(encoder, run.clip_batch_size)
    rows: list[dict | None] = [None] * len(videos)
    decode_s, remote_images = 0.0, 0
    remote = bool(settings.window.enabled)  # a long video's frame grid: embedded as the child decodes it

    def job(path: str) -> tuple:
        return (path, settings.mv, settings.clip.frames, run.decode_timeout_s, settings.window, remote)

    with pool.lock:  # one shard at a time per pool (a worker with several threads runs them in turn)
        pool.answer_with(encoder.target_size, lambda frames: encoder.embed(frames, batch_size=run.clip_batch_size))
        try:
            with contextlib.closing(pool.decode([v["path"] for v in videos], job, run.hard_timeout_s)) as results:
                for done in results:
                    decode_s += done.seconds
                    row, frames = video_row(videos[done.index], target.settings_hash, encoder.weights_id,
                                            functools.partial(_result, done))
                    row["elapsed_s"] = done.seconds
                    rows[done.index] = row
                    remote_images += row["clip_shape"][0] if row.get("clip_shape") else 0  # embedded as decoded
                    if done.crashed:
                        result.culprits.append(videos[done.index]["video_id"])
                        log.warning("shard %s: the decoder died on %s: %s", shard_name, videos[done.index]["path"],
                                    row["error"])
                    if row["status"] == STATUS_OK and frames:
                        embedder.add(done.index, frames)
            t_wait = time.perf_counter()
            embeddings = embedder.finish()
        finally:
            embedder.threads.shutdown(wait=True)
    for i, emb in embeddings.items():
        rows[i].update(clip=emb.ravel(), clip_shape=list(emb.shape))
    result.images_embedded = sum(len(e) for e in embeddings.values()) + remote_images
    result = write_rows(rows, target.store(), result)
    result.seconds.update(decode=decode_s, embed=embedder.busy_s, load_model=load_s,
                          embed_wait=time.perf_counter() - t_wait - result.seconds["write"],
                          wall=time.perf_counter() - t_start)
    return result


def _result(done: Decoded, _path: str) -> VideoFeatures:
    """``video_row``'s decode step for a video the pool decoded: its features, or its error raised."""
    if done.error is not None:
        raise done.error
    return done.features
