"""One search, start to end: check the dataset, embed the query, bring the catalog up to date, find the hits.

The query is checked and embedded before anything is written (a bad query writes nothing); the dataset is only
read. ``write_results`` keeps the hits as ``results.parquet`` (the page is ``moclip.report.contact_sheet``'s).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from moclip.dataset import read_manifest
from moclip.dataset.commit import StaleFeatures, check_schema
from moclip.files import atomic_write_bytes
from moclip.params import SearchParams
from moclip.precision import resolve_device
from moclip.search.catalog import Catalog, SearchError, SyncReport
from moclip.search.encode import like_vector, text_vector
from moclip.search.query import parse_like, search_items

RESULTS_FILE = "results.parquet"


@dataclass
class SearchResult:
    hits: pd.DataFrame  # moclip.search.query.RESULT_COLUMNS
    query: str  # the query in words, for titles
    catalog: SyncReport
    exact: bool  # exact search (else the approximate index)


def check_dataset(dataset: str, storage_options: dict | None = None) -> dict:
    """The dataset's manifest; ``SearchError`` when there is nothing to search (no dataset, no CLIP features,
    features of an older schema)."""
    manifest = read_manifest(dataset, storage_options)
    if not manifest or not manifest.get("settings"):
        raise SearchError(f"{dataset}: not an indexed dataset (no _manifest.json): index it with `moclip index`")
    if not manifest.get("clip_weights_id") or not (manifest["settings"].get("clip") or {}).get("model"):
        raise SearchError(f"{dataset}: its features have no CLIP embeddings to search")
    try:
        check_schema(manifest, dataset)
    except StaleFeatures as e:
        raise SearchError(str(e)) from e
    return manifest


def search(params: SearchParams, log: Callable[[str], None] = lambda m: None) -> SearchResult:
    """The hits of ``params``' query (see the module docstring)."""
    manifest = check_dataset(params.dataset, params.storage_options)
    device = resolve_device(params.device)
    if params.text is not None:
        query, words = text_vector(params.text, params.dataset, manifest, device), f'"{params.text}"'
    else:
        path, at_s = parse_like(str(params.like))
        if not Path(path).is_file():
            raise SearchError(f"{path}: no such video file")
        query = like_vector(path, at_s, params.dataset, manifest, str(device))
        words = f"like {path}" + (f" at {at_s:g} s" if at_s is not None else "")
    catalog = Catalog(params.dataset, manifest, params.index_dir, params.storage_options)
    report = catalog.sync(log)
    for problem in report.unreadable:
        log(f"left out of this search: {problem}")
    items, vectors, ann, signatures = catalog.snapshot()
    if len(items) == 0:
        raise SearchError(f"{params.dataset}: no video indexed ok yet: nothing to search")
    hits = search_items(items, vectors, query, params.top_k, params.min_motion, params.max_motion, params.dedup,
                        params.ranges_per_video, ann=ann, range_tolerance=params.range_tolerance,
                        signatures=signatures)
    return SearchResult(hits=hits, query=words, catalog=report, exact=ann is None)


def write_results(hits: pd.DataFrame, out: str | Path) -> Path:
    """``out/results.parquet`` (written atomically)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    hits.to_parquet(buf, index=False)
    atomic_write_bytes(folder / RESULTS_FILE, buf.getvalue())
    return folder / RESULTS_FILE
