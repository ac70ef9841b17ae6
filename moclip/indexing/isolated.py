"""The second try of a shard whose first attempt failed (its worker died or hung): each video decoded in isolation.

Videos are decoded one at a time in a child process (``python -m moclip.indexing.decode``), so a decoder that
crashes or hangs costs one video: the child dies, or is killed at the hard time limit, the video becomes a
``failed`` row that says so, and a fresh child takes the next video. Everything else is what ``index_shard`` does:
the same rows, frames embedded with this worker's cached CLIP model, one Parquet file with the shard's name.
"""

from __future__ import annotations

import logging
import time

from moclip.indexing.child import DecoderProcess
from moclip.indexing.common import ShardResult, ShardTarget, embed_and_write, video_row, worker_encoder
from moclip.video import VideoFeatures

log = logging.getLogger(__name__)


def index_shard_isolated(
    videos: list[dict], shard_name: str, target: ShardTarget, first_error: str = "",
) -> ShardResult:
    """``index_shard``, with every video decoded in a child process; ``first_error``: why the first try failed."""
    started = time.time()
    encoder, load_s = worker_encoder(target)
    settings, run = target.features, target.run
    result = ShardResult(shard=shard_name, first_error=first_error, started_at=started)
    # a long video's frames are embedded here while the child decodes them (EMBED_BATCH at a time), as in a worker
    child = DecoderProcess(encoder.target_size, lambda frames: encoder.embed(frames, batch_size=run.clip_batch_size))

    def decode(path: str) -> VideoFeatures:
        return child.decode(path, settings.mv, settings.clip.frames, run.decode_timeout_s, run.hard_timeout_s,
                            settings.window)

    decoded = []
    try:
        for video in videos:
            deaths = child.deaths
            decoded.append(video_row(video, target.settings_hash, encoder.weights_id, decode))
            if child.deaths > deaths:
                result.culprits.append(video["video_id"])
                log.warning("shard %s: the decoder died on %s: %s", shard_name, video["path"], decoded[-1][0]["error"])
    finally:
        child.close()
    result = embed_and_write(decoded, encoder, run, target.store(), result)
    result.seconds["load_model"] = load_s
    return result
