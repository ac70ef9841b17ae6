"""How well a timeline matches the truth: frame-level accuracy, segment F1 at an IoU threshold, boundary error.

Segments are ``(start_s, end_s, label)`` with ``label`` None for "no action" (truth) or "no confident label"
(predictions); both lists tile their video in time order. The measures are the usual ones of temporal action
segmentation (e.g. MS-TCN's F1@k and frame accuracy):

* **frame accuracy**: the share of frames whose predicted label equals the true one, over the frames whose true
  label is in ``labels`` (e.g. the action classes only);
* **segment F1 at IoU t**: a predicted segment with a label is a hit when it overlaps a true segment of the same
  label with intersection over union >= t, each true segment matched at most once (best IoU first);
* **boundary error**: for every boundary between two true segments, the distance to the nearest predicted
  boundary (seconds). One-sided: 80 tiny predicted segments put a boundary near every true one; so also
* **boundary precision and recall at a tolerance**: predicted and true boundaries matched one to one (closest
  pairs first) when within the tolerance; precision over the predicted boundaries, recall over the true ones.

And the measures of temporal action *localisation* (detection), over a whole set of videos: **mAP at a tIoU**
as ActivityNet's official evaluation computes it (predictions of a class ranked by score across videos, each
matched to the unmatched true segment of that class and video with the highest tIoU when that is at least the
threshold; the precision envelope integrated over recall; the mean over the classes with true segments), at the
usual thresholds: ``THUMOS14_TIOUS`` (0.3:0.1:0.7) and ``ACTIVITYNET_TIOUS`` (0.5:0.05:0.95).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

Seg = tuple[float, float, "str | None"]


def label_at(segments: Sequence[Seg], times: np.ndarray) -> list[str | None]:
    """The label of the segment holding each time (the last segment's end counts as inside it)."""
    ends = np.asarray([s[1] for s in segments], float)
    idx = np.minimum(np.searchsorted(ends, times, side="right"), len(segments) - 1)
    return [segments[i][2] for i in idx]


def frame_counts(truth: Sequence[Seg], pred: Sequence[Seg], fps: float, labels: Collection[str]) -> tuple[int, int]:
    """(frames right, frames counted) over the frames whose true label is in ``labels``; frame k is at k / fps."""
    n = int(round(truth[-1][1] * fps))
    times = (np.arange(n) + 0.5) / fps
    t, p = label_at(truth, times), label_at(pred, times)
    counted = [i for i in range(n) if t[i] in labels]
    return sum(p[i] == t[i] for i in counted), len(counted)


def iou(a: Seg, b: Seg) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def segment_hits(truth: Sequence[Seg], pred: Sequence[Seg], threshold: float = 0.5) -> tuple[int, int, int]:
    """(hits, labelled predicted segments, labelled true segments) at IoU ``threshold``."""
    t = [s for s in truth if s[2] is not None]
    p = [s for s in pred if s[2] is not None]
    pairs = sorted(((iou(a, b), i, j) for i, a in enumerate(p) for j, b in enumerate(t) if a[2] == b[2]),
                   reverse=True)
    used_p, used_t, hits = set(), set(), 0
    for v, i, j in pairs:
        if v >= threshold and i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            hits += 1
    return hits, len(p), len(t)


def f1(hits: int, n_pred: int, n_true: int) -> float:
    precision = hits / n_pred if n_pred else 0.0
    recall = hits / n_true if n_true else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def boundary_errors(truth: Sequence[Seg], pred: Sequence[Seg]) -> list[float]:
    """Seconds from each true boundary to the nearest predicted one (the video's end when there is none)."""
    ours = np.asarray([s[1] for s in pred[:-1]], float)
    if not len(ours):
        ours = np.asarray([pred[-1][1]], float)
    return [float(np.abs(ours - s[1]).min()) for s in truth[:-1]]


THUMOS14_TIOUS = (0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
Detection = tuple[float, float, str, float]  # start_s, end_s, label, score


def boundary_precision_recall(truth: Sequence[Seg], pred: Sequence[Seg], tolerance: float) -> tuple[int, int, int]:
    """(matched, predicted boundaries, true boundaries): boundaries between consecutive segments, matched one to
    one, closest pairs first, when at most ``tolerance`` seconds apart. Precision = matched / predicted, recall =
    matched / true (``f1`` makes the F-score of the three)."""
    ours, theirs = [s[1] for s in pred[:-1]], [s[1] for s in truth[:-1]]
    pairs = sorted((abs(a - b), i, j) for i, a in enumerate(ours) for j, b in enumerate(theirs)
                   if abs(a - b) <= tolerance)
    used_p, used_t = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    return len(used_p), len(ours), len(theirs)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (the best precision at this recall or above), as ActivityNet computes it."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(truth: dict[str, Sequence[Seg]], pred: dict[str, Sequence[Detection]], label: str,
                      tious: Sequence[float]) -> list[float]:
    """AP of class ``label`` at each tIoU threshold, over every video (``truth`` and ``pred`` by video id)."""
    gt = [(vid, s) for vid, segs in truth.items() for s in segs if s[2] == label]
    if not gt:
        return [float("nan")] * len(tious)
    by_video: dict[str, list[int]] = {}
    for k, (vid, _) in enumerate(gt):
        by_video.setdefault(vid, []).append(k)
    dets = sorted(((d[3], vid, d) for vid, ds in pred.items() for d in ds if d[2] == label),
                  key=lambda x: -x[0])  # stable: ties keep their order
    tp = np.zeros((len(tious), len(dets)))
    locked = np.full((len(tious), len(gt)), False)
    for n, (_, vid, d) in enumerate(dets):
        cand = by_video.get(vid, [])
        overlaps = np.asarray([iou(d, gt[k][1]) for k in cand])
        order = np.argsort(-overlaps, kind="stable")
        for t, thr in enumerate(tious):
            for o in order:
                if overlaps[o] < thr:
                    break
                if not locked[t, cand[o]]:
                    locked[t, cand[o]] = True
                    tp[t, n] = 1
                    break
    out = []
    for t in range(len(tious)):
        hits = np.cumsum(tp[t])
        seen = np.arange(1, len(dets) + 1)
        out.append(interpolated_ap(hits / seen, hits / len(gt)) if len(dets) else 0.0)
    return out


def mean_ap(truth: dict[str, Sequence[Seg]], pred: dict[str, Sequence[Detection]],
            tious: Sequence[float] = THUMOS14_TIOUS) -> dict[float, float]:
    """mAP at each tIoU: the mean over the classes that have true segments (a class only predicted costs precision
    nowhere: it has no AP to count, as in ActivityNet's evaluation)."""
    labels = sorted({s[2] for segs in truth.values() for s in segs if s[2] is not None})
    if not labels:
        return {t: float("nan") for t in tious}
    aps = np.asarray([average_precision(truth, pred, label, tious) for label in labels])
    return {t: float(v) for t, v in zip(tious, aps.mean(axis=0))}


def detections(segments: Sequence[dict]) -> list[Detection]:
    """The labelled segments of a timeline (``moclip.label.timeline`` rows) as detections for ``mean_ap``."""
    return [(float(s["start_s"]), float(s["end_s"]), s["label"], float(s["score"])) for s in segments
            if s["label"] is not None]
