"""Incremental indexing: what a rerun must decode, what it may skip, and what it must mark deleted.

A video is skipped when the dataset already holds a row for it with the same content fingerprint and the same
settings hash. The fingerprint is a blake2b hash of the whole file; it is only recomputed when the file's size
or modification time changed since it was indexed, so a rerun on an unchanged corpus reads no video bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip.dataset.schema import STATE_COLUMNS, STATUS_DELETED, STATUS_FAILED
from moclip.dataset.storage import Store
from moclip.files import hash_file


def fingerprint(path: str, chunk: int = 1 << 20) -> str:
    """Content hash of a file (blake2b, 128 bit)."""
    return "b2:" + hash_file(path, hashlib.blake2b(digest_size=16), chunk).hexdigest()


@dataclass
class IndexPlan:
    to_index: list[dict]  # corpus rows to decode; "fingerprint" set when already computed
    unchanged: int = 0
    reindexed: list[str] = field(default_factory=list)  # video_ids whose file or settings changed
    deleted: list[str] = field(default_factory=list)  # video_ids gone from the corpus
    mark_deleted: dict[str, set[str]] = field(default_factory=dict)  # shard name -> video_ids to mark deleted
    # shard name -> video_ids whose rows must leave that shard (re-indexed, duplicated or deleted)
    drop: dict[str, set[str]] = field(default_factory=dict)

    @property
    def new(self) -> int:
        return len(self.to_index) - len(self.reindexed)


def read_state(store: Store) -> pd.DataFrame:
    """The bookkeeping columns of every row in the dataset, with the shard each row lives in. Integers stay exact
    (nullable ``Int64``): as float64, which pandas makes of an int column with a null in it, a nanosecond mtime
    loses its last digits and no longer matches the file's."""
    parts = [table.append_column("shard", pa.array([name] * table.num_rows, pa.string()))
             for name, table in store.read_shards(STATE_COLUMNS)]
    if not parts:
        return pd.DataFrame(columns=[*STATE_COLUMNS, "shard"])
    return pa.concat_tables(parts).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def plan_index(corpus: pd.DataFrame, store: Store, settings_hash: str, retry_failed: bool = False) -> IndexPlan:
    state = read_state(store)
    drop: dict[str, set[str]] = defaultdict(set)
    # A run killed between writing new shards and rewriting old ones leaves duplicates: the newest row wins.
    if len(state):
        state = state.sort_values(["video_id", "indexed_at", "shard"], kind="stable")
        dupes = state.duplicated("video_id", keep="last")
        for vid, shard in zip(state.loc[dupes, "video_id"], state.loc[dupes, "shard"]):
            drop[shard].add(vid)
        state = state[~dupes]
    state = state.set_index("video_id", drop=False)

    # The common case first, for the whole table at once: a video indexed with these settings whose file still has
    # the size and mtime it had then is unchanged (one stat per video, no per-row Python beyond it). Only videos
    # indexed with these settings need a stat at all; the loop below reuses it.
    prev = state.reindex(corpus["video_id"])
    settled = (prev["status"] != STATUS_DELETED) & (prev["settings_hash"] == settings_hash)
    if retry_failed:
        settled &= prev["status"] != STATUS_FAILED
    settled = settled.fillna(False).to_numpy(dtype=bool)
    stats = [_stat(p) if ok else None for p, ok in zip(corpus["path"], settled)]
    size = pd.array([st[0] if st else None for st in stats], dtype="Int64")
    mtime = pd.array([st[1] if st else None for st in stats], dtype="Int64")
    same = ((size == prev["file_size"].array) & (mtime == prev["mtime_ns"].array)).fillna(False).to_numpy(dtype=bool)
    unchanged = settled & same

    plan = IndexPlan(to_index=[], unchanged=int(unchanged.sum()))
    todo = np.flatnonzero(~unchanged)
    rest = corpus.iloc[todo]
    seen = state[state["video_id"].isin(rest["video_id"])]
    current = {r.video_id: r for r in seen.astype(object).where(seen.notna(), None).itertuples(index=False)}
    for i, video in zip(todo, rest.to_dict("records")):
        old = current.get(video["video_id"])
        if old is None:
            plan.to_index.append(video)
            continue
        if old.status == STATUS_DELETED or (retry_failed and old.status == STATUS_FAILED):
            plan.to_index.append(video)  # back in the corpus, or retried: its new row replaces the old one
            drop[old.shard].add(old.video_id)
            continue
        same_settings = old.settings_hash == settings_hash  # then settled above: stat'ed, size or mtime changed
        st = stats[i]  # None: the file is gone (the worker turns it into a failed row with the reason)
        if st is not None and same_settings and old.fingerprint:
            fp = _safe_fingerprint(video["path"])
            if fp == old.fingerprint:
                plan.unchanged += 1  # touched, not changed
                continue
            video = {**video, "fingerprint": fp}
        if old.status == STATUS_FAILED and st is None and same_settings:
            plan.unchanged += 1  # still missing: the failed row stands
            continue
        plan.to_index.append(video)
        plan.reindexed.append(video["video_id"])
        drop[old.shard].add(old.video_id)

    mark: dict[str, set[str]] = defaultdict(set)
    gone = state[~state["video_id"].isin(corpus["video_id"]) & (state["status"] != STATUS_DELETED)]
    for vid, shard in zip(gone["video_id"], gone["shard"]):
        plan.deleted.append(vid)
        mark[shard].add(vid)
    plan.mark_deleted = dict(mark)
    plan.drop = dict(drop)
    return plan


def _safe_fingerprint(path: str) -> str | None:
    try:
        return fingerprint(path)
    except OSError:
        return None
