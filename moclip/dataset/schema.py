"""The one row per video that every shard holds (pandas, pyarrow.dataset and duckdb read it as is).

Feature tensors are stored flat (``list<float>``) next to their shape, so any Parquet reader can load them;
``moclip.dataset.reader`` turns them back into arrays.
"""

from __future__ import annotations

import pyarrow as pa

from moclip.corpus.table import storable_text

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_DELETED = "deleted"

SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("path", pa.string()),
    pa.field("label", pa.string()),
    pa.field("split", pa.string()),
    pa.field("group", pa.string()),
    pa.field("status", pa.string(), nullable=False),  # ok | failed | deleted
    pa.field("error", pa.string()),
    pa.field("fingerprint", pa.string()),  # blake2b of the file content
    pa.field("file_size", pa.int64()),
    pa.field("mtime_ns", pa.int64()),
    pa.field("settings_hash", pa.string()),
    pa.field("codec", pa.string()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("fps", pa.float64()),
    pa.field("n_frames", pa.int32()),
    pa.field("duration_s", pa.float64()),
    pa.field("n_mv_frames", pa.int32()),  # frames that contributed motion vectors
    # where the MVs came from: "native" (the stream's own) or "reencoded" (moclip.video.reencode); null in shards
    # written before this column existed (native)
    pa.field("mv_source", pa.string()),
    # how the video is turned for display (its display matrix: "rotate 90 clockwise", "mirror left-right", ...;
    # with a note when the matrix is no quarter turn); null when upright, and in shards written before the column
    # existed. The MV tensor and the CLIP frames are of the displayed picture (moclip.video.orientation)
    pa.field("orientation", pa.string()),
    # whether the first frame is interlaced (two fields): its CLIP frames are deinterlaced, and H.264's MVs come
    # from a re-encode (moclip.video.pyav_reader); null in shards written before the column existed
    pa.field("interlaced", pa.bool_()),
    pa.field("mv", pa.list_(pa.float32())),  # T*2*H*W, % of the displayed frame per second (feature schema 2)
    pa.field("mv_shape", pa.list_(pa.int32())),  # [T, 2, H, W]
    pa.field("mv_valid", pa.list_(pa.int32())),  # [T] usable MV frames per segment
    pa.field("clip", pa.list_(pa.float32())),  # K*D image embeddings (not normalised)
    pa.field("clip_shape", pa.list_(pa.int32())),  # [K, D]
    pa.field("frame_indices", pa.list_(pa.int32())),  # [K] display-order frame index of each embedding
    # distinct decoded frames among the K embeddings: < K when the video had fewer decodable frames (the K slots
    # then repeat them); null in shards written before this column existed
    pa.field("n_clip_frames", pa.int32()),
    pa.field("clip_weights_id", pa.string()),
    # time windows (index --window; moclip.video.windows): then mv holds the video's bins [B, 2, H, W] and clip its
    # frame grid [F, D], and window w is bins first_bin[w] .. + n_bins and frames first_frame[w] .. + n_frames.
    # Null without windows (one window = the video, mv is [T, 2, H, W] and clip [K, D] as before).
    pa.field("window_start_s", pa.list_(pa.float64())),
    pa.field("window_end_s", pa.list_(pa.float64())),
    pa.field("window_first_bin", pa.list_(pa.int32())),
    pa.field("window_first_frame", pa.list_(pa.int32())),
    pa.field("window_n_bins", pa.int32()),
    pa.field("window_n_frames", pa.int32()),
    pa.field("window_bin_s", pa.float64()),
    pa.field("window_clock", pa.string()),  # pts | frame_index (broken timestamps) | whole_video (shorter)
    pa.field("indexed_at", pa.timestamp("ms", tz="UTC")),
    pa.field("elapsed_s", pa.float64()),  # decode + embed time spent on this video
])

# Columns a rerun reads to decide what to skip (cheap: no feature columns).
STATE_COLUMNS = [
    "video_id", "path", "status", "fingerprint", "file_size", "mtime_ns", "settings_hash", "indexed_at",
]


def conform(table: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """``table`` with the canonical schema's ``columns`` (default: all), in order; missing ones (a shard written
    before the column existed) as nulls."""
    names = columns if columns is not None else SCHEMA.names
    if table.schema.names == names:
        return table
    return pa.table({n: table.column(n) if n in table.schema.names else pa.nulls(table.num_rows, SCHEMA.field(n).type)
                     for n in names}, schema=pa.schema([SCHEMA.field(n) for n in names]))


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by column name; missing keys are null) -> a table with the canonical schema.

    Strings are made storable first: a path that is not valid UTF-8 is kept with ``\\xNN`` escapes.
    """
    columns = {f.name: [storable_text(r.get(f.name)) if pa.types.is_string(f.type) else r.get(f.name) for r in rows]
               for f in SCHEMA}
    return pa.Table.from_pydict(columns, schema=SCHEMA)
