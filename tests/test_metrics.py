"""Top-k, per-class accuracy and the confusion matrix on a hand-computed example."""

from __future__ import annotations

import math

import numpy as np

from moclip.train import metrics

# 4 videos, 3 classes. Rankings: v0 [2, 0, 1], v1 [0, 1, 2], v2 [1, 2, 0], v3 [2, 1, 0]
SCORES = np.array([[0.3, 0.1, 0.6], [0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.1, 0.3, 0.6]])
Y = np.array([0, 0, 2, 2])


def test_topk_by_hand():
    assert metrics.topk(SCORES, Y, 1) == 0.5  # v1 and v3 right
    assert metrics.topk(SCORES, Y, 2) == 1.0  # v0: 0 is second; v2: 2 is second
    assert metrics.topk(SCORES, Y, 5) == 1.0  # k > classes: all classes
    assert math.isnan(metrics.topk(SCORES[:0], Y[:0], 1))
    assert metrics.summary(SCORES, Y) == {"top1": 0.5, "top5": 1.0, "n": 4}


def test_ties_go_to_the_lower_class_index():
    tied = np.array([[0.5, 0.5, 0.0]])
    assert metrics.topk(tied, np.array([0]), 1) == 1.0 and metrics.topk(tied, np.array([1]), 1) == 0.0


def test_confusion_and_per_class_by_hand():
    pred = SCORES.argmax(1)  # [2, 0, 1, 2]
    cm = metrics.confusion(pred, Y, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 1]]  # rows: true, cols: predicted
    assert metrics.per_class_accuracy(pred, Y, 3) == [0.5, None, 0.5]  # class 1 has no test video
