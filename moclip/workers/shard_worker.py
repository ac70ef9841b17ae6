"""One shard of videos -> one Parquet file. Runs inside a Dask worker process (or anywhere else).

Every video ends as exactly one row: ``ok`` with features, or ``failed`` with the reason. The CLIP model is
loaded once per process (``load_clip`` caches it) and frames are batched across the shard's videos.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone

import av
import numpy as np

from moclip.config import FeatureSettings, RunConfig
from moclip.dataset.incremental import fingerprint
from moclip.dataset.schema import STATUS_FAILED, STATUS_OK, rows_to_table
from moclip.dataset.storage import Store
from moclip.video import DecodeError, extract_video


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


def describe_error(exc: BaseException) -> str:
    """A one-line reason a user understands."""
    if isinstance(exc, DecodeError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a video file"
    if isinstance(exc, OSError):
        return f"cannot read file: {exc.strerror or exc}"
    if isinstance(exc, av.error.FFmpegError):
        return f"decoder error: {exc}"
    return f"unexpected {type(exc).__name__}: {exc}"


def index_shard(
    videos: list[dict], settings: FeatureSettings, out_url: str, shard_name: str, run: RunConfig,
    settings_hash: str, storage_options: dict | None = None,
) -> ShardResult:
    from moclip.clip import load_clip

    result = ShardResult(shard=shard_name)
    encoder = load_clip(settings.clip, device=run.device)
    size_fn = encoder.target_size  # the decoder's swscale resizes straight to CLIP's input size
    rows: list[dict] = []
    frames: list[np.ndarray] = []
    owners: list[int] = []
    t_decode = 0.0
    for video in videos:
        t0 = time.perf_counter()
        row = {k: video.get(k) for k in ("video_id", "path", "label", "split", "group")}
        row.update(settings_hash=settings_hash, clip_weights_id=encoder.weights_id)
        try:
            st = os.stat(video["path"])
            row.update(file_size=st.st_size, mtime_ns=st.st_mtime_ns)
            row["fingerprint"] = video.get("fingerprint") or fingerprint(video["path"])
            if st.st_size == 0:
                raise DecodeError("empty file (0 bytes)")
            feats = extract_video(video["path"], settings.mv, settings.clip.frames, size_fn, run.decode_timeout_s)
            info, motion = feats.info, feats.motion
            row.update(
                status=STATUS_OK, codec=info.codec, width=info.width, height=info.height, fps=info.fps,
                n_frames=motion.n_frames, n_mv_frames=motion.n_mv_frames,
                duration_s=info.duration_s or (motion.n_frames / info.fps if info.fps else None),
                mv=motion.values.ravel(), mv_shape=list(motion.values.shape), mv_valid=motion.valid.tolist(),
                frame_indices=feats.frame_indices,
            )
            frames.extend(feats.frames)
            owners.extend([len(rows)] * len(feats.frames))
            result.frames_decoded += motion.n_frames
        except Exception as exc:  # one bad video is a row, never a failed shard
            row.update(status=STATUS_FAILED, error=describe_error(exc))
            if not isinstance(exc, (DecodeError, OSError)):
                row["error"] += " | " + traceback.format_exc(limit=3).replace("\n", " ")[-500:]
        dt = time.perf_counter() - t0
        t_decode += dt
        row["elapsed_s"] = dt
        rows.append(row)

    t0 = time.perf_counter()
    if frames:
        emb = encoder.embed(frames, batch_size=run.clip_batch_size)
        owners_arr = np.asarray(owners)
        for i, row in enumerate(rows):
            mine = emb[owners_arr == i]
            if len(mine):
                row["clip"] = mine.ravel()
                row["clip_shape"] = list(mine.shape)
                row["elapsed_s"] += (time.perf_counter() - t0) * len(mine) / len(frames)
        result.images_embedded = len(frames)
    t_embed = time.perf_counter() - t0
    now = datetime.now(timezone.utc)
    for row in rows:
        row["indexed_at"] = now
        if row["status"] == STATUS_OK:
            result.n_ok += 1
        else:
            result.n_failed += 1
            result.failures.append((row["video_id"], row["error"]))

    t0 = time.perf_counter()
    result.bytes_written = Store(out_url, storage_options).write_table(shard_name, rows_to_table(rows))
    result.seconds = {"decode": t_decode, "embed": t_embed, "write": time.perf_counter() - t0}
    return result
