"""Input sharder: the videos to index -> shards, one Dask task and one Parquet file each."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass
class Shard:
    name: str  # Parquet file name inside the dataset folder
    videos: list[dict]


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def make_shards(videos: list[dict], shard_size: int, run_id: str) -> list[Shard]:
    """Consecutive runs of ``shard_size`` videos (the corpus table is sorted, so shards stay stable)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [
        Shard(name=f"part-{run_id}-{i // shard_size:05d}.parquet", videos=videos[i:i + shard_size])
        for i in range(0, len(videos), shard_size)
    ]
