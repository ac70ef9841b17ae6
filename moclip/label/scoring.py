"""How well a timeline matches the truth: frame-level accuracy, segment F1 at an IoU threshold, boundary error.

Segments are ``(start_s, end_s, label)`` with ``label`` None for "no action" (truth) or "no confident label"
(predictions); both lists tile their video in time order. The measures are the usual ones of temporal action
segmentation (e.g. MS-TCN's F1@k and frame accuracy):

* **frame accuracy**: the share of frames whose predicted label equals the true one, over the frames whose true
  label is in ``labels`` (e.g. the action classes only);
* **segment F1 at IoU t**: a predicted segment with a label is a hit when it overlaps a true segment of the same
  label with intersection over union >= t, each true segment matched at most once (best IoU first);
* **boundary error**: for every boundary between two true segments, the distance to the nearest predicted
  boundary (seconds).
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
