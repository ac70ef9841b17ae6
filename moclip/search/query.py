"""Search a dataset: a query vector (text, or a video or a moment of one) against its catalog, then hits.

    query vector   --text: the dataset's own CLIP text tower (the one labelling uses, same cache);
                   --like VIDEO[@SECONDS]: the dataset's CLIP image encoder on the file's frames (the whole file
                   as indexing samples it, or a window's worth of frames around the moment)
    candidates     exact (a matrix product) up to EXACT_MAX items, else the approximate index; motion filters
                   (``min_motion``/``max_motion``, % of the frame per second) applied to items first
    ranges         a windowed dataset's candidate windows of one video grow into time ranges around their best
                   windows (neighbours within ``range_tolerance`` of it); the best ``ranges_per_video`` per video
    duplicates     near-identical videos (the same clip re-encoded or re-uploaded: the same direction of every
                   window, the same length) collapse into the best hit, with a count
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from moclip import zeroshot
from moclip.search.ann import AnnIndex, exact_search
from moclip.search.catalog import SearchError

RANGE_TOLERANCE = 0.02  # a range takes in neighbouring windows scoring within this (cosine) of its best one
DUPLICATE_COSINE = 0.985  # two videos' mean directions at least this close (and the same length) are one clip
DUPLICATE_MOTION = 0.9  # ... and their motion over time this alike (cosine of the mean motion vectors, in order)
STILL = 0.5  # a video moving less (its items' mean motion, % of the frame per second: the timelines' default
# --min-motion) is a still shot: the direction of its motion signature is noise
RESULT_COLUMNS = ["rank", "video_id", "path", "start_s", "end_s", "score", "motion", "duplicates", "duplicate_paths"]


def parse_like(value: str) -> tuple[str, float | None]:
    """``VIDEO`` or ``VIDEO@SECONDS`` -> (path, seconds or None). A path that itself contains ``@`` is kept whole
    when it exists as given."""
    path, sep, at = value.rpartition("@")
    if not sep or Path(value).exists():
        return value, None
    try:
        seconds = float(at)
    except ValueError:
        return value, None
    if seconds < 0:
        raise SearchError(f"{value}: the time must be >= 0 seconds")
    return path, seconds


@dataclass
class Hit:
    video_id: str
    path: str
    start_s: float
    end_s: float
    score: float
    motion: float


def candidates(vectors: np.ndarray, query: np.ndarray, k: int, allowed: np.ndarray | None = None,
               ann: AnnIndex | None = None, keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best items (row numbers, cosine scores; best first) among ``allowed`` (a bool mask; None: all).
    With ``ann`` (and the items' ``keys``): asked first, ``4 k`` when filtered; exact over the allowed rows when
    the filter leaves too few of its answers."""
    n = len(vectors)
    if n == 0 or k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    if ann is not None and keys is not None and len(ann):
        want = k if allowed is None else 4 * k
        got_keys, got_scores = ann.search(query[None, :].astype(np.float32), want)
        row_of = pd.Series(np.arange(n), index=keys.astype(np.uint64))
        rows = row_of.reindex(got_keys[0].astype(np.uint64)).to_numpy()
        ok = ~np.isnan(rows)
        rows, scores = rows[ok].astype(np.int64), got_scores[0][ok]
        if allowed is not None:
            keep = allowed[rows]
            rows, scores = rows[keep], scores[keep]
        if len(rows) >= min(k, int(allowed.sum()) if allowed is not None else n):
            return rows[:k], scores[:k]
    subset = np.flatnonzero(allowed) if allowed is not None else None
    pool = vectors if subset is None else vectors[subset]
    idx, scores = exact_search(pool, query[None, :].astype(np.float32), k)
    rows = idx[0] if subset is None else subset[idx[0]]
    return rows.astype(np.int64), scores[0]


