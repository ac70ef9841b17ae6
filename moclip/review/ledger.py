"""What a label run's reviews have picked and what people answered, kept beside its labels:

    LABELS/_review/ledger.parquet     item_id, batch, picked_at, strategy: every item ever put in a batch
    LABELS/_review/reviewed.parquet   the reviewers' answers (``moclip.review.labelstudio.REVIEW_COLUMNS``)

An item in either is never picked again. Both are rewritten whole and atomically (small: one row per reviewed item).
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pandas as pd
import pyarrow.parquet as pq

from moclip.dataset import Store

REVIEW_DIR = "_review"
LEDGER = f"{REVIEW_DIR}/ledger.parquet"
REVIEWED = f"{REVIEW_DIR}/reviewed.parquet"
LOCK = "_review.lock"  # held while a batch is picked and recorded, and while answers are merged


def read(labels: str, name: str, storage_options: dict | None = None) -> pd.DataFrame | None:
    """``LEDGER`` or ``REVIEWED`` of the label run at ``labels`` (None when there is none yet)."""
    store = Store(labels, storage_options)
    if not store.exists(name):
        return None
    with store.fs.open(store.path(name), "rb") as f:
        return pq.read_table(f).to_pandas()


def write(labels: str, name: str, df: pd.DataFrame, storage_options: dict | None = None) -> None:
    store = Store(labels, storage_options)
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    store.fs.makedirs(store.path(REVIEW_DIR), exist_ok=True)
    store.write_bytes(name, buf.getvalue())


def taken(labels: str, storage_options: dict | None = None) -> set[str]:
    """Item ids already picked in a batch or reviewed: never picked again."""
    out: set[str] = set()
    for name in (LEDGER, REVIEWED):
        df = read(labels, name, storage_options)
        if df is not None and "item_id" in df:
            out |= set(df["item_id"].astype(str))
    return out


def record(labels: str, batch: str, items: pd.DataFrame, storage_options: dict | None = None) -> None:
    """Add a batch's items to the ledger."""
    now = pd.Timestamp(datetime.now(timezone.utc)).floor("ms")
    new = pd.DataFrame({"item_id": items["item_id"].astype(str), "batch": batch, "picked_at": now,
                        "strategy": items["strategy"].astype(str)})
    old = read(labels, LEDGER, storage_options)
    write(labels, LEDGER, new if old is None else pd.concat([old, new], ignore_index=True), storage_options)
