"""What the three ways of indexing a shard share (``inline``, ``pool``, ``isolated``; ``shard.index_shard`` picks
one): the run's ``ShardTarget``, the ``ShardResult``, one video's row, embedding a shard's frames in shared batches and
writing its one Parquet file, and the worker's CLIP encoder."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from moclip.config import FeatureSettings, RunConfig, Settings
from moclip.dataset.incremental import fingerprint
from moclip.dataset.schema import STATUS_FAILED, STATUS_OK, rows_to_table
from moclip.dataset.storage import Store
from moclip.indexing.decode import failure_reason
from moclip.video import DecodeError, VideoFeatures

__all__ = ["ShardResult", "ShardTarget", "embed_and_write", "hard_time_limit", "match_thread_limit", "video_row",
           "worker_encoder", "write_rows"]


class ShardTarget(Settings):
    """What every shard of one index run shares: the features to make, how to run, and where they go."""

    features: FeatureSettings = Field(description="resolved feature settings (CLIP precision is not 'auto')")
    run: RunConfig
    out: str = Field(description="dataset folder or fsspec URL")
    settings_hash: str
    storage_options: dict = Field(default_factory=dict)

    @field_validator("run")
    @classmethod
    def _for_device(cls, run: RunConfig) -> RunConfig:
        """Shard size, CLIP batch, decoder processes and resources filled in for the run's kind of device."""
        from moclip.precision import device_type
        from moclip.runplan import plan_run

        return plan_run(run, device_type(run.device)).run(run)

    def store(self) -> Store:
        return Store(self.out, self.storage_options)


@dataclass
class ShardResult:
    shard: str
    n_ok: int = 0
    n_failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video_id, reason)
    bytes_written: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # decode / embed / write
    frames_decoded: int = 0
    images_embedded: int = 0
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    first_error: str | None = None  # set when this is an isolated retry: why the shard's first attempt failed
    culprits: list[str] = field(default_factory=list)  # isolated retry: videos whose decoder crashed or hung
    started_at: float = field(default_factory=time.time)  # wall clock (epoch s) when the shard's work began...
    ended_at: float = 0.0  # ...and when its file was written: a run's timeline (start-up, gaps, idle tail)


@contextlib.contextmanager
def hard_time_limit(seconds: float) -> Iterator[None]:
    """End this process (exit status 1, every thread's stack dumped to stderr) if the block runs past ``seconds``.

    faulthandler's watchdog is a C thread: it fires even while a decoder hangs inside native code holding the GIL.
    A process has one such timer, so this one replaces any other (e.g. pytest's ``faulthandler_timeout``) meanwhile.
    """
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def video_row(
    video: dict, settings_hash: str, clip_weights_id: str, decode: Callable[[str], VideoFeatures],
) -> tuple[dict, list[np.ndarray]]:
    """One video's row (``ok`` with MV features, or ``failed`` with the reason) and the RGB frames CLIP embeds."""
    t0 = time.perf_counter()
    row = {k: video.get(k) for k in ("video_id", "path", "label", "split", "group")}
    row.update(settings_hash=settings_hash, clip_weights_id=clip_weights_id)
    frames: list[np.ndarray] = []
    try:
        st = os.stat(video["path"])
        row.update(file_size=st.st_size, mtime_ns=st.st_mtime_ns)
        row["fingerprint"] = video.get("fingerprint") or fingerprint(video["path"])
        if st.st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        feats = decode(video["path"])
        info, motion = feats.info, feats.motion
        row.update(
            status=STATUS_OK, codec=info.codec, width=info.width, height=info.height, fps=info.fps,
            n_frames=motion.n_frames, n_mv_frames=motion.n_mv_frames,
            duration_s=info.duration_s or (motion.n_frames / info.fps if info.fps else None),
            mv=motion.values.ravel(), mv_shape=list(motion.values.shape), mv_valid=motion.valid.tolist(),
            frame_indices=feats.frame_indices, n_clip_frames=feats.n_real_frames, mv_source=feats.mv_source,
            orientation=info.orientation.label, interlaced=info.interlaced,
        )
        if feats.windows is not None:
            w = feats.windows
            row.update(window_start_s=w.start_s, window_end_s=w.end_s, window_first_bin=w.first_bin,
                       window_first_frame=w.first_frame, window_n_bins=w.n_bins, window_n_frames=w.n_frames,
                       window_bin_s=w.bin_s, window_clock=w.clock)
        frames = feats.frames
        if feats.embeddings is not None:  # embedded while decoding (long videos with windows)
            row.update(clip=feats.embeddings.ravel(), clip_shape=list(feats.embeddings.shape))
    except Exception as exc:  # noqa: BLE001 - one bad video is a row, never a failed shard
        row.update(status=STATUS_FAILED, error=failure_reason(exc))
        info = getattr(exc, "info", None)  # what the probe knew before decoding failed
        if info is not None:
            row.update(codec=info.codec, width=info.width, height=info.height, fps=info.fps,
                       duration_s=info.duration_s or None)
    row["elapsed_s"] = time.perf_counter() - t0
    return row, frames


