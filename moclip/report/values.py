"""How the report shows values: any number that is missing or not finite is "—"; and a strict JSON copy of the
results' dump for ``results.json``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from moclip.report.plots import finite

DASH = "—"


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal: 0.892 -> "89.2"."""
    v = finite(x)
    return DASH if v is None else f"{100.0 * v:.1f}"


def integer(x: Any) -> str:
    v = finite(x)
    return DASH if v is None else f"{int(round(v)):,}"


def param_count(x: Any) -> str:
    """A parameter count, with millions: "412,345 (0.41 M)"."""
    v = finite(x)
    return DASH if v is None else f"{int(round(v)):,} ({v / 1e6:.2f} M)"


def gflops(x: Any) -> str:
    """FLOPs as GFLOPs, two decimals (three significant digits under 0.1)."""
    v = finite(x)
    if v is None:
        return DASH
    g = v / 1e9
    return f"{g:.2f}" if g >= 0.1 else f"{g:.3g}"


def text(x: Any) -> str:
    """``x`` as text; None or blank is "—"."""
    return DASH if x is None or (isinstance(x, str) and not x.strip()) else str(x)


def seconds(x: Any) -> str:
    """A duration: "7.7 s", or "812 s (0:13:32)" from a minute on."""
    v = finite(x)
    if v is None:
        return DASH
    if v < 60:
        return f"{v:.1f} s"
    h, rem = divmod(int(round(v)), 3600)
    return f"{v:,.0f} s ({h}:{rem // 60:02d}:{rem % 60:02d})"


def jsonable(x: Any) -> Any:
    """A strict-JSON copy: numpy scalars/arrays as Python values, non-finite floats as null, paths as strings."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if isinstance(x, Path):
        return str(x)
    return str(x)
