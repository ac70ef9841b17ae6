"""Prefect tasks of the index flow: each a thin wrapper over one moclip function."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from moclip.corpus import load_corpus
from moclip.corpus.table import require_videos
from moclip.dataset import IndexPlan, Store, plan_index, rewrite_old_shards
from moclip.dataset.incremental import check_deletions, quarantine_unreadable
from moclip.indexing.ranges import RangeOutcome, commit_ranges, index_range
from moclip.indexing.shard import ShardResult, ShardTarget, index_shard
from moclip.params import IndexParams
from moclip.video.ranges import VideoRanges


@task(name="list-corpus", cache_policy=NO_CACHE)
def list_corpus(params: IndexParams) -> pd.DataFrame:
    """The corpus as one table (video_id, path, label, split, group). A DataFrame, not a list of dicts: Prefect
    walks list and dict parameters of the next task element by element (~0.15 s per 2,000 videos).
    A root that lists no video (an unmounted archive) is an error, never "every video deleted"."""
    return require_videos(load_corpus(params.corpus), params.corpus.root or str(params.corpus.manifest))


@task(name="plan-index", cache_policy=NO_CACHE)
def plan_index_task(videos: pd.DataFrame, params: IndexParams, settings_hash: str) -> IndexPlan:
    """What to decode, keep, restore and mark deleted; unreadable shards are moved aside. A plan that would mark
    too much of the dataset deleted (``--max-delete``) is refused here, before anything is written."""
    store = Store(params.out, params.storage_options)
    store.ensure()
    store.clean_temp()
    the_plan = plan_index(videos, store, settings_hash, retry_failed=params.retry_failed,
                          keep_deleted_days=params.run.keep_deleted_days)
    check_deletions(the_plan, params.out, params.corpus.root or str(params.corpus.manifest), params.run.max_delete,
                    params.run.allow_mass_delete)
    quarantine_unreadable(store, the_plan)  # accepted: only now is anything moved
    return the_plan


@task(name="index-shard", cache_policy=NO_CACHE)
def index_shard_task(videos: list[dict], shard_name: str, target: ShardTarget) -> ShardResult:
    return index_shard(videos, shard_name, target)


@task(name="index-shard-isolated", cache_policy=NO_CACHE)
def index_shard_isolated_task(
    videos: list[dict], shard_name: str, target: ShardTarget, first_error: str,
) -> ShardResult:
    return index_shard(videos, shard_name, target, first_error)


@task(name="index-range", cache_policy=NO_CACHE)
def index_range_task(plan: VideoRanges, i: int, target: ShardTarget) -> RangeOutcome:
    return index_range(plan, i, target)


@task(name="commit-ranges", cache_policy=NO_CACHE)
def commit_ranges_task(video: dict, plan: VideoRanges, outcomes: list[RangeOutcome], shard_name: str,
                       target: ShardTarget) -> ShardResult:
    return commit_ranges(video, plan, outcomes, shard_name, target)


@task(name="commit-index", cache_policy=NO_CACHE)
def commit(plan: IndexPlan, params: IndexParams) -> int:
    return rewrite_old_shards(Store(params.out, params.storage_options), plan)
