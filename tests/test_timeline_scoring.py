"""Timeline scores (moclip.label.scoring) and segments from window probabilities (moclip.label.timeline)."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.config import TimelineConfig
from moclip.label.scoring import (
    ACTIVITYNET_TIOUS,
    THUMOS14_TIOUS,
    average_precision,
    boundary_errors,
    boundary_precision_recall,
    f1,
    frame_counts,
    interpolated_ap,
    iou,
    mean_ap,
    segment_hits,
)
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


def test_boundary_precision_and_recall_see_what_the_one_sided_error_cannot():
    pred = [(0.0, 3.5, "a"), (3.5, 7.0, None), (7.0, 10.0, "b")]
    assert boundary_precision_recall(TRUTH, pred, 0.5) == (1, 2, 2)  # 3.5 matches 4; 7 is 1 s from 6
    assert boundary_precision_recall(TRUTH, pred, 1.0) == (2, 2, 2)
    # 80 tiny segments: every true boundary within a stride of one of theirs (error 0), but 79 predicted boundaries
    tiny = [(i / 8, (i + 1) / 8, "a" if i % 2 else "b") for i in range(80)]
    assert max(boundary_errors(TRUTH, tiny)) == 0.0
    matched, n_pred, n_true = boundary_precision_recall(TRUTH, tiny, 0.5)
    assert (matched, n_pred, n_true) == (2, 79, 2) and f1(matched, n_pred, n_true) == pytest.approx(2 * (2 / 79) /
                                                                                                  (2 / 79 + 1))


def test_map_is_activitynets_interpolated_average_precision():
    assert THUMOS14_TIOUS == (0.3, 0.4, 0.5, 0.6, 0.7) and ACTIVITYNET_TIOUS[0] == 0.5 and ACTIVITYNET_TIOUS[-1] == 0.95
    assert len(ACTIVITYNET_TIOUS) == 10
    truth = {"v1": [(0.0, 4.0, "a"), (4.0, 6.0, None), (6.0, 10.0, "b")], "v2": [(0.0, 10.0, "a")]}
    perfect = {"v1": [(0.0, 4.0, "a", 0.9), (6.0, 10.0, "b", 0.8)], "v2": [(0.0, 10.0, "a", 0.7)]}
    assert mean_ap(truth, perfect) == {t: 1.0 for t in THUMOS14_TIOUS}
    # a: a false alarm ranked first, then both hits: precision 1/2 at recall 1/2, 2/3 at recall 1; envelope 2/3
    ranked = {"v1": [(5.0, 9.0, "a", 0.95), (0.0, 4.0, "a", 0.9), (6.0, 10.0, "b", 0.8)], "v2": [(0.0, 10.0, "a", 0.7)]}
    assert average_precision(truth, ranked, "a", [0.5]) == [pytest.approx(2 / 3)]
    assert mean_ap(truth, ranked, [0.5]) == {0.5: pytest.approx((2 / 3 + 1) / 2)}
    # tIoU: 1-4 s against 0-4 s is 0.75: a hit at 0.5 and 0.7, a miss at 0.8
    shifted = {"v1": [(1.0, 4.0, "a", 0.9)]}
    assert average_precision(truth, shifted, "a", [0.5, 0.7, 0.8]) == [pytest.approx(0.5), pytest.approx(0.5), 0.0]
    # two detections of one true segment: the second is a false alarm; another video's segment is no match
    double = {"v1": [(0.0, 4.0, "a", 0.9), (0.0, 3.9, "a", 0.8)], "v3": [(0.0, 4.0, "a", 0.85)]}
    assert average_precision(truth, double, "a", [0.5]) == [pytest.approx(0.5)]
    # a class with no true segment has no AP (nan) and does not count in the mean
    assert np.isnan(average_precision(truth, perfect, "c", [0.5])[0])
    assert mean_ap(truth, {**perfect, "v2": [(0.0, 10.0, "a", 0.7), (0.0, 10.0, "c", 0.99)]}, [0.5]) == {0.5: 1.0}
    assert mean_ap(truth, {}, [0.5]) == {0.5: 0.0}
    assert interpolated_ap(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(
        0.5 * 1.0 + 0.5 * 2 / 3)


def test_segments_export_in_activitynet_result_format(tmp_path):
    import json

    import pandas as pd
    import pyarrow as pa

    from moclip.dataset import Store
    from moclip.label.export import ACTIVITYNET_JSON, activitynet_results
    from moclip.label.timeline import SEGMENTS_DIR

    segments = pd.DataFrame({"video_id": ["b.mp4", "a.mp4", "a.mp4", "a.mp4", "c.mp4"],
                             "start_s": [0.0, 4.0, 0.0, 6.0, 0.0], "end_s": [10.0, 6.0, 4.0, 10.0, 3.0],
                             "label": ["up", None, "left", "right", None], "score": [0.5, 0.4, 0.9, 0.81234567, 0.2]})
    got = activitynet_results(segments)
    assert got == {"version": "VERSION 1.3", "external_data": {}, "results": {
        "a.mp4": [{"label": "left", "score": 0.9, "segment": [0.0, 4.0]},
                  {"label": "right", "score": 0.812346, "segment": [6.0, 10.0]}],
        "b.mp4": [{"label": "up", "score": 0.5, "segment": [0.0, 10.0]}],
        "c.mp4": []}}
    # it scores as the detections it holds
    truth = {"a.mp4": [(0.0, 4.0, "left"), (6.0, 10.0, "right")], "b.mp4": [(0.0, 10.0, "up")]}
    dets = {v: [(*d["segment"], d["label"], d["score"]) for d in ds] for v, ds in got["results"].items()}
    assert mean_ap(truth, dets, [0.5]) == {0.5: 1.0}
    # written beside segments.parquet by the timelines step
    from moclip.report.timeline_page import write_timeline_page

    out = Store(str(tmp_path))
    out.write_table(f"{SEGMENTS_DIR}/part-1.a.b.parquet", pa.Table.from_pandas(
        segments.assign(segment_index=range(5), n_windows=1), preserve_index=False))
    windows = pd.DataFrame({"video_id": ["a.mp4"], "start_s": [0.0], "end_s": [4.0], "top1_prob": [0.9]})
    out.write_table("windows.parquet/part-1.a.b.parquet", pa.Table.from_pandas(windows))
    write_timeline_page(out, ["left", "right", "up"])
    assert json.loads((tmp_path / ACTIVITYNET_JSON).read_text())["results"]["a.mp4"] == got["results"]["a.mp4"]


SHARP = TimelineConfig(min_score=0.5, smooth=1)  # no smoothing: the tests see each rule alone


def _windows(moving_bins: list[int], n_bins: int = 6, per_window: int = 2, cells: int = 2):
    """Windows of ``per_window`` 1-s bins, one starting at every bin, and their segments' speeds
    (``segment_speed``): one cell moves at 1 %/s in ``moving_bins``."""
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
    segs = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0.5, smooth=1))
    assert [(s["start_s"], s["end_s"], s["label"]) for s in segs] == [(0, 2, "x"), (2, 4, None), (4, 6, "x")]
    off = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0, smooth=1))
    assert [(s["start_s"], s["end_s"], s["label"]) for s in off] == [(0, 6, "x")]
    valid[:, :] = 0  # no usable MV frames anywhere: nothing is known to be still
    unknown = bin_segments(starts, ends, p, mv, valid, 1.0, ["x", "y"], TimelineConfig(min_motion=0.5, smooth=1))
    assert [s["label"] for s in unknown] == ["x"]


def test_the_last_segment_ends_at_the_video_end():
    starts, ends, mv, valid = _windows(list(range(6)))
    ends = np.minimum(ends, 5.6)  # the last window was cut by the video's end
    segs = bin_segments(starts, ends, np.array([[0.9, 0.1]] * 5), mv, valid, 1.0, ["x", "y"], SHARP)
    assert segs[-1]["end_s"] == 5.6 and segs[0]["start_s"] == 0
