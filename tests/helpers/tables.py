"""Small Arrow tables for storage tests."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def small_table(n: int = 50, width: int = 4000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"video_id": [f"v{i}" for i in range(n)],
                     "mv": [rng.standard_normal(width).astype(np.float32) for _ in range(n)]})
