"""The time windows of a dataset indexed with ``--window``: one model input per window, built from its video's bins.

A windowed row stores its video once (``mv``: every MV bin, ``clip``: every grid frame's embedding) and where
each window's bins and frames start (``moclip.dataset.schema``); :func:`window_features` turns rows into the same
``FeatureSet`` a whole-video dataset gives, one entry per window, so every model and head takes windows as is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from moclip.dataset.reader import FEATURE_COLUMNS, FeatureSet, is_windowed

__all__ = ["is_windowed", "window_features"]

def _values(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A list column's flat values and per-row offsets into them (no Python floats)."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    offsets = arr.offsets.to_numpy()
    return arr.values.to_numpy(zero_copy_only=False), offsets


def window_features(table: pa.Table) -> FeatureSet:
    """One FeatureSet entry per window of every (ok, windowed) row of ``table``, ordered by video id then time.

    ``meta`` repeats the video's columns and adds ``window_index``, ``start_s``, ``end_s`` (and ``window_clock``).
    """
    missing = table.column("window_clock").null_count
    if missing:
        raise ValueError(f"{missing} rows have no time windows: a dataset indexed partly with --window and partly "
                         "without (index it again with one setting)")
    table = table.take(pc.sort_indices(table.column("video_id")))
    mv_flat, mv_off = _values(table.column("mv"))
    va_flat, va_off = _values(table.column("mv_valid"))
    cl_flat, cl_off = _values(table.column("clip"))
    small = table.select(["mv_shape", "clip_shape", "window_start_s", "window_end_s", "window_first_bin",
                          "window_first_frame", "window_n_bins", "window_n_frames"]).to_pylist()
    n_windows = [len(r["window_start_s"]) for r in small]
    total = sum(n_windows)
    if total == 0:
        return FeatureSet(pd.DataFrame(), np.zeros((0,), np.float32), np.zeros((0,), np.int32),
                          np.zeros((0,), np.float32))
    r0 = small[0]
    T, K = r0["window_n_bins"], r0["window_n_frames"]
    cell, d = tuple(r0["mv_shape"][1:]), r0["clip_shape"][1]
    mv = np.empty((total, T, *cell), np.float32)
    valid = np.empty((total, T), np.int32)
    clip = np.empty((total, K, d), np.float32)
    pos = 0
    for i, r in enumerate(small):
        if (r["window_n_bins"], r["window_n_frames"], tuple(r["mv_shape"][1:]), r["clip_shape"][1]) != (T, K, cell, d):
            raise ValueError(f"rows have different window layouts ({r['window_n_bins']} bins x {r['window_n_frames']} "
                             f"frames vs {T} x {K}): mixed settings in one dataset")
        bins = mv_flat[mv_off[i]:mv_off[i + 1]].reshape(r["mv_shape"])
        vals = va_flat[va_off[i]:va_off[i + 1]]
        emb = cl_flat[cl_off[i]:cl_off[i + 1]].reshape(r["clip_shape"])
        b_idx = np.asarray(r["window_first_bin"])[:, None] + np.arange(T)
        f_idx = np.minimum(np.asarray(r["window_first_frame"])[:, None] + np.arange(K), len(emb) - 1)
        n = n_windows[i]
        mv[pos:pos + n], valid[pos:pos + n], clip[pos:pos + n] = bins[b_idx], vals[b_idx], emb[f_idx]
        pos += n
    video = np.repeat(np.arange(table.num_rows), n_windows)
    drop = [c for c in FEATURE_COLUMNS if c in table.schema.names]
    meta = table.drop_columns(drop).take(pa.array(video)).to_pandas()
    meta["window_index"] = np.concatenate([np.arange(n) for n in n_windows]).astype(np.int32)
    meta["start_s"] = np.concatenate([r["window_start_s"] for r in small])
    meta["end_s"] = np.concatenate([r["window_end_s"] for r in small])
    return FeatureSet(meta, mv, valid, clip)