def merge_ranges(items: pd.DataFrame, scores: np.ndarray, per_video: int = 3,
                 tolerance: float = RANGE_TOLERANCE) -> list[Hit]:
    """Candidate items (``ITEM_COLUMNS`` rows) with their scores -> hits. Per video, a range grows from its best
    window not yet in a range over the neighbouring windows (overlapping or touching) that score within
    ``tolerance`` of it; its score is that best window's, its motion the windows' mean; a window whose middle lies
    in a range already made starts none of its own. The best ``per_video``
    ranges of each video, best first. A whole-video item is its own range."""
    df = items.assign(hit_score=scores).sort_values(["video_id", "start_s"], kind="stable")
    hits: list[Hit] = []
    for vid, g in df.groupby("video_id", sort=False):
        start, end = g["start_s"].to_numpy(np.float64), g["end_s"].to_numpy(np.float64)
        sc, motion, path = g["hit_score"].to_numpy(np.float64), g["motion"].to_numpy(np.float64), str(g["path"].iloc[0])
        free = np.ones(len(g), bool)
        for _ in range(per_video):
            if not free.any():
                break
            peak = int(np.flatnonzero(free)[np.argmax(sc[free])])
            lo = hi = peak
            while lo > 0 and free[lo - 1] and start[lo] <= end[lo - 1] + 1e-6 and sc[lo - 1] >= sc[peak] - tolerance:
                lo -= 1
            while (hi + 1 < len(g) and free[hi + 1] and start[hi + 1] <= end[hi] + 1e-6
                   and sc[hi + 1] >= sc[peak] - tolerance):
                hi += 1
            r_start, r_end = float(start[lo]), float(end[lo:hi + 1].max())
            free[lo:hi + 1] = False
            free &= ~((start + end) / 2 >= r_start) | ~((start + end) / 2 <= r_end)  # no range inside another
            hits.append(Hit(str(vid), path, r_start, r_end, float(sc[peak]), float(motion[lo:hi + 1].mean())))
    return sorted(hits, key=lambda h: (-h.score, h.video_id, h.start_s))


