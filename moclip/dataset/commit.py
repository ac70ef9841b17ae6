"""The end of an index run: retire replaced rows, mark deleted videos, write the manifest.

New shards are written first (by the workers), old shards are rewritten after: a run killed in between leaves
at worst a duplicate row, which the next run's plan resolves (newest row wins). No step ever leaves a torn file.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from moclip.config import SCHEMA_VERSION, FeatureSettings, recorded_schema, schema_problem
from moclip.dataset.incremental import IndexPlan
from moclip.dataset.schema import STATUS_DELETED, STATUS_OK, conform, rows_to_table
from moclip.dataset.storage import MANIFEST_NAME, Store

log = logging.getLogger(__name__)

DELETED_REASON = "file no longer in the corpus"
MISSING_REASON = "file missing: the corpus lists it, but it is not there"


def rewrite_old_shards(store: Store, plan: IndexPlan) -> int:
    """Apply ``plan.drop``, ``plan.mark_deleted``, ``plan.restore`` and ``plan.expire`` to the shards they name;
    returns shards touched. A row marked deleted keeps everything it had (a tombstone: ``indexed_at`` becomes the
    time of deletion) until it expires and loses its features; a restored tombstone is ``ok`` again, with the
    file's current path, size and mtime and a new ``indexed_at`` (so labelling predicts it again)."""
    now = datetime.now(timezone.utc)
    touched = 0
    for shard in sorted(set(plan.drop) | set(plan.mark_deleted) | set(plan.restore) | set(plan.expire)):
        if not store.exists(shard):
            continue
        table = conform(store.read_table(shard))
        drop = plan.drop.get(shard, set())
        gone = plan.mark_deleted.get(shard, set()) - drop
        back = plan.restore.get(shard, {})
        expire = plan.expire.get(shard, set()) - drop - set(back)
        ids = table.column("video_id")
        changed = sorted(drop | gone | set(back) | expire)
        kept = table.filter(pc.invert(pc.is_in(ids, value_set=pa.array(changed, pa.string()))))
        rows = []
        for r in table.filter(pc.is_in(ids, value_set=pa.array(sorted(gone | set(back) | expire),
                                                                  pa.string()))).to_pylist():
            vid = r["video_id"]
            if vid in gone:
                rows.append({**r, "status": STATUS_DELETED, "indexed_at": now,
                             "error": MISSING_REASON if vid in plan.missing else DELETED_REASON})
            elif vid in back:
                rows.append({**r, **back[vid], "status": STATUS_OK, "error": None, "indexed_at": now})
            else:  # an old tombstone: the bookkeeping stays, the features go
                rows.append({k: r[k] for k in KEEP_ON_EXPIRY})
        if rows:
            kept = pa.concat_tables([kept, rows_to_table(rows)])
        if kept.num_rows:
            store.write_table(shard, kept)
        else:
            store.remove(shard)
        touched += 1
    return touched


KEEP_ON_EXPIRY = ("video_id", "path", "label", "split", "group", "status", "error", "fingerprint", "file_size",
                  "mtime_ns", "settings_hash", "indexed_at")


KEEP_RUNS = 50  # run summaries in the manifest, and run detail files kept
RUNS_DIR = "_runs"  # one JSON file per run: its change lists and failures (pyarrow skips "_" folders)


def write_manifest(
    store: Store, *, settings: FeatureSettings, settings_hash: str, clip_weights_id: str, clip_random: bool,
    run_summary: dict, run_details: dict | None = None, run_id: str | None = None, corpus: dict | None = None,
) -> dict:
    """Write the dataset's ``_manifest.json``: its feature settings (read back with ``read_settings``), the CLIP
    weights id, the corpus spec, the shard list and the last ``KEEP_RUNS`` runs' summaries (counts: bounded in
    size however large the corpus and however many runs). A run's full record (``run_details``: every new,
    changed and deleted video id, every failure) goes to ``_runs/<run_id>.json``, named in its summary, written
    after the manifest (so a full disk costs the details, never the manifest); files of runs that left the
    history are removed."""
    old = store.read_json(MANIFEST_NAME) or {}
    if run_details is not None and run_id:
        run_summary = {**run_summary, "run_id": run_id, "details": f"{RUNS_DIR}/{run_id}.json"}
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
        "runs": [*old.get("runs", [])[-(KEEP_RUNS - 1):], run_summary],
    }
    store.write_json(MANIFEST_NAME, manifest)
    if run_details is not None and run_id:
        try:
            store.write_json(run_summary["details"], run_details)
        except OSError as e:  # e.g. the disk is full: the manifest is written; this run's lists are lost
            log.warning("%s: the run's details were not written (%s)", store.path(run_summary["details"]), e)
        kept = {r.get("details") for r in manifest["runs"]}
        for r in old.get("runs", []):
            if r.get("details") and r["details"] not in kept and store.exists(r["details"]):
                store.remove(r["details"])
    return manifest


def read_run_details(url: str, run: dict, storage_options: dict | None = None) -> dict | None:
    """The full record of a run (an entry of the manifest's ``runs``): change lists and failures; None when the
    run wrote none (older versions, or a full disk)."""
    name = run.get("details")
    return Store(url, storage_options).read_json(name) if name else None


class StaleFeatures(ValueError):
    """A dataset whose features an older moclip made, in another feature schema (``moclip.config.SCHEMA_VERSIONS``)."""


def check_schema(manifest: dict, where: str = "the dataset") -> None:
    """Refuse a manifest whose features are of another feature schema, saying how to make them new."""
    problem = schema_problem(recorded_schema(manifest.get("settings") or {}))
    if manifest.get("settings") and problem:
        raise StaleFeatures(f"{where}: indexed with {problem}: index it again with this moclip (`moclip index` on "
                            "the same --out re-indexes every video; so does a label run)")


def read_settings(manifest: dict, where: str = "the dataset") -> FeatureSettings:
    """The feature settings a manifest (or a bundle's ``features``) recorded, validated; fields that older
    versions did not record (e.g. ``max_frames``, ``activation``) get their defaults. Features of another schema:
    ``StaleFeatures``."""
    check_schema(manifest, where)
    return FeatureSettings.model_validate(manifest["settings"])


def whole_clip_settings(manifest: dict, where: str = "the dataset") -> tuple[FeatureSettings, str | None]:
    """A dataset's feature settings and settings hash as a model trained on it records them: a windowed dataset's
    windows are whole-clip inputs, so its settings without the window (and their hash)."""
    settings = read_settings(manifest, where)
    if settings.window.enabled:
        settings = settings.without_window()
        return settings, settings.settings_hash(manifest.get("clip_weights_id"))
    return settings, manifest.get("settings_hash")
