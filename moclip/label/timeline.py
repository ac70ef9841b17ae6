"""Labels over time for videos indexed with time windows: per-window predictions, and action segments.

A model trained on whole (trimmed) clips labels every window of a long video. Windows overlap, so each one
*owns* the stretch around its centre (from halfway to the previous window's centre to halfway to the next one's;
the first starts at 0, the last ends at the video's end): owned stretches tile the video. Segments are made by

1. smoothing each class's probability over ``smooth`` neighbouring windows (a centred moving average),
2. labelling each window with its best smoothed class, or with none (``label`` null: "no confident label") when
   that probability is below ``min_score``,
3. merging neighbouring windows with the same label; a segment's ``score`` is the mean of its windows' smoothed
   probability of its label (of the best class, for a stretch without a label).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip import zeroshot
from moclip.dataset import FeatureSet
from moclip.inference import Inputs, Predictor
from moclip.label.predict import extra_class_columns

WINDOWS_DIR = "windows.parquet"  # folders of one Parquet file per feature shard (read as one table)
SEGMENTS_DIR = "segments.parquet"
_TEXT, _NUMS, _TS = pa.list_(pa.string()), pa.list_(pa.float64()), pa.timestamp("ms", tz="UTC")
WINDOW_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("path", pa.string()), ("window_index", pa.int32()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("labels", _TEXT), ("probs", _NUMS), ("top1", pa.string()), ("top1_prob", pa.float64()),
    ("mv_missing", pa.bool_()), ("model", pa.string()), ("labeled_at", _TS),
])
SEGMENT_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("path", pa.string()), ("segment_index", pa.int32()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("label", pa.string()), ("score", pa.float64()), ("n_windows", pa.int32()),
    ("model", pa.string()), ("labeled_at", _TS),
])


def smooth(probs: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average over ``k`` windows (fewer at the ends), per class; ``k`` = 1: unchanged."""
    if k <= 1 or len(probs) <= 1:
        return probs
    c = np.cumsum(np.vstack([np.zeros((1, probs.shape[1])), probs]), axis=0)
    lo = np.maximum(np.arange(len(probs)) - k // 2, 0)
    hi = np.minimum(np.arange(len(probs)) + (k - 1) // 2 + 1, len(probs))
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def owned_spans(start_s: np.ndarray, end_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stretch of time each window owns (see the module docstring): they tile [start of first, end of last]."""
    centre = (start_s + end_s) / 2
    cut = (centre[:-1] + centre[1:]) / 2
    return np.concatenate([[start_s[0]], cut]), np.concatenate([cut, [end_s[-1]]])


def video_segments(start_s: np.ndarray, end_s: np.ndarray, probs: np.ndarray, classes: list[str],
                   min_score: float, smooth_k: int) -> list[dict]:
    """One video's segments (time order), from its windows' probabilities [n, C] (rows in time order)."""
    sp = smooth(probs, smooth_k)
    best = sp.argmax(axis=1)
    score = sp[np.arange(len(sp)), best]
    label = [classes[b] if s >= min_score else None for b, s in zip(best, score)]
    a, b = owned_spans(np.asarray(start_s, float), np.asarray(end_s, float))
    out: list[dict] = []
    i = 0
    while i < len(label):
        j = i
        while j + 1 < len(label) and label[j + 1] == label[i]:
            j += 1
        out.append({"segment_index": len(out), "start_s": float(a[i]), "end_s": float(b[j]), "label": label[i],
                    "score": float(score[i:j + 1].mean()), "n_windows": j - i + 1})
        i = j + 1
    return out


def predict_windows(predictor: Predictor, fs: FeatureSet, top_k: int, min_score: float, smooth_k: int,
                    extra_classes: list[str] | None = None, extra_text: np.ndarray | None = None,
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(per-video predictions in ``moclip.label.predict.schema``'s columns, windows, segments) for the windows of
    ``fs`` (``moclip.dataset.windows.window_features``). A video's probabilities are the mean of its windows'."""
    classes = list(predictor.classes)
    now = pd.Timestamp(datetime.now(timezone.utc)).floor("ms")
    if len(fs.meta) == 0:
        from moclip.label.predict import schema

        return (schema(bool(extra_classes)).empty_table().to_pandas(), WINDOW_SCHEMA.empty_table().to_pandas(),
                SEGMENT_SCHEMA.empty_table().to_pandas())
    x = Inputs.of(fs, predictor.device)
    probs = predictor.fusion_probs(x)
    missing = x.mv_missing.cpu().numpy()
    k = min(top_k, len(classes))
    meta = fs.meta.reset_index(drop=True)
    windows = pd.DataFrame({"video_id": meta["video_id"], "path": meta["path"],
                            "window_index": meta["window_index"].astype(np.int32), "start_s": meta["start_s"],
                            "end_s": meta["end_s"]})
    windows = pd.concat([windows, _top(probs, classes, k)], axis=1)
    windows["mv_missing"] = missing
    videos, segments = [], []
    for vid, idx in meta.groupby("video_id", sort=True).indices.items():
        idx = idx[np.argsort(meta["start_s"].to_numpy()[idx], kind="stable")]
        first = meta.iloc[idx[0]]
        for seg in video_segments(meta["start_s"].to_numpy()[idx], meta["end_s"].to_numpy()[idx], probs[idx],
                                  classes, min_score, smooth_k):
            segments.append({"video_id": vid, "path": first["path"], **seg})
        videos.append({"video_id": vid, "path": first["path"], "_probs": probs[idx].mean(axis=0),
                       "mv_missing": bool(missing[idx].all()), "_emb": zeroshot.video_embedding(fs.clip[idx]).mean(0),
                       "indexed_at": first.get("indexed_at")})
    per_video = pd.DataFrame(videos)
    top = _top(np.stack(per_video.pop("_probs")), classes, k)
    emb = np.stack(per_video.pop("_emb"))
    per_video = pd.concat([per_video[["video_id", "path"]], top, per_video[["mv_missing"]]], axis=1)
    if extra_classes:
        per_video = pd.concat([per_video, extra_class_columns(emb, predictor.text, extra_text, extra_classes,
                                                              top_k)], axis=1)
    per_video["model"] = predictor.model_id
    per_video["labeled_at"] = now
    per_video["indexed_at"] = [v["indexed_at"] for v in videos]
    windows["model"], windows["labeled_at"] = predictor.model_id, now
    seg = pd.DataFrame(segments, columns=[f.name for f in SEGMENT_SCHEMA][:8])
    seg["model"], seg["labeled_at"] = predictor.model_id, now
    return per_video, windows, seg


def _top(probs: np.ndarray, classes: list[str], k: int) -> pd.DataFrame:
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(probs, order, axis=1).astype(np.float64)
    names = np.asarray(classes, dtype=object)[order]
    return pd.DataFrame({"labels": list(names.tolist()), "probs": list(top.tolist()), "top1": names[:, 0],
                         "top1_prob": top[:, 0]})
