"""The end of an index run: retire replaced rows, mark deleted videos, write the manifest.

New shards are written first (by the workers), old shards are rewritten after: a run killed in between leaves
at worst a duplicate row, which the next run's plan resolves (newest row wins). No step ever leaves a torn file.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from moclip.config import SCHEMA_VERSION, FeatureSettings
from moclip.dataset.incremental import IndexPlan
from moclip.dataset.schema import STATUS_DELETED, conform, rows_to_table
from moclip.dataset.storage import MANIFEST_NAME, Store

KEEP_ON_DELETE = ("video_id", "path", "label", "split", "group", "fingerprint", "file_size", "mtime_ns",
                  "settings_hash")


def rewrite_old_shards(store: Store, plan: IndexPlan) -> int:
    """Apply ``plan.drop`` and ``plan.mark_deleted`` to the shards they name; returns shards touched."""
    now = datetime.now(timezone.utc)
    touched = 0
    for shard in sorted(set(plan.drop) | set(plan.mark_deleted)):
        if not store.exists(shard):
            continue
        table = conform(store.read_table(shard))
        drop = plan.drop.get(shard, set())
        gone = plan.mark_deleted.get(shard, set())
        ids = table.column("video_id")
        keep = pc.invert(pc.is_in(ids, value_set=pa.array(sorted(drop | gone), pa.string())))
        kept = table.filter(keep)
        deleted_rows = [
            {**{k: r[k] for k in KEEP_ON_DELETE}, "status": STATUS_DELETED,
             "error": "file no longer in the corpus", "indexed_at": now}
            for r in table.filter(pc.is_in(ids, value_set=pa.array(sorted(gone), pa.string()))).to_pylist()
            if r["video_id"] not in drop
        ]
        if deleted_rows:
            kept = pa.concat_tables([kept, rows_to_table(deleted_rows)])
        if kept.num_rows:
            store.write_table(shard, kept)
        else:
            store.remove(shard)
        touched += 1
    return touched


def write_manifest(
    store: Store, *, settings: FeatureSettings, settings_hash: str, clip_weights_id: str, clip_random: bool,
    run_summary: dict, corpus: dict | None = None,
) -> dict:
    """Write the dataset's ``manifest.json``: its feature settings (read back with ``read_settings``), the CLIP
    weights id, the corpus spec, the shard list and the last 50 runs' summaries."""
    old = store.read_json(MANIFEST_NAME) or {}
    now = datetime.now(timezone.utc).isoformat()
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "settings": settings.to_dict(),
        "settings_hash": settings_hash,
        "clip_weights_id": clip_weights_id,
        "clip_random_init": clip_random,
        "corpus": corpus or old.get("corpus"),
        "created_at": old.get("created_at", now),
        "updated_at": now,
        "shards": store.shard_names(),
        "runs": [*old.get("runs", [])[-49:], run_summary],
    }
    store.write_json(MANIFEST_NAME, manifest)
    return manifest


def read_settings(manifest: dict) -> FeatureSettings:
    """The feature settings a manifest (or a bundle's ``features``) recorded, validated; fields that older
    versions did not record (e.g. ``max_frames``, ``activation``) get their defaults."""
    return FeatureSettings.model_validate(manifest["settings"])