def video_signatures(items: pd.DataFrame, vectors: np.ndarray, videos: list[str],
                     ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Each of ``videos``' mean direction (the unit mean of its items' vectors), its motion over time (its items'
    motion signatures one after the other, in time order) and its mean motion."""
    mask = items["video_id"].isin(videos).to_numpy()
    sub = items[mask].reset_index(drop=True)
    order = np.lexsort((sub["start_s"].to_numpy(), sub["video_id"].to_numpy()))
    vec = vectors[np.flatnonzero(mask)][order].astype(np.float32)
    sub = sub.iloc[order].reset_index(drop=True)
    out = {}
    for v, rows in sub.groupby("video_id", sort=False).indices.items():
        motion = sub["motion_signature"].to_numpy()[rows] if "motion_signature" in sub else []
        out[str(v)] = (zeroshot.normalize(vec[rows].mean(0)),
                       np.concatenate([np.asarray(m, np.float32) for m in motion]) if len(motion) else np.zeros(0),
                       float(sub["motion"].to_numpy()[rows].mean()))
    return out


def same_motion(a: np.ndarray, b: np.ndarray, motion_a: float, motion_b: float,
                threshold: float = DUPLICATE_MOTION) -> bool:
    """Whether two videos move alike: both still (mean motion below ``STILL``), or their motion signatures alike
    in direction over time (cosine >= ``threshold``)."""
    if max(motion_a, motion_b) < STILL:
        return True
    if a.shape != b.shape:
        return False
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return min(na, nb) > 0 and float(a @ b) / (na * nb) >= threshold


def collapse_duplicates(hits: list[Hit], items: pd.DataFrame, vectors: np.ndarray,
                        threshold: float = DUPLICATE_COSINE, top_k: int | None = None) -> list[tuple[Hit, list[str]]]:
    """Hits best first -> (hit, paths of its near-duplicates) with every near-duplicate of a better hit folded into
    it: another video whose mean direction is within ``threshold`` cosine, whose motion over time is the same
    (``same_motion``), whose length is the same (within 2 % or 0.5 s) and whose range starts at the same time
    (within the range's length). Stops once ``top_k`` hits are kept."""
    videos = sorted({h.video_id for h in hits})
    mine = items["video_id"].isin(videos).to_numpy()
    signatures = video_signatures(items[mine], vectors[mine], videos)
    length = items.loc[mine].groupby("video_id")["duration_s"].first().to_dict()
    kept: list[tuple[Hit, list[str]]] = []
    for h in hits:
        if top_k is not None and len(kept) >= top_k:
            break
        for k, dups in kept:
            if k.video_id == h.video_id:
                continue
            la, lb = float(length.get(k.video_id, 0)), float(length.get(h.video_id, 0))
            same_length = abs(la - lb) <= max(0.5, 0.02 * max(la, lb))
            same_time = abs(k.start_s - h.start_s) <= max(k.end_s - k.start_s, 0.5)
            (da, ma, sa), (db, mb, sb) = signatures[k.video_id], signatures[h.video_id]
            if same_length and same_time and float(da @ db) >= threshold and same_motion(ma, mb, sa, sb):
                dups.append(h.path)
                break
        else:
            kept.append((h, []))
    return kept


def search_items(items: pd.DataFrame, vectors: np.ndarray, query: np.ndarray, top_k: int = 20,
                 min_motion: float | None = None, max_motion: float | None = None, dedup: bool = True,
                 ranges_per_video: int = 3, ann: AnnIndex | None = None, pool: int | None = None,
                 range_tolerance: float = RANGE_TOLERANCE,
                 signatures: Callable[[np.ndarray], dict] | None = None) -> pd.DataFrame:
    """Hits (``RESULT_COLUMNS``) for a unit ``query`` vector over the catalog's ``items`` and ``vectors``;
    ``signatures``: item keys -> motion signatures, for items loaded without them (``Catalog.snapshot``)."""
    if top_k < 1:
        raise SearchError(f"top_k must be >= 1, got {top_k}")
    allowed = None
    if min_motion is not None or max_motion is not None:
        m = items["motion"].to_numpy(np.float64)
        allowed = np.ones(len(items), bool)
        if min_motion is not None:
            allowed &= m >= min_motion
        if max_motion is not None:
            allowed &= m <= max_motion
    # enough windows to make ranges, and spares for duplicates (fewer from the approximate index: its cost grows with
    # what it is asked for)
    k = pool or (max(10 * top_k, 100) if ann is not None else max(50 * top_k, 500))
    rows, scores = candidates(vectors, zeroshot.normalize(query), k, allowed, ann,
                              items["key"].to_numpy() if ann is not None else None)
    hits = merge_ranges(items.iloc[rows], scores, ranges_per_video, range_tolerance)
    if dedup:
        mine = items["video_id"].isin({h.video_id for h in hits}).to_numpy()  # the hits' videos only
        sub, sub_vectors = items[mine].reset_index(drop=True), vectors[mine]
        if "motion_signature" not in sub and signatures is not None:
            sig = signatures(sub["key"].to_numpy())
            sub = sub.assign(motion_signature=[sig.get(int(k), np.zeros(0, np.float32)) for k in sub["key"]])
        grouped = collapse_duplicates(hits, sub, sub_vectors, top_k=top_k)
    else:
        grouped = [(h, []) for h in hits]
    out = pd.DataFrame([{"video_id": h.video_id, "path": h.path, "start_s": h.start_s, "end_s": h.end_s,
                         "score": h.score, "motion": h.motion, "duplicates": len(d), "duplicate_paths": d}
                        for h, d in grouped[:top_k]], columns=RESULT_COLUMNS[1:])
    out.insert(0, "rank", np.arange(1, len(out) + 1, dtype=np.int32))
    return out
