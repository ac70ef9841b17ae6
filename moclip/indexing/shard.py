"""One shard of videos -> one Parquet file. Runs inside a Dask worker process (or anywhere else).

Every video ends as exactly one row: ``ok`` with features, or ``failed`` with the reason. The CLIP model is
loaded once per process (``load_clip`` caches it) and frames are batched across the shard's videos. Three ways to
decode, side by side, and ``index_shard`` picks one:

    inline.py    in this process, under a hard time limit (CPU workers)
    pool.py      by a pool of decoder processes feeding this process's CLIP (GPU workers, ``decode_workers``)
    isolated.py  the retry of a shard whose first try died or hung: each video in a child process of its own

What they share (``ShardTarget``, ``ShardResult``, rows, writing) is in ``common.py``; the child decoder process in
``child.py``.
"""

from __future__ import annotations

from moclip.indexing.common import ShardResult, ShardTarget, match_thread_limit
from moclip.indexing.decode import describe_error
from moclip.indexing.inline import index_shard_inline
from moclip.indexing.isolated import index_shard_isolated
from moclip.indexing.pool import index_shard_pooled

__all__ = ["ShardResult", "ShardTarget", "describe_error", "index_shard", "match_thread_limit"]


def index_shard(videos: list[dict], shard_name: str, target: ShardTarget,
                first_error: str | None = None) -> ShardResult:
    """Index ``videos`` into the Parquet file ``shard_name`` of ``target.out``: one row per video. ``first_error``
    (why a first try failed) makes it the isolated retry; otherwise decoder processes when the run has them (GPU
    workers, ``RunConfig.decode_workers``), else inline."""
    from moclip.precision import device_type
    from moclip.runplan import plan_run

    if first_error is not None:
        return index_shard_isolated(videos, shard_name, target, first_error)
    decoders = plan_run(target.run, device_type(target.run.device), on_worker=True).decoders
    if decoders:
        return index_shard_pooled(videos, shard_name, target, decoders)
    return index_shard_inline(videos, shard_name, target)
