"""Temperature scaling and calibration error: recovered temperatures, hand-computed ECE, reliability bins."""

from __future__ import annotations

import numpy as np
import pytest

from moclip.train import calibrate


def _sampled(n: int, true_t: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / true_t): calibrated exactly at T = true_t."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 6))
    p = calibrate.softmax(logits, true_t).astype(np.float64)
    y = np.array([rng.choice(6, p=row / row.sum()) for row in p])
    return logits, y


@pytest.mark.parametrize("true_t", [0.5, 1.0, 2.5])
def test_fitted_temperature_recovers_the_true_one(true_t):
    logits, y = _sampled(4000, true_t)
    t = calibrate.fit_temperature(logits, y)
    assert abs(t - true_t) / true_t < 0.1, t
    assert calibrate.nll(logits, y, t) <= calibrate.nll(logits, y, 1.0) + 1e-9
    # calibrating fixes the gap the wrong temperature leaves
    assert calibrate.ece(calibrate.softmax(logits, t), y) <= calibrate.ece(calibrate.softmax(logits), y) + 0.01


def test_temperature_keeps_every_prediction():
    logits, y = _sampled(500, 3.0)
    t = calibrate.fit_temperature(logits, y)
    assert (calibrate.softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_nothing_to_fit_is_temperature_one():
    assert calibrate.fit_temperature(np.zeros((0, 3)), np.zeros(0, np.int64)) == 1.0
    assert calibrate.fit_temperature(np.zeros((5, 1)), np.zeros(5, np.int64)) == 1.0
    t = calibrate.fit_temperature(np.array([[10.0, 0.0]] * 20), np.zeros(20, np.int64))  # always right: sharpen
    assert calibrate.T_MIN <= t < 1.0


def test_ece_and_reliability_by_hand():
    # top-1 confidences 0.9, 0.9, 0.6, 0.6 (bins 13 and 9 of 15); right, wrong, right, right
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    r = calibrate.reliability(probs, y)
    assert sum(r["count"]) == 4 and r["count"][13] == 2 and r["count"][8] == 2
    assert r["accuracy"][13] == 0.5 and r["confidence"][13] == pytest.approx(0.9)
    assert r["accuracy"][8] == 1.0 and r["confidence"][8] == pytest.approx(0.6)
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.6| = 0.4
    assert calibrate.ece(probs, y) == pytest.approx(0.4)


def test_calibration_summary_fields():
    logits, y = _sampled(300, 2.0, seed=3)
    s = calibrate.calibration_summary(logits, y, 2.0)
    assert s["temperature"] == 2.0 and s["nll_after"] < s["nll_before"]
    assert len(s["reliability_before"]["count"]) == calibrate.N_BINS


def test_fit_on_val_is_what_a_bundle_records():
    logits, y = _sampled(300, 2.0, seed=4)
    s = calibrate.fit_on_val(logits, y)
    t = calibrate.fit_temperature(logits, y)
    assert s == {"temperature": t, "fitted_on": "val", "n": 300, "val_nll_before": calibrate.nll(logits, y),
                 "val_nll_after": calibrate.nll(logits, y, t)}
    assert s["val_nll_after"] <= s["val_nll_before"] + 1e-9
