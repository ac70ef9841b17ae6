"""Figures for the evaluation report, rendered to PNG bytes.

Uses matplotlib's object API on an explicit Agg canvas: pyplot is never imported, so no display is needed and no
global backend state is touched. Every figure is sized by the number of classes so that 101 classes stay readable.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from moclip.train.results import CalibrationSummary, Curve, EvaluationResults

DPI = 100
PER_CLASS_FILE = "per_class.png"
CONFUSION_FILE = "confusion.png"
CURVES_FILE = "curves.png"
RELIABILITY_FILE = "reliability.png"
PLOT_FILES = (PER_CLASS_FILE, CONFUSION_FILE, CURVES_FILE, RELIABILITY_FILE)

# (field of results.per_class, legend label, colour); fusion first: it is the sort key.
PER_CLASS_METHODS = (
    ("fusion", "Fusion", "tab:blue"),
    ("mv_only", "MV-only", "tab:orange"),
    ("clip_linear_probe", "CLIP linear probe", "tab:green"),
)
# (field of results.curves, subplot title)
CURVE_MODELS = (("mv_net", "MV net"), ("fusion", "Fusion head"), ("clip_linear_probe", "CLIP linear probe"))
# (field of results.calibration.methods, subplot title)
CALIBRATED_MODELS = (("fusion", "Fusion"), ("mv_only", "MV-only"), ("clip_linear_probe", "CLIP linear probe"))
MAX_LABELLED_CLASSES = 30  # confusion matrix tick labels up to this many classes
MAX_ANNOTATED_CLASSES = 12  # confusion matrix cell values up to this many classes


@dataclass
class PlotSet:
    """Rendered figures: file name -> PNG bytes, and file name -> error text for figures that failed."""

    png: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def finite(x: Any) -> float | None:
    """``x`` as a float when it is a finite real number (bools excluded), else None."""
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _floats(xs: Sequence[float | None]) -> np.ndarray:
    """``xs`` as a float array, NaN where a value is None or not finite."""
    return np.array([np.nan if finite(v) is None else finite(v) for v in xs], dtype=float)


def class_names(results: EvaluationResults) -> list[str]:
    return list(results.dataset.classes)


def per_class_series(results: EvaluationResults) -> dict[str, np.ndarray]:
    """Per-class accuracies (fractions, NaN where missing) for the methods whose list matches the class list."""
    n = len(class_names(results))
    out: dict[str, np.ndarray] = {}
    for key, _, _ in PER_CLASS_METHODS:
        v = _floats(getattr(results.per_class, key))
        if n and len(v) == n and np.isfinite(v).any():
            out[key] = v
    return out


def confusion_matrix(results: EvaluationResults) -> np.ndarray | None:
    """The fusion confusion matrix (rows = true, cols = predicted) as float counts, or None if empty / not square."""
    raw = results.confusion.fusion
    if len(raw) == 0:
        return None
    cm = np.array(raw, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() <= 0:
        return None
    return cm


def curve_entries(results: EvaluationResults) -> list[tuple[str, str, Curve]]:
    """(key, title, curve) for every model with a non-empty train_loss or val_top1 history."""
    out = []
    for key, title in CURVE_MODELS:
        c = getattr(results.curves, key)
        if len(c.train_loss) or len(c.val_top1):
            out.append((key, title, c))
    return out


def best_epoch(curve: Curve) -> int | None:
    """The 0-based best epoch if it indexes into the recorded history, else None."""
    n = max(len(curve.train_loss), len(curve.val_top1))
    return curve.best_epoch if 0 <= curve.best_epoch < n else None


def calibration_entries(results: EvaluationResults) -> list[tuple[str, str, CalibrationSummary]]:
    """(key, title, calibration summary) for every model with reliability bins before and after scaling."""
    out = []
    for key, title in CALIBRATED_MODELS:
        c = getattr(results.calibration.methods, key)
        if c is not None and c.reliability_before.count and c.reliability_after.count:
            out.append((key, title, c))
    return out


def available_plots(results: EvaluationResults) -> list[str]:
    """File names of the figures the results have data for, in report order (cheap: renders nothing)."""
    names = []
    if per_class_series(results):
        names.append(PER_CLASS_FILE)
    if confusion_matrix(results) is not None:
        names.append(CONFUSION_FILE)
    if curve_entries(results):
        names.append(CURVES_FILE)
    if calibration_entries(results):
        names.append(RELIABILITY_FILE)
    return names


def _tex_safe(s: str) -> str:
    return s.replace("$", r"\$")  # a pair of '$' in a class name would otherwise switch on mathtext


def _row_of_axes(k: int, width: float, height: float) -> tuple[Figure, list]:
    """A figure of ``k`` subplots side by side, each ``width`` x ``height`` inches."""
    fig = Figure(figsize=(width * k, height))
    return fig, list(fig.subplots(1, k, squeeze=False)[0])


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


def per_class_png(results: EvaluationResults) -> bytes | None:
    """Horizontal grouped bars, one group per class, sorted by fusion accuracy (best at the top)."""
    series = per_class_series(results)
    if not series:
        return None
    classes = class_names(results)
    n, m = len(classes), len(series)
    methods = [(k, lab, col) for k, lab, col in PER_CLASS_METHODS if k in series]
    sort_key, sort_label = methods[0][0], methods[0][1]
    order = np.argsort(np.nan_to_num(series[sort_key], nan=-1.0), kind="stable")  # ascending: bottom -> top
    big = n > MAX_LABELLED_CLASSES
    fs = 6 if big else 8
    fig = Figure(figsize=(8.0, max(2.8, 1.4 + n * (0.1 + 0.03 * m))))
    ax = fig.add_subplot()
    y = np.arange(n)
    h = 0.8 / m
    for i, (key, label, colour) in enumerate(methods):
        v = series[key][order] * 100.0
        mean = float(np.nanmean(series[key])) * 100.0
        ax.barh(y + (m - 1 - 2 * i) * h / 2, v, height=h, color=colour,
                label=f"{label} (mean over classes {mean:.1f} %)")
    ax.set_yticks(y)
    ax.set_yticklabels([_tex_safe(classes[j]) for j in order], fontsize=fs)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, 100)
    ax.set_xlabel("test accuracy (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    if big:
        ax.tick_params(axis="x", top=True, labeltop=True)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"Per-class test accuracy, {n} classes, sorted by {sort_label}", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)  # outside: never on a bar
    return _png(fig)


def confusion_png(results: EvaluationResults) -> bytes | None:
    """Row-normalised fusion confusion matrix; class tick labels only up to MAX_LABELLED_CLASSES classes."""
    cm = confusion_matrix(results)
    if cm is None:
        return None
    classes = class_names(results)
    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    norm = cm / np.where(rows > 0, rows, 1.0)
    labelled = n <= MAX_LABELLED_CLASSES and len(classes) == n
    side = min(11.0, max(4.5, 2.5 + 0.28 * n)) if n <= MAX_LABELLED_CLASSES else 10.0
    fig = Figure(figsize=(side + 1.3, side))
    ax = fig.add_subplot()
    im = ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues", interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label("fraction of the true class", fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    if labelled:
        fs = 8 if n <= 15 else 6
        ax.set_xticks(range(n))
        ax.set_xticklabels([_tex_safe(c) for c in classes], rotation=90, fontsize=fs)
        ax.set_yticks(range(n))
        ax.set_yticklabels([_tex_safe(c) for c in classes], fontsize=fs)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j] * 100:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    order_note = "" if labelled else " (classes in dataset order)"
    ax.set_xlabel("predicted class" + order_note, fontsize=8)
    ax.set_ylabel("true class" + order_note, fontsize=8)
    acc = float(np.trace(cm) / cm.sum()) * 100.0
    ax.set_title(f"Fusion confusion matrix, row-normalised\n{n} classes, {int(cm.sum())} test videos, "
                 f"top-1 {acc:.1f} %", fontsize=9)
    return _png(fig)


def curves_png(results: EvaluationResults) -> bytes | None:
    """One subplot per model: train loss (left axis) and val top-1 (right axis) per epoch, best epoch marked."""
    entries = curve_entries(results)
    if not entries:
        return None
    fig, axes = _row_of_axes(len(entries), 4.4, 3.3)
    for ax, (_, title, curve) in zip(axes, entries):
        loss = _floats(curve.train_loss)
        val = _floats(curve.val_top1) * 100.0
        handles = []
        if len(loss):
            handles += ax.plot(np.arange(1, len(loss) + 1), loss, color="tab:blue", marker=".", ms=3,
                               lw=1.2, label="train loss")
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("train loss", fontsize=8, color="tab:blue")
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax2 = ax.twinx()
        if len(val):
            handles += ax2.plot(np.arange(1, len(val) + 1), val, color="tab:orange", marker=".", ms=3, lw=1.2,
                                label="val top-1 %")
        ax2.set_ylim(0, 100)
        ax2.set_ylabel("val top-1 (%)", fontsize=8, color="tab:orange")
        ax2.tick_params(labelsize=7)
        be = best_epoch(curve)
        if be is not None:
            ax.axvline(be + 1, color="tab:red", ls=":", lw=1)
            if be < len(val) and np.isfinite(val[be]):
                handles += ax2.plot([be + 1], [val[be]], marker="*", ms=11, color="tab:red", ls="none",
                                    label=f"best epoch {be + 1} ({val[be]:.1f} %)")
            else:
                handles.append(ax.axvline(be + 1, color="tab:red", ls=":", lw=1, label=f"best epoch {be + 1}"))
        n = max(len(loss), len(val))
        ax.set_xlim(0.5, n + 0.5)
        ax.set_title(title, fontsize=9)
        if handles:  # below the axes, so it never hides a curve
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=7,
                      frameon=False)
    fig.tight_layout()
    return _png(fig)


def reliability_png(results: EvaluationResults) -> bytes | None:
    """Reliability diagram per calibrated model: accuracy vs confidence per bin, before and after temperature
    scaling (marker area ~ videos in the bin); the diagonal is perfect calibration."""
    entries = calibration_entries(results)
    if not entries:
        return None
    fig, axes = _row_of_axes(len(entries), 3.6, 3.6)
    for ax, (_, title, c) in zip(axes, entries):
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfectly calibrated")
        for which, colour, name in (("before", "tab:red", "before (T = 1)"), ("after", "tab:blue", "after")):
            r = c.reliability_before if which == "before" else c.reliability_after
            conf, acc, count = _floats(r.confidence), _floats(r.accuracy), _floats(r.count)
            ok = np.isfinite(conf) & np.isfinite(acc) & (count > 0)
            ece = finite(c.ece_before if which == "before" else c.ece_after)
            label = f"{name}, ECE {100 * ece:.1f} %" if ece is not None else name
            if which == "after" and finite(c.temperature) is not None:
                label = f"after (T = {finite(c.temperature):.2f}), " + label.split(", ", 1)[-1]
            sizes = 12 + 200 * count[ok] / max(count[ok].sum(), 1)
            ax.plot(conf[ok], acc[ok], color=colour, lw=1.2, alpha=0.8)
            ax.scatter(conf[ok], acc[ok], s=sizes, color=colour, alpha=0.7, label=label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-1 probability)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


_RENDERERS = ((PER_CLASS_FILE, per_class_png), (CONFUSION_FILE, confusion_png), (CURVES_FILE, curves_png),
              (RELIABILITY_FILE, reliability_png))


def render_plots(results: EvaluationResults) -> PlotSet:
    """Render every figure the results have data for. A figure that fails is recorded in ``errors``, not raised:
    one bad array should not cost the whole report."""
    out = PlotSet()
    for name, fn in _RENDERERS:
        try:
            png = fn(results)
        except Exception as exc:  # noqa: BLE001 - reported in the document instead
            out.errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        if png is not None:
            out.png[name] = png
    return out
