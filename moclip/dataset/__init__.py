"""The Parquet feature dataset: one row per video, one file per shard, a manifest, incremental reruns."""

from moclip.dataset.commit import (
    StaleFeatures,
    check_schema,
    read_run_details,
    read_settings,
    rewrite_old_shards,
    whole_clip_settings,
    write_manifest,
)
from moclip.dataset.incremental import IndexPlan, fingerprint, plan_index, read_state
from moclip.dataset.reader import FeatureSet, feature_set, load_features, read_manifest, read_metadata, read_table
from moclip.dataset.schema import SCHEMA, STATUS_DELETED, STATUS_FAILED, STATUS_OK, rows_to_table
from moclip.dataset.storage import MANIFEST_NAME, Store

__all__ = [
    "MANIFEST_NAME", "SCHEMA", "STATUS_DELETED", "STATUS_FAILED", "STATUS_OK", "FeatureSet", "IndexPlan",
    "StaleFeatures", "Store", "check_schema", "feature_set", "fingerprint", "load_features", "plan_index",
    "read_manifest", "read_metadata", "read_run_details", "read_settings", "read_state", "read_table",
    "rewrite_old_shards", "rows_to_table", "whole_clip_settings", "write_manifest",
]
