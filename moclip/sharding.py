"""Input sharder: the videos to index -> shards, one Dask task and one Parquet file each; a long video decoded in
ranges (``moclip.indexing.ranges``) is a shard of its own, whose ranges are tasks."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from moclip.video.ranges import VideoRanges


@dataclass
class Shard:
    name: str  # Parquet file name inside the dataset folder
    videos: list[dict]


@dataclass
class LongVideo:
    name: str  # its own Parquet file
    video: dict
    ranges: VideoRanges


def long_video_shards(videos: list[dict], plans: dict[str, VideoRanges], run_id: str) -> list[LongVideo]:
    """The videos of ``videos`` that ``plans`` has ranges for, each named as its own shard (``-L`` numbers)."""
    return [LongVideo(f"part-{run_id}-L{i:05d}.parquet", v, plans[v["video_id"]])
            for i, v in enumerate(v for v in videos if v["video_id"] in plans)]


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def make_shards(videos: list[dict], shard_size: int, run_id: str, workers: int | None = None) -> list[Shard]:
    """Consecutive runs of at most ``shard_size`` videos, of near-equal size (the corpus table is sorted, so shards
    stay stable). With ``workers``, the shard count is rounded up to a multiple of it, so no worker sits idle while
    the last, lone shard runs (200 videos, shard size 16, 2 workers: 14 shards of 14-15, not 12 x 16 + 8), and the
    last round (one shard per worker) is cut in halves when they hold 8 or more videos: Dask hands shards to
    whichever worker is free, so the workers then finish within about half a shard of each other, not a whole one."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    n = len(videos)
    k = -(-n // shard_size)
    if workers and k > 1:
        k = min(n, -(-k // workers) * workers)
    bounds = [i * n // k for i in range(k + 1)] if k else [0]
    if workers and workers > 1 and k >= 2 * workers and bounds[-1] - bounds[-1 - workers] >= 8 * workers:
        last = bounds[-1 - workers:]
        bounds = bounds[:-1 - workers] + [x for lo, hi in zip(last, last[1:]) for x in (lo, (lo + hi) // 2)] + [n]
    return [Shard(name=f"part-{run_id}-{i:05d}.parquet", videos=videos[bounds[i]:bounds[i + 1]])
            for i in range(len(bounds) - 1)]


def save_shards(shards: list[Shard], path: str | Path) -> None:
    """Write a shard plan as JSON (flows pass its path, not the plan: a 10,000-video plan is over 1 MB, above what
    the Prefect API accepts as flow-run parameters)."""
    Path(path).write_text(json.dumps([asdict(s) for s in shards]))


def load_shards(path: str | Path) -> list[Shard]:
    return [Shard(**d) for d in json.loads(Path(path).read_text())]


def save_long_videos(long: list[LongVideo], path: str | Path) -> None:
    Path(path).write_text(json.dumps([asdict(lv) for lv in long]))


def load_long_videos(path: str | Path) -> list[LongVideo]:
    return [LongVideo(d["name"], d["video"], VideoRanges(**d["ranges"])) for d in json.loads(Path(path).read_text())]
