"""Reviewed items as training samples: whole videos with the reviewer's label, or the windows of long videos that
lie inside a reviewed time range (a window counts for a range when at least half of it is inside; in two ranges,
the one it overlaps most). Every sample is grouped by its video, so one video never sits on both sides of
validation, and none of them is ever a test sample (``moclip.train.splits``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from moclip.dataset import STATUS_OK, FeatureSet, Store, feature_set, read_manifest, whole_clip_settings
from moclip.dataset.schema import conform
from moclip.dataset.windows import is_windowed, window_features
from moclip.label.export import LABELS_MANIFEST
from moclip.review import ledger
from moclip.train.pipeline import ExtraFeatures, concat_features

MIN_INSIDE = 0.5  # the share of a window inside a reviewed range that makes it a sample of that range


def _rows(features: str, videos: set[str], storage_options: dict | None) -> pa.Table:
    store = Store(features, storage_options)
    keep = pa.array(sorted(videos), pa.string())
    tables = []
    for _, t in store.read_shards():
        t = conform(t)
        t = t.filter(pc.and_(pc.equal(t.column("status"), STATUS_OK), pc.is_in(t.column("video_id"), value_set=keep)))
        if t.num_rows:
            tables.append(t)
    return pa.concat_tables(tables) if tables else conform(pa.table({"video_id": pa.array([], pa.string()),
                                                                     "status": pa.array([], pa.string())}))


def window_labels(meta: pd.DataFrame, reviewed: pd.DataFrame) -> np.ndarray:
    """Each window's label from the reviewed ranges of its video (None where no range holds half of it)."""
    out = np.full(len(meta), None, dtype=object)
    best = np.zeros(len(meta))
    by_video = meta.groupby("video_id").indices
    for r in reviewed.itertuples(index=False):
        idx = by_video.get(r.video_id)
        if idx is None:
            continue
        start, end = meta["start_s"].to_numpy()[idx], meta["end_s"].to_numpy()[idx]
        inside = (np.minimum(end, r.end_s) - np.maximum(start, r.start_s)).clip(min=0) / np.maximum(end - start, 1e-9)
        take = (inside >= MIN_INSIDE) & (inside > best[idx])
        out[idx[take]], best[idx[take]] = r.label, inside[take]
    return out


def reviewed_features(labels: str, storage_options: dict | None = None) -> ExtraFeatures:
    """The reviewed items of the label run at ``labels`` as training samples (see the module docstring)."""
    about = Store(labels, storage_options).read_json(LABELS_MANIFEST)
    if not about or not about.get("features"):
        raise ValueError(f"{labels}: not a label run's output (no {LABELS_MANIFEST} naming its features)")
    reviewed = ledger.read(labels, ledger.REVIEWED, storage_options)
    if reviewed is None or reviewed.empty:
        raise ValueError(f"{labels}: nothing reviewed yet (moclip review import first)")
    features = str(about["features"])
    manifest = read_manifest(features, storage_options)
    if not manifest:
        raise ValueError(f"{features}: the label run's features are gone")
    table = _rows(features, set(reviewed["video_id"].astype(str)), storage_options)
    if table.num_rows == 0:
        raise ValueError(f"{features}: none of the {reviewed['video_id'].nunique()} reviewed videos is indexed there")
    if is_windowed(table):
        fs = window_features(table)
        labels_of = window_labels(fs.meta, reviewed[reviewed["start_s"].notna()])
    else:
        fs = feature_set(table)
        whole = reviewed.drop_duplicates("video_id", keep="last").set_index("video_id")["label"]
        labels_of = fs.meta["video_id"].map(whole).to_numpy(dtype=object)
    keep = np.flatnonzero(pd.notna(labels_of))
    meta = fs.meta.iloc[keep].reset_index(drop=True).assign(
        label=labels_of[keep], split="review", group=lambda m: "review:" + m["video_id"].astype(str))
    return ExtraFeatures(FeatureSet(meta, fs.mv[keep], fs.mv_valid[keep], fs.clip[keep]), manifest, features)


def reviewed_samples(runs: list[str], storage_options: dict | None = None) -> ExtraFeatures:
    """``reviewed_features`` of one or more label runs together (their features must be of one setting)."""
    extras = [reviewed_features(r, storage_options) for r in runs]
    first = extras[0]
    for e in extras[1:]:
        if whole_clip_settings(e.manifest, e.url)[1] != whole_clip_settings(first.manifest, first.url)[1]:
            raise ValueError(f"{e.url} and {first.url}: indexed with different feature settings")
    if len(extras) == 1:
        return first
    return ExtraFeatures(concat_features([e.fs for e in extras]), first.manifest, first.url)
