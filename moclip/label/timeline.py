"""Labels over time for videos indexed with time windows: per-window predictions, and action segments.

A model trained on whole (trimmed) clips labels every window of a long video. Segments are cut at the resolution
of the video's MV bins (window / T seconds: 0.5 s for 4 s windows), which overlapping windows share:

1. each bin's class probabilities are the mean of the windows holding it, then (``smooth`` > 1) a centred
   moving average over that many windows' worth of bins;
2. each bin gets its best class, or none (``label`` null: "no confident label") when that probability is below
   ``min_score``, or when nothing moves there: its motion (the 99th-percentile cell speed, in % of the frame
   size per second, averaged over ~0.5 s of bins with usable motion vectors) is below ``min_motion``. A model
   trained on action clips only knows actions: it calls a still stretch *some* action, often confidently;
   stillness is what motion vectors measure directly;
3. neighbouring bins with the same label merge into a segment; its ``score`` is the mean of its bins' probability
   of its label (of the best class, for a stretch without a label); segments tile [0, the video's end].

``windows.parquet`` keeps every window's own top-k and its ``motion`` (mean over its segments).
"""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip import zeroshot
from moclip.config import TimelineConfig
from moclip.dataset import FeatureSet
from moclip.inference import Inputs, Labeller
from moclip.label.predict import extra_class_columns, mv_source_columns, top_columns

WINDOWS_DIR = "windows.parquet"  # folders of one Parquet file per feature shard (read as one table)
SEGMENTS_DIR = "segments.parquet"
_TEXT, _NUMS, _TS = pa.list_(pa.string()), pa.list_(pa.float64()), pa.timestamp("ms", tz="UTC")
WINDOW_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("path", pa.string()), ("window_index", pa.int32()), ("start_s", pa.float64()),
    ("end_s", pa.float64()), ("labels", _TEXT), ("probs", _NUMS), ("top1", pa.string()), ("top1_prob", pa.float64()),
    ("mv_missing", pa.bool_()), ("motion", pa.float64()), ("model", pa.string()), ("labeled_at", _TS),
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


def segment_speed(mv: np.ndarray) -> np.ndarray:
    """[N, T, 2, H, W] MV tensors -> [N, T]: each segment's 99th-percentile cell speed (% of the frame size per
    second). A window's ``motion`` is its mean; segments cut stillness from it, bin by bin."""
    if len(mv) == 0:
        return np.zeros(mv.shape[:2])
    speed = np.sqrt((mv.astype(np.float64) ** 2).sum(axis=2)).reshape(mv.shape[0], mv.shape[1], -1)
    return np.percentile(speed, 99, axis=2)


def predict_windows(predictor: Labeller, fs: FeatureSet, top_k: int, cfg: TimelineConfig,
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
    probs = predictor.probs(x)
    missing = x.mv_missing.cpu().numpy()
    meta = fs.meta.reset_index(drop=True)
    windows = pd.DataFrame({"video_id": meta["video_id"], "path": meta["path"],
                            "window_index": meta["window_index"].astype(np.int32), "start_s": meta["start_s"],
                            "end_s": meta["end_s"]})
    windows = pd.concat([windows, top_columns(probs, classes, top_k)], axis=1)
    windows["mv_missing"] = missing
    speed = segment_speed(fs.mv)
    windows["motion"] = speed.mean(axis=1)
    videos, segments = [], []
    for vid, idx in meta.groupby("video_id", sort=True).indices.items():
        idx = idx[np.argsort(meta["start_s"].to_numpy()[idx], kind="stable")]
        first = meta.iloc[idx[0]]
        for seg in bin_segments(meta["start_s"].to_numpy()[idx], meta["end_s"].to_numpy()[idx], probs[idx],
                                speed[idx], fs.mv_valid[idx], float(first["window_bin_s"]), classes, cfg):
            segments.append({"video_id": vid, "path": first["path"], **seg})
        videos.append({"video_id": vid, "path": first["path"], "_probs": probs[idx].mean(axis=0),
                       "mv_missing": bool(missing[idx].all()), "_emb": zeroshot.video_embedding(fs.clip[idx]).mean(0),
                       "indexed_at": first.get("indexed_at")})
    per_video = pd.DataFrame(videos)
    top = top_columns(np.stack(per_video.pop("_probs")), classes, top_k)
    emb = np.stack(per_video.pop("_emb"))
    per_video = pd.concat([per_video[["video_id", "path"]], top, per_video[["mv_missing"]]], axis=1)
    firsts = meta.drop_duplicates("video_id").set_index("video_id").loc[per_video["video_id"]].reset_index()
    per_video["mv_source"], per_video["mv_source_unseen"] = mv_source_columns(firsts, predictor.mv_sources)
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


def bin_segments(start_s: np.ndarray, end_s: np.ndarray, probs: np.ndarray, speed: np.ndarray, valid: np.ndarray,
                 bin_s: float, classes: list[str], cfg: TimelineConfig) -> list[dict]:
    """One video's segments at the resolution of its MV bins (``bin_s`` seconds each), from its windows (time
    order): ``probs`` [n, C], their segments' speeds ``speed`` [n, T] (``segment_speed``) and ``valid`` [n, T]."""
    n, T = speed.shape
    first = np.rint(np.asarray(start_s) / bin_s).astype(np.int64)
    n_bins = int(first.max()) + T
    total, count = np.zeros((n_bins, probs.shape[1])), np.zeros(n_bins)
    bin_speed = np.full(n_bins, np.nan)
    for w in range(n):
        total[first[w]:first[w] + T] += probs[w]
        count[first[w]:first[w] + T] += 1
        ok = valid[w] > 0  # a bin without usable MV frames says nothing about motion
        bin_speed[first[w]:first[w] + T][ok] = speed[w][ok]
    bp = total / np.maximum(count, 1)[:, None]  # each bin: the mean of the windows holding it
    stride = int(np.median(np.diff(first))) if n > 1 else T
    bp = smooth(bp, (cfg.smooth - 1) * max(stride, 1) + 1)
    best = bp.argmax(axis=1)
    score = bp[np.arange(n_bins), best]
    still = _nanmean_run(bin_speed, max(1, round(0.5 / bin_s))) < cfg.min_motion  # over ~0.5 s; unknown: not still
    label = [classes[b] if s >= cfg.min_score and not q else None for b, s, q in zip(best, score, still)]
    end = float(np.max(end_s))
    out: list[dict] = []
    i = 0
    while i < n_bins and i * bin_s < end:
        j = i
        while j + 1 < n_bins and (j + 1) * bin_s < end and label[j + 1] == label[i]:
            j += 1
        out.append({"segment_index": len(out), "start_s": i * bin_s, "end_s": min((j + 1) * bin_s, end),
                    "label": label[i], "score": float(score[i:j + 1].mean())})
        i = j + 1
    out[-1]["end_s"] = end
    starts, ends = np.asarray(start_s), np.asarray(end_s)
    for seg in out:  # the windows that overlap it
        seg["n_windows"] = int(((starts < seg["end_s"]) & (ends > seg["start_s"])).sum())
    return out


def _nanmean_run(x: np.ndarray, k: int) -> np.ndarray:
    """Centred mean over ``k`` values (``smooth``'s window), ignoring NaN; +inf where all of them are NaN."""
    ok = ~np.isnan(x)
    num = smooth(np.where(ok, x, 0.0)[:, None], k)[:, 0]
    den = smooth(ok[:, None].astype(np.float64), k)[:, 0]
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.inf)
