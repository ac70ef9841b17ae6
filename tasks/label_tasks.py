"""Prefect tasks of the label flow: thin wrappers over moclip.label."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from moclip.dataset import Store
from moclip.label import GroupResult, LabelPlan, LabelTarget, ShardWork, label_shards, plan_labels
from moclip.label.export import export_csv
from moclip.report.timeline_page import write_timeline_page


@task(name="plan-labels", cache_policy=NO_CACHE)
def plan_labels_task(features: str, predictions: str, key: str, storage_options: dict,
         siblings: tuple[str, ...] = ()) -> LabelPlan:
    """Folder listings only, no file read: the features', the predictions' and (with time windows) the windows'
    and segments' (``siblings``)."""
    return plan_labels(Store(features, storage_options).shard_infos(),
                       Store(predictions, storage_options).shard_infos(), key,
                       [Store(u, storage_options).shard_infos() for u in siblings])


@task(name="label-shards", cache_policy=NO_CACHE)
def label_shards_task(work: list[ShardWork], target: LabelTarget) -> GroupResult:
    return label_shards(work, target)


@task(name="export-csv", cache_policy=NO_CACHE)
def export_csv_task(predictions: str, out: str, files: list[str],
                    storage_options: dict) -> tuple[str, list[tuple[str, str, str]]]:
    return export_csv(Store(predictions, storage_options), Store(out, storage_options), files)


@task(name="timelines", cache_policy=NO_CACHE)
def timelines_task(out: str, classes: list[str], storage_options: dict) -> tuple[str, str]:
    """OUT/timelines.html and its pictures; returns (its path, the label summary's text timelines)."""
    return write_timeline_page(Store(out, storage_options), classes)
