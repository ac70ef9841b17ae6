"""Long videos across workers: each range of a long video (``moclip.video.ranges``) decoded by its own task, on any
worker, and the video's one row assembled when all its ranges are in.

    plan_long_videos    which of a run's videos are long enough (``RunConfig.split_s``, with windows), and their
                        ranges: the rest go into shards as before
    index_range         one range: decoded, its grid frames embedded by the worker's CLIP (``RangeOutcome``)
    commit_ranges       the video's row from its ranges' outcomes, written as its own shard file: ``ok`` with the
                        assembled features; ``failed`` with the reason naming the range that did not decode; or
                        the video decoded whole here, when its ranges cannot be used (they disagree where they
                        overlap, or its clock is broken)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from moclip.indexing.common import (
    ShardResult,
    ShardTarget,
    hard_time_limit,
    video_row,
    worker_encoder,
    write_rows,
)
from moclip.indexing.decode import decode_video, failure_reason, inject_fault
from moclip.video import DecodeError, VideoFeatures
from moclip.video.ranges import VideoRanges, assemble, decode_range, plan_ranges, whole_instead
from moclip.video.windows import Part

__all__ = ["RangeOutcome", "commit_ranges", "index_range", "plan_long_videos"]

BYTES_PER_S = 12_500  # 100 kbit/s: a file smaller than split_s of this is not opened (short, or a still picture)


@dataclass
class RangeOutcome:
    """What one range's task gives: its part, or why the video fails, or why it must be decoded whole."""

    index: int
    part: Part | None = None
    error: str | None = None  # the range did not decode: the video's reason (naming the range)
    whole: str | None = None  # the ranges cannot be used: decode the video whole (why)
    seconds: float = 0.0
    embed_s: float = 0.0
    worker: str = ""


def plan_long_videos(videos: list[dict], target: ShardTarget,
                     on_error: Callable[[dict, str], None] | None = None) -> dict[str, VideoRanges]:
    """The videos of ``videos`` to decode in ranges: by video id, their ranges. Only with windows, ``split_s`` > 0
    and the PyAV backend; a file under ``split_s`` x 100 kbit/s is not even opened. A file that cannot be opened
    is left to its shard (which gives it its ``failed`` row); ``on_error`` hears of it."""
    run, settings = target.run, target.features
    if not settings.window.enabled or run.split_s <= 0 or settings.mv.backend != "pyav":
        return {}
    out: dict[str, VideoRanges] = {}
    for video in videos:
        try:
            if os.path.getsize(video["path"]) < run.split_s * BYTES_PER_S:
                continue
            plan = plan_ranges(video["path"], settings.mv, run.range_s, min_s=run.split_s)
        except (DecodeError, OSError) as exc:
            if on_error is not None:
                on_error(video, failure_reason(exc))
            continue
        if plan is not None:
            out[video["video_id"]] = plan
    return out


def index_range(plan: VideoRanges, i: int, target: ShardTarget) -> RangeOutcome:
    """Range ``i`` of ``plan``: decoded here (under the hard time limit: a decoder that hangs ends this process and
    the flow retries the range) and its grid frames embedded by this worker's CLIP model."""
    t0 = time.perf_counter()
    encoder, _ = worker_encoder(target)
    settings, run = target.features, target.run
    embed_s = [0.0]

    def embed(frames: list[np.ndarray]) -> np.ndarray:
        t = time.perf_counter()
        out = encoder.embed(frames, batch_size=run.clip_batch_size)
        embed_s[0] += time.perf_counter() - t
        return out

    out = RangeOutcome(index=i, worker=f"{os.uname().nodename}:{os.getpid()}")
    try:
        with hard_time_limit(run.hard_timeout_s):
            out.part = decode_range(plan, i, settings.mv, settings.window, encoder.target_size, run.decode_timeout_s,
                                    on_frame=inject_fault(plan.path), embed=embed)
    except Exception as exc:  # noqa: BLE001 - a range's error is its video's, reported with the range
        if whole_instead(exc):
            out.whole = f"{plan.describe(i)}: {exc}"
        else:
            out.error = f"{plan.describe(i)}: {failure_reason(exc)}"
    out.seconds, out.embed_s = time.perf_counter() - t0, embed_s[0]
    return out


def commit_ranges(video: dict, plan: VideoRanges, outcomes: list[RangeOutcome], shard_name: str,
                  target: ShardTarget) -> ShardResult:
    """The video's row from all its ranges' outcomes (any order), written as the shard file ``shard_name``."""
    started = time.time()
    settings, run = target.features, target.run
    outcomes = sorted(outcomes, key=lambda o: o.index)
    if [o.index for o in outcomes] != list(range(len(plan))):
        raise ValueError(f"{video['path']}: {len(outcomes)} range outcomes for {len(plan)} ranges")
    encoder, load_s = worker_encoder(target)
    whole_reason = next((o.whole for o in outcomes if o.whole), None)

    def decode(path: str) -> VideoFeatures:
        error = next((o.error for o in outcomes if o.error), None)
        if error is not None:
            raise DecodeError(error)
        if whole_reason is None:
            try:
                return assemble([o.part for o in outcomes], settings.mv, settings.window)
            except Exception as exc:  # noqa: BLE001 - RangeMismatch and the like: the whole decode is the answer
                if not whole_instead(exc):
                    raise
        with hard_time_limit(run.hard_timeout_s):
            return decode_video(path, settings.mv, settings.clip.frames, encoder.target_size, run.decode_timeout_s,
                                settings.window, lambda frames: encoder.embed(frames, batch_size=run.clip_batch_size))

    t0 = time.perf_counter()
    row, _ = video_row(video, target.settings_hash, encoder.weights_id, decode)
    commit_s = time.perf_counter() - t0
    row["elapsed_s"] = sum(o.seconds for o in outcomes) + commit_s
    result = ShardResult(shard=shard_name, started_at=started)
    result.images_embedded = int(row["clip_shape"][0]) if row.get("clip_shape") else 0
    result = write_rows([row], target.store(), result)
    result.seconds.update(decode=sum(o.seconds - o.embed_s for o in outcomes) + commit_s,
                          embed=sum(o.embed_s for o in outcomes), load_model=load_s)
    return result
