"""Prefect tasks of the review flows: thin wrappers over moclip.review."""

from __future__ import annotations

import os

from prefect import task
from prefect.cache_policies import NO_CACHE

from moclip.review.batch import Exported, export_to_label_studio, make_batch, reviews_from_label_studio
from moclip.review.labelstudio import ImportReport


def token(given: str | None) -> str:
    """The Label Studio token: given, or the worker's MOCLIP_LABEL_STUDIO_TOKEN (kept out of flow parameters)."""
    return given or os.environ.get("MOCLIP_LABEL_STUDIO_TOKEN", "")


@task(name="select-batch", cache_policy=NO_CACHE)
def select_batch(labels: str, n: int, strategy: str, out: str) -> int:
    return len(make_batch(labels, n, out, strategy))  # type: ignore[arg-type]


@task(name="export-batch", cache_policy=NO_CACHE)
def export_batch(batch: str, url: str, token_: str | None, project: str | None, media_url: str | None,
                 document_root: str | None) -> Exported:
    return export_to_label_studio(batch, url, token(token_), project, media_url, document_root)


@task(name="import-reviews", cache_policy=NO_CACHE)
def import_reviews_task(labels: str, url: str, token_: str | None, project: str | None) -> ImportReport:
    return reviews_from_label_studio(labels, url, token(token_), project)[1]
