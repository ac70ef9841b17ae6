"""Indexing a shard in the worker's own process: each video decoded here under a hard time limit (past it, the
process exits, so a decoder hung inside native code fails the Dask task instead of stalling the run; the flow then
retries the shard in isolation, ``isolated.py``), frames batched across the shard's videos for CLIP."""

from __future__ import annotations

import time

import numpy as np

from moclip.indexing.common import (
    ShardResult,
    ShardTarget,
    embed_and_write,
    hard_time_limit,
    video_row,
    worker_encoder,
)
from moclip.indexing.decode import decode_video
from moclip.video import VideoFeatures


def index_shard_inline(videos: list[dict], shard_name: str, target: ShardTarget) -> ShardResult:
    """Index ``videos`` into the Parquet file ``shard_name`` of ``target.out``, one row per video, each decoded in
    this process (under a hard time limit) and its frames embedded by this process's CLIP."""
    started = time.time()
    encoder, load_s = worker_encoder(target)
    mv, frames, run = target.features.mv, target.features.clip.frames, target.run

    def embed(rgb: list[np.ndarray]) -> np.ndarray:
        return encoder.embed(rgb, batch_size=run.clip_batch_size)

    def decode(path: str) -> VideoFeatures:
        with hard_time_limit(run.hard_timeout_s):  # the decoder's swscale resizes straight to CLIP's input size
            return decode_video(path, mv, frames, encoder.target_size, run.decode_timeout_s, target.features.window,
                                embed)

    decoded = [video_row(video, target.settings_hash, encoder.weights_id, decode) for video in videos]
    result = embed_and_write(decoded, encoder, run, target.store(), ShardResult(shard=shard_name, started_at=started))
    result.seconds["load_model"] = load_s
    return result
