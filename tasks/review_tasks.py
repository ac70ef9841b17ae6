"""Prefect tasks of the review flows: thin wrappers over moclip.review."""

from __future__ import annotations

import os

from prefect import task
from prefect.cache_policies import NO_CACHE

from moclip.review.batch import Exported, export_to_label_studio, make_batch, reviews_from_label_studio
from moclip.review.labelstudio import ImportReport


def token() -> str:
    """The worker's Label Studio token (MOCLIP_LABEL_STUDIO_TOKEN): never a flow or task parameter, which Prefect
    stores in clear."""
    return os.environ.get("MOCLIP_LABEL_STUDIO_TOKEN", "")


@task(name="select-batch", cache_policy=NO_CACHE)
def select_batch(labels: str, n: int, strategy: str, out: str) -> int:
    return len(make_batch(labels, n, out, strategy))  # type: ignore[arg-type]


@task(name="export-batch", cache_policy=NO_CACHE)
def export_batch(batch: str, url: str, project: str | None, media_url: str | None,
                 document_root: str | None) -> Exported:
    return export_to_label_studio(batch, url, token(), project, media_url, document_root)


@task(name="import-reviews", cache_policy=NO_CACHE)
def import_reviews_task(labels: str, url: str, project: str | None, storage_options: dict) -> ImportReport:
    return reviews_from_label_studio(labels, url, token(), project, storage_options)[1]