def embed_and_write(
    decoded: list[tuple[dict, list[np.ndarray]]], encoder, run: RunConfig, store: Store, result: ShardResult,
) -> ShardResult:
    """Embed every row's frames in shared batches, then write the rows as the Parquet file ``result.shard``."""
    rows = [row for row, _ in decoded]
    frames = [f for _, fs in decoded for f in fs]
    owners = np.asarray([i for i, (_, fs) in enumerate(decoded) for _ in fs])
    t_decode = sum(row["elapsed_s"] for row in rows)
    pre_embedded = sum(row["clip_shape"][0] for row in rows if row.get("clip_shape"))  # while decoding (windows)
    t0 = time.perf_counter()
    if frames:
        emb = encoder.embed(frames, batch_size=run.clip_batch_size)
        for i, row in enumerate(rows):
            mine = emb[owners == i]
            if len(mine):
                row["clip"] = mine.ravel()
                row["clip_shape"] = list(mine.shape)
                row["elapsed_s"] += (time.perf_counter() - t0) * len(mine) / len(frames)
    result.images_embedded = len(frames) + pre_embedded
    t_embed = time.perf_counter() - t0
    result = write_rows(rows, store, result)
    result.seconds.update(decode=t_decode, embed=t_embed)
    return result


def write_rows(rows: list[dict], store: Store, result: ShardResult) -> ShardResult:
    """Count the shard's rows into ``result`` and write them (embedded) as the Parquet file ``result.shard``."""
    now = datetime.now(timezone.utc)
    for row in rows:
        row["indexed_at"] = now
        if row["status"] == STATUS_OK:
            result.n_ok += 1
            result.frames_decoded += row["n_frames"]
        else:
            result.n_failed += 1
            result.failures.append((row["video_id"], row["error"]))
    t0 = time.perf_counter()
    result.bytes_written = store.write_table(result.shard, rows_to_table(rows))
    result.seconds["write"] = time.perf_counter() - t0
    result.ended_at = time.time()
    return result


def match_thread_limit() -> None:
    """Use ``OMP_NUM_THREADS`` torch threads when it is set (Dask sets 1 for its single-threaded local workers).

    torch reads it only when imported, and workers forked from a warm server (``flows.processes``) imported torch
    before Dask set it: without this, 2 workers x 2 torch threads fight over 2 cores (~10 % slower embedding).
    """
    import torch

    n = os.environ.get("OMP_NUM_THREADS", "")
    if n.isdigit() and int(n) > 0 and torch.get_num_threads() != int(n):
        torch.set_num_threads(int(n))


def worker_encoder(target: ShardTarget) -> tuple[Any, float]:
    """This worker process's CLIP encoder (cached: only its first shard pays) and the seconds it took to get."""
    from moclip.clip import load_clip

    match_thread_limit()
    t0 = time.perf_counter()
    encoder = load_clip(target.features.clip, device=target.run.device)
    return encoder, time.perf_counter() - t0
