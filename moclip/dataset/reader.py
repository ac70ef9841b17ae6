"""Read an indexed dataset back: metadata as a DataFrame, features as dense arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip.dataset.schema import SCHEMA, STATUS_OK
from moclip.dataset.storage import MANIFEST_NAME, Store

FEATURE_COLUMNS = ("mv", "mv_shape", "mv_valid", "clip", "clip_shape", "frame_indices")


@dataclass
class FeatureSet:
    meta: pd.DataFrame  # one row per ok video: video_id, path, label, split, group, ...
    mv: np.ndarray  # float32 [N, T, 2, H, W]
    mv_valid: np.ndarray  # int32 [N, T]
    clip: np.ndarray  # float32 [N, K, D]


def read_manifest(url: str, storage_options: dict | None = None) -> dict | None:
    return Store(url, storage_options).read_json(MANIFEST_NAME)


def read_table(url: str, columns: list[str] | None = None, storage_options: dict | None = None) -> pa.Table:
    store = Store(url, storage_options)
    tables = [store.read_table(n, columns=columns) for n in store.shard_names()]
    if not tables:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    return pa.concat_tables(tables).sort_by("video_id")


def read_metadata(url: str, storage_options: dict | None = None) -> pd.DataFrame:
    """Every row (ok, failed, deleted) without the feature columns."""
    cols = [f.name for f in SCHEMA if f.name not in FEATURE_COLUMNS]
    return read_table(url, cols, storage_options).to_pandas()


def load_features(url: str, storage_options: dict | None = None) -> FeatureSet:
    table = read_table(url, storage_options=storage_options)
    table = table.filter(pa.compute.equal(table.column("status"), STATUS_OK))
    meta = table.drop_columns(list(FEATURE_COLUMNS)).to_pandas()
    n = table.num_rows
    if n == 0:
        empty = np.zeros((0,), np.float32)
        return FeatureSet(meta, empty, np.zeros((0,), np.int32), empty)
    mv_shape = _one_shape(table, "mv_shape")
    clip_shape = _one_shape(table, "clip_shape")
    mv = _dense(table.column("mv"), (n, *mv_shape))
    valid = _dense(table.column("mv_valid"), (n, mv_shape[0])).astype(np.int32)
    clip = _dense(table.column("clip"), (n, *clip_shape))
    return FeatureSet(meta, mv, valid, clip)


def _one_shape(table: pa.Table, column: str) -> tuple[int, ...]:
    shapes = {tuple(s) for s in table.column(column).to_pylist()}
    if len(shapes) != 1:
        raise ValueError(f"rows have different {column} values {sorted(shapes)}: mixed settings in one dataset")
    return shapes.pop()


def _dense(col: pa.ChunkedArray, shape: tuple[int, ...]) -> np.ndarray:
    flat = pa.concat_arrays([c.flatten() for c in col.chunks]).to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(shape)  # a writable copy (Arrow buffers are read-only)
