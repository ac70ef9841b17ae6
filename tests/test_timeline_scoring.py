"""Timeline scores (moclip.label.scoring) and segments from window probabilities (moclip.label.timeline)."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.config import TimelineConfig
from moclip.label.scoring import boundary_errors, f1, frame_counts, iou, segment_hits
from moclip.label.timeline import bin_segments, segment_speed

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


SHARP = TimelineConfig(min_score=0.5, smooth=1)  # no smoothing: the tests see each rule alone


def _windows(moving_bins: list[int], n_bins: int = 6, per_window: int = 2, cells: int = 2):
    """Windows of ``per_window`` 1-s bins, one starting at every bin, and their segments' speeds
    (``segment_speed``): one cell moves at 1 %/frame in ``moving_bins``."""
    starts = np.arange(n_bins - per_window + 1, dtype=float)
    mv = np.zeros((len(starts), per_window, 2, cells, cells), np.float32)
    for w, s in enumerate(starts.astype(int)):
        for t in range(per_window):
            if s + t in moving_bins:
                mv[w, t, 0, 0, 0] = 1.0
    return starts, starts + per_window, segment_speed(mv), np.ones((len(starts), per_window), np.int32)


def test_bins_take_the_mean_of_their_windows_and_segments_tile_the_video():
    starts, ends, mv, valid = _windows(list(range(6)))
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]])  # windows 0-4 (bins w, w+1)
    segs = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], SHARP)
    # bin 2 is held by windows 1 (x) and 2 (y): 0.5 / 0.5, the first class wins the tie
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segs] == [(0, 3, "x"), (3, 6, "y")]
    assert segs[0]["score"] == pytest.approx((0.9 + 0.9 + 0.5) / 3)
    picky = SHARP.model_copy(update={"min_score": 0.6})
    unsure = bin_segments(starts, ends, np.full((5, 2), 0.5), mv, valid, 1.0, ["x", "y"], picky)
    assert [(s["start_s"], s["end_s"], s["label"]) for s in unsure] == [(0, 6, None)]
    # one window of y among x: overlapping windows already average it away; two need smoothing
    one = np.array([[0.9, 0.1]] * 2 + [[0.2, 0.8]] + [[0.9, 0.1]] * 2)
    assert [s["label"] for s in bin_segments(starts, ends, one, mv, valid, 1.0, ["x", "y"], SHARP)] == ["x"]
    two = np.array([[0.9, 0.1]] * 2 + [[0.2, 0.8]] * 2 + [[0.9, 0.1]])
    assert [s["label"] for s in bin_segments(starts, ends, two, mv, valid, 1.0, ["x", "y"], SHARP)] \
        == ["x", "y", "x"]
    smoothed = bin_segments(starts, ends, two, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_score=0.5, smooth=5))
    assert [s["label"] for s in smoothed] == ["x"]


def test_bins_without_motion_get_no_label_however_sure_the_model_is():
    starts, ends, mv, valid = _windows([0, 1, 4, 5])
    p = np.array([[0.95, 0.05]] * 5)  # sure of x everywhere
    assert mv[0].mean() == pytest.approx(np.percentile([1, 0, 0, 0], 99))  # window 0's motion (both bins move)
    segs = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0.05, smooth=1))
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segs] == [(0, 2, "x"), (2, 4, None), (4, 6, "x")]
    off = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0, smooth=1))
    assert [(s["start_s"], s["end_s"], s["label"]) for s in off] == [(0, 6, "x")]
    valid[:, :] = 0  # no usable MV frames anywhere: nothing is known to be still
    unknown = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0.05, smooth=1))
    assert [s["label"] for s in unknown] == ["x"]


def test_the_last_segment_ends_at_the_video_end():
    starts, ends, mv, valid = _windows(list(range(6)))
    ends = np.minimum(ends, 5.6)  # the last window was cut by the video's end
    segs = bin_segments(starts, ends, np.array([[0.9, 0.1]] * 5), mv, valid, 1.0, ["x", "y"], SHARP)
    assert segs[-1]["end_s"] == 5.6 and segs[0]["start_s"] == 0
