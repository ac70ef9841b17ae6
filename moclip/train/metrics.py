"""Accuracy, top-k, per-class accuracy and confusion matrices from logits or scores."""

from __future__ import annotations

import numpy as np


def topk(scores: np.ndarray, y: np.ndarray, k: int) -> float:
    if len(y) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


def summary(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"top1": topk(scores, y, 1), "top5": topk(scores, y, 5), "n": int(len(y))}


def confusion(pred: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y, pred), 1)
    return m


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, n_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(n_classes):
        mask = y == c
        out.append(float((pred[mask] == c).mean()) if mask.any() else None)
    return out
