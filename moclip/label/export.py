"""The end of a label run: the flat CSV export (streamed shard by shard) and ``_labels.json``, bounded in size."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

import pandas as pd

from moclip.dataset import Store
from moclip.dataset.storage import UnreadableFile
from moclip.label.plan import file_identity

PREDICTIONS_CSV = "predictions.csv"
LABELS_MANIFEST = "_labels.json"
LEGACY_PREDICTIONS = "predictions.parquet"  # one file of every prediction, written before predictions were sharded
KEEP_RUNS = 50
ACTIVITYNET_JSON = "segments.json"  # the labelled segments in ActivityNet's result format (with --window)
LIST_COLUMNS = ("labels", "probs", "zero_shot_labels", "zero_shot_probs", "zero_shot_cosine", "zero_shot_margin")


def flat(preds: pd.DataFrame) -> pd.DataFrame:
    """Predictions with their list columns joined by '|' (probabilities with 4 decimals), for CSV."""
    out = preds.copy()
    for col in LIST_COLUMNS:
        if col in out:
            out[col] = ["|".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) for row in out[col]]
    return out


def export_csv(predictions: Store, out: Store, files: list[str],
               name: str = PREDICTIONS_CSV) -> tuple[str, list[tuple[str, str, str]]]:
    """The prediction files ``files`` (those the run's plan owns: never a user's file that happens to be in the
    folder), in name order, into one CSV (one shard in memory at a time). A file that cannot be read whole is moved
    aside (its shard is predicted again by the next run) and left out. Returns the CSV's path and (file, reason,
    moved to) of each file moved aside."""
    bad = []
    with out.open_text(name) as f:
        header = True
        for shard in sorted(files):
            try:
                table = predictions.read_table(shard)
            except UnreadableFile as e:
                bad.append((e.path, e.reason, predictions.quarantine(shard)))
                continue
            flat(table.to_pandas()).to_csv(f, index=False, header=header)
            header = False
        if header:  # no predictions at all: the header alone
            pd.DataFrame(columns=["video_id", "path", "labels", "probs", "top1", "top1_prob"]).to_csv(f, index=False)
    return out.path(name), bad


def csv_stamp(out: Store, files: list[str], name: str = PREDICTIONS_CSV) -> dict | None:
    """What the CSV ``name`` was made of (a hash of the prediction files' names) and which version of it is on
    disk (its listing identity); None when there is none. ``_labels.json`` keeps it: a CSV whose stamp differs
    (other predictions, or a CSV edited, replaced or torn since) is written again."""
    if not out.exists(name):
        return None
    info = out.fs.info(out.path(name))
    return {"files": hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:16],
            "identity": file_identity(info)}


def activitynet_results(segments: pd.DataFrame, external: dict | None = None) -> dict:
    """The labelled segments (``segments.parquet`` rows; a stretch without a confident label is left out) in
    ActivityNet's result format, which its evaluation code and most temporal-localisation tools read:
    ``{"version", "results": {video: [{"label", "score", "segment": [start_s, end_s]}]}, "external_data"}``.
    Every video labelled is a key, with an empty list when none of its segments has a label."""
    results: dict[str, list[dict]] = {str(v): [] for v in segments["video_id"].unique()}
    labelled = segments[segments["label"].notna()].sort_values(["video_id", "start_s"], kind="stable")
    for row in labelled.itertuples(index=False):
        results[str(row.video_id)].append({"label": str(row.label), "score": round(float(row.score), 6),
                                           "segment": [round(float(row.start_s), 3), round(float(row.end_s), 3)]})
    return {"version": "VERSION 1.3", "results": results, "external_data": external or {}}


def write_label_manifest(out: Store, run: dict, **about: object) -> dict:
    """``_labels.json``: what the predictions are (``about``: model, key, options, features) and the last
    ``KEEP_RUNS`` runs' counts."""
    old = out.read_json(LABELS_MANIFEST) or {}
    manifest = {**about, "updated_at": datetime.now(timezone.utc).isoformat(),
                "runs": [*old.get("runs", [])[-(KEEP_RUNS - 1):], run]}
    out.write_json(LABELS_MANIFEST, manifest)
    return manifest
