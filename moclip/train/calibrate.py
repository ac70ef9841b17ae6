"""Calibrated probabilities: temperature scaling (Guo et al., 2017) fitted on validation, and how to measure it.

A classifier trained with label smoothing and early stopping is rarely calibrated: its softmax "0.6" need not be
right 60 % of the time. One temperature ``T`` per model, fitted on the validation split by minimising the negative
log-likelihood of ``softmax(logits / T)``, fixes most of that without changing any prediction (the arg-max is the
same for every ``T > 0``). ``ece`` and ``reliability`` measure it on the test split.
"""

from __future__ import annotations

import numpy as np
import torch

from moclip.models.run import softmax

T_MIN, T_MAX = 0.05, 20.0
N_BINS = 15


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes under ``softmax(logits / T)``."""
    if len(y) == 0:
        return float("nan")
    t = torch.from_numpy(logits.astype(np.float64)) / temperature
    return float(torch.nn.functional.cross_entropy(t, torch.from_numpy(y)))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The ``T`` in [T_MIN, T_MAX] that minimises the NLL of ``softmax(logits / T)`` on (``logits``, ``y``).

    1.0 when there is nothing to fit on. Optimised over log T (LBFGS, float64), so T stays positive.
    """
    if len(y) == 0 or logits.shape[1] < 2:
        return 1.0
    x = torch.from_numpy(logits.astype(np.float64))
    target = torch.from_numpy(y.astype(np.int64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not np.isfinite(t):
        return 1.0
    return float(np.clip(t, T_MIN, T_MAX))


def fit_on_val(logits: np.ndarray, y: np.ndarray) -> dict:
    """The temperature fitted on the validation split (``logits``, ``y``) and the validation NLL before (T = 1) and
    after it: what a bundle records per calibrated model."""
    t = fit_temperature(logits, y)
    return {"temperature": t, "fitted_on": "val", "n": len(y),
            "val_nll_before": nll(logits, y), "val_nll_after": nll(logits, y, t)}


def reliability(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> dict[str, list]:
    """Per confidence bin (equal width on the top-1 probability): mean confidence, accuracy and count."""
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == y) if len(probs) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    out: dict[str, list] = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        m = which == b
        n = int(m.sum())
        out["count"].append(n)
        out["confidence"].append(float(conf[m].mean()) if n else None)
        out["accuracy"].append(float(correct[m].mean()) if n else None)
    return out


def ece(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error: sum over bins of |accuracy - confidence| weighted by the bin's share."""
    if len(y) == 0:
        return float("nan")
    r = reliability(probs, y, n_bins)
    total = sum(r["count"])
    return float(sum(n / total * abs(a - c) for n, a, c in zip(r["count"], r["accuracy"], r["confidence"]) if n))


def calibration_summary(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict:
    """ECE, NLL and reliability bins of ``logits`` on (``y``) before (T = 1) and after temperature scaling."""
    before, after = softmax(logits), softmax(logits, temperature)
    return {"temperature": temperature,
            "ece_before": ece(before, y), "ece_after": ece(after, y),
            "nll_before": nll(logits, y), "nll_after": nll(logits, y, temperature),
            "reliability_before": reliability(before, y), "reliability_after": reliability(after, y)}
