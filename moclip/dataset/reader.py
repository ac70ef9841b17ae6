"""Read an indexed dataset back: metadata as a DataFrame, features as dense arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip.dataset.schema import SCHEMA, STATUS_OK, conform
from moclip.dataset.storage import MANIFEST_NAME, Store

FEATURE_COLUMNS = ("mv", "mv_shape", "mv_valid", "clip", "clip_shape", "frame_indices", "window_start_s",
                   "window_end_s", "window_first_bin", "window_first_frame")  # n_clip_frames stays in meta


@dataclass
class FeatureSet:
    meta: pd.DataFrame  # one row per ok video: video_id, path, label, split, group, ...
    mv: np.ndarray  # float32 [N, T, 2, H, W]
    mv_valid: np.ndarray  # int32 [N, T]
    clip: np.ndarray  # float32 [N, K, D]


def read_manifest(url: str, storage_options: dict | None = None) -> dict | None:
    return Store(url, storage_options).read_json(MANIFEST_NAME)


def _read_shards(url: str, columns: list[str] | None, storage_options: dict | None,
                 only_ok: bool = False) -> pa.Table:
    """All shards (read concurrently), unsorted."""
    # shards written before a column existed lack it: read what they have, the rest as nulls (conform)
    tables = [conform(t, columns) for _, t in Store(url, storage_options).read_shards(columns, missing_ok=True)]
    if only_ok:
        tables = [t.filter(pa.compute.equal(t.column("status"), STATUS_OK)) for t in tables]
    if not tables:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(columns)
    return pa.concat_tables(tables)


def read_table(url: str, columns: list[str] | None = None, storage_options: dict | None = None) -> pa.Table:
    return _read_shards(url, columns, storage_options).sort_by("video_id")


def read_metadata(url: str, storage_options: dict | None = None) -> pd.DataFrame:
    """Every row (ok, failed, deleted) without the feature columns."""
    cols = [f.name for f in SCHEMA if f.name not in FEATURE_COLUMNS]
    return read_table(url, cols, storage_options).to_pandas()


def load_features(url: str, storage_options: dict | None = None) -> FeatureSet:
    """Every ok row of the dataset, sorted by video id (all in memory: for training and small datasets; labelling
    an archive reads it shard by shard, ``moclip.label.worker``)."""
    return feature_set(_read_shards(url, None, storage_options, only_ok=True))


def mv_source_of(meta: pd.DataFrame) -> np.ndarray:
    """Each row's MV source ("native" or "reencoded"); rows written before the column existed: native."""
    if "mv_source" not in meta:
        return np.full(len(meta), "native", dtype=object)
    return meta["mv_source"].fillna("native").to_numpy(dtype=object)


def is_windowed(table: pa.Table) -> bool:
    """Whether any row of ``table`` was indexed with time windows (``moclip.dataset.windows``)."""
    return "window_clock" in table.schema.names and table.column("window_clock").null_count < table.num_rows


def feature_set(table: pa.Table) -> FeatureSet:
    """The rows of ``table`` (every column of the schema; ok rows only), sorted by video id, as dense arrays."""
    if is_windowed(table):
        raise ValueError("this dataset was indexed with time windows (--window): its rows are whole long videos, "
                         "not clips; train and evaluate on a dataset indexed without --window (label and "
                         "moclip.dataset.windows.window_features read windows)")
    # sorted by video_id; the big feature columns are reordered once, as dense arrays (not as Arrow lists)
    order = pa.compute.sort_indices(table.column("video_id")).to_numpy()
    meta = table.drop_columns(list(FEATURE_COLUMNS)).take(order).to_pandas()
    n = table.num_rows
    if n == 0:
        empty = np.zeros((0,), np.float32)
        return FeatureSet(meta, empty, np.zeros((0,), np.int32), empty)
    mv_shape = _one_shape(table, "mv_shape")
    mv = _dense(table.column("mv"), mv_shape, order)
    valid = _dense(table.column("mv_valid"), (mv_shape[0],), order, np.int32)
    clip_shapes = {tuple(s) for s in table.column("clip_shape").to_pylist()}
    if len(clip_shapes) == 1:
        clip = _dense(table.column("clip"), clip_shapes.pop(), order)
    else:
        clip = _padded_clip(table, clip_shapes, order)
    return FeatureSet(meta, mv, valid, clip)


def _padded_clip(table: pa.Table, shapes: set[tuple[int, ...]], order: np.ndarray) -> np.ndarray:
    """CLIP embeddings of rows with fewer than K frames (written before extraction padded them), padded to K by
    repeating their frames as extraction does now; rows of different embedding sizes are mixed settings."""
    from moclip.video.extract import pad_indices

    if len({s[1:] for s in shapes}) != 1:
        raise ValueError(f"rows have different clip_shape values {sorted(shapes)}: mixed settings in one dataset")
    k = max(s[0] for s in shapes)
    d = shapes.pop()[1:]
    out = np.empty((len(order), k, *d), np.float32)
    dest = np.empty(len(order), np.int64)
    dest[order] = np.arange(len(order))
    shapes = table.column("clip_shape").to_pylist()  # small: two ints a row
    row = 0
    for chunk in table.column("clip").chunks:  # each chunk's values as one array, sliced per row (no Python floats)
        flat = chunk.flatten().to_numpy(zero_copy_only=False)
        offsets = chunk.offsets.to_numpy()
        offsets = offsets - offsets[0]
        for j in range(len(chunk)):
            emb = flat[offsets[j]:offsets[j + 1]].reshape(shapes[row])
            out[dest[row]] = emb[pad_indices(list(range(shapes[row][0])), k)]
            row += 1
    return out


def _one_shape(table: pa.Table, column: str) -> tuple[int, ...]:
    shapes = {tuple(s) for s in table.column(column).to_pylist()}
    if len(shapes) != 1:
        raise ValueError(f"rows have different {column} values {sorted(shapes)}: mixed settings in one dataset")
    return shapes.pop()


def _dense(col: pa.ChunkedArray, shape: tuple[int, ...], order: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A list column as one writable array [n, *shape], row ``order[i]`` of the table at position ``i``.

    One copy straight from Arrow's buffers into place (no concatenated or sorted intermediate): loading is
    bound by Parquet decoding, not by reshuffling hundreds of MB.
    """
    n = len(order)
    out = np.empty((n, *shape), dtype)
    dest = np.empty(n, np.int64)
    dest[order] = np.arange(n)  # table row -> output row
    start = 0
    for chunk in col.chunks:
        m = len(chunk)
        if m:
            out[dest[start:start + m]] = chunk.flatten().to_numpy(zero_copy_only=False).reshape(m, *shape)
        start += m
    return out
