"""Timeline scores (moclip.label.scoring) and segments from window probabilities (moclip.label.timeline)."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.label.scoring import boundary_errors, f1, frame_counts, iou, segment_hits
from moclip.label.timeline import owned_spans, smooth, video_segments

TRUTH = [(0.0, 4.0, "a"), (4.0, 6.0, None), (6.0, 10.0, "b")]


def test_frame_accuracy_counts_only_the_chosen_labels():
    pred = [(0.0, 5.0, "a"), (5.0, 8.0, "b"), (8.0, 10.0, "a")]
    right, n = frame_counts(TRUTH, pred, fps=10, labels={"a", "b"})
    assert n == 80 and right == 40 + 20  # a: all 40 frames; b: 6-8 s right, 8-10 s wrong
    assert frame_counts(TRUTH, pred, fps=10, labels={None}) == (0, 20)  # the still is called a and b


def test_segment_f1_at_iou_half():
    assert iou((0, 4, "a"), (2, 6, "a")) == pytest.approx(1 / 3)
    pred = [(0.0, 3.0, "a"), (3.0, 7.0, "b"), (7.0, 10.0, "b")]
    # a: IoU 0.75 hit; b: (3-7) IoU 1/7, (7-10) IoU 0.75: one hit; each true segment matched once
    assert segment_hits(TRUTH, pred) == (2, 3, 2)
    assert f1(2, 3, 2) == pytest.approx(0.8)
    assert segment_hits(TRUTH, [(0.0, 10.0, "a")]) == (0, 1, 2)  # IoU 0.4
    assert f1(0, 0, 2) == 0.0


def test_boundary_error_is_the_nearest_predicted_boundary():
    pred = [(0.0, 3.5, "a"), (3.5, 7.0, None), (7.0, 10.0, "b")]
    assert boundary_errors(TRUTH, pred) == [0.5, 1.0]
    assert boundary_errors(TRUTH, [(0.0, 10.0, "a")]) == [6.0, 4.0]


def test_smoothing_and_merging_windows_into_segments():
    starts = np.arange(0, 9, 1.0)
    ends = starts + 2  # 2 s windows every 1 s over 10 s
    a, b = owned_spans(starts, ends)
    assert a[0] == 0 and b[-1] == 10 and (a[1:] == b[:-1]).all() and a[1] == 1.5
    p = np.array([[0.9, 0.1]] * 4 + [[0.2, 0.8]] + [[0.9, 0.1]] + [[0.1, 0.9]] * 3)
    sm = smooth(p, 3)
    assert sm[0] == pytest.approx([0.9, 0.1]) and sm[4] == pytest.approx([(0.9 + 0.2 + 0.9) / 3, (0.1 + 0.8 + 0.1) / 3])
    segs = video_segments(starts, ends, p, ["x", "y"], min_score=0.5, smooth_k=1)
    assert [s["label"] for s in segs] == ["x", "y", "x", "y"]
    segs = video_segments(starts, ends, p, ["x", "y"], min_score=0.5, smooth_k=3)  # the one-window blip is gone
    assert [(s["label"], s["n_windows"]) for s in segs] == [("x", 5), ("y", 4)]  # window 5 leans to its right
    assert segs[0]["start_s"] == 0 and segs[0]["end_s"] == segs[1]["start_s"] == 5.5 and segs[1]["end_s"] == 10
    unsure = video_segments(starts, ends, np.full((9, 2), 0.5), ["x", "y"], min_score=0.6, smooth_k=1)
    assert [(s["label"], s["start_s"], s["end_s"]) for s in unsure] == [(None, 0.0, 10.0)]
