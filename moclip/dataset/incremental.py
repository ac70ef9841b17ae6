"""Incremental indexing: what a rerun must decode, what it may skip, and what it must mark deleted.

A video is skipped when the dataset already holds a row for it with the same content fingerprint and the same
settings hash. The fingerprint is a blake2b hash of the whole file; it is only recomputed when the file's size
or modification time changed since it was indexed, so a rerun on an unchanged corpus reads no video bytes.

A video gone from the corpus is marked deleted, and its row keeps its fingerprint and features for
``keep_deleted_days`` (a tombstone): when the file comes back unchanged (a NAS remounted, a folder moved back) the
row is restored without decoding. A shard that is not readable Parquet is moved aside (``Store.quarantine``) and
its videos are indexed again by the same run.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from moclip.dataset.schema import STATE_COLUMNS, STATUS_DELETED, STATUS_FAILED, STATUS_OK
from moclip.dataset.storage import Store, UnreadableFile
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
    # shard name -> {video_id: the file's path, size, mtime}: tombstones whose unchanged file came back
    restore: dict[str, dict[str, dict]] = field(default_factory=dict)
    restored: list[str] = field(default_factory=list)
    # shard name -> video_ids of tombstones older than keep_deleted_days: their features are dropped
    expire: dict[str, set[str]] = field(default_factory=dict)
    # unreadable shards: {"name", "file", "reason"}, and once moved aside (``quarantine_unreadable``) "moved_to";
    # their videos are in ``to_index``
    quarantined: list[dict] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # of ``deleted``: still listed by the corpus, the file gone
    live_before: int = 0  # ok rows (with features) before this run
    deleted_ok: int = 0  # of ``deleted``: ok rows (with features); what the mass-delete check counts
    failed_kept: int = 0  # failed rows that stand (their file is unchanged, or still missing)
    settings_changed: int = 0  # videos re-indexed because they were indexed with other feature settings

    @property
    def new(self) -> int:
        return len(self.to_index) - len(self.reindexed)


def read_state(store: Store) -> tuple[pd.DataFrame, list[UnreadableFile]]:
    """The bookkeeping columns of every row in the dataset, with the shard each row lives in and whether it has
    features (``has_features``), and the shards that could not be read. Integers stay exact (nullable ``Int64``):
    as float64, which pandas makes of an int column with a null in it, a nanosecond mtime loses its last digits and
    no longer matches the file's."""
    tables, bad = store.read_shards_or_bad([*STATE_COLUMNS, "mv_shape"], missing_ok=True)
    parts = []
    for name, table in tables:
        lacking = [c for c in STATE_COLUMNS if c not in table.schema.names]
        if lacking:  # e.g. a user's Parquet file named part-*.parquet
            bad.append(UnreadableFile(store.path(name), f"no column {lacking[0]!r}: not a moclip feature shard"))
            continue
        if "mv_shape" in table.schema.names:
            has = pc.is_valid(table.column("mv_shape"))
            table = table.drop_columns("mv_shape")
        else:
            has = pa.array(np.zeros(table.num_rows, bool))
        parts.append(table.append_column("has_features", has)
                     .append_column("shard", pa.array([name] * table.num_rows, pa.string())))
    if not parts:
        return pd.DataFrame(columns=[*STATE_COLUMNS, "has_features", "shard"]), bad
    return pa.concat_tables(parts).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), bad


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def plan_index(corpus: pd.DataFrame, store: Store, settings_hash: str, retry_failed: bool = False,
               keep_deleted_days: float = 30.0) -> IndexPlan:
    """What a run must do (see the module docstring). Reads only the bookkeeping columns and writes nothing:
    unreadable shards are listed in ``quarantined`` (their rows left out, so their videos are indexed again) for
    ``quarantine_unreadable`` to move aside once the plan is accepted (``check_deletions``)."""
    state, bad = read_state(store)
    quarantined = [{"name": e.path.rsplit("/", 1)[-1], "file": e.path, "reason": e.reason} for e in bad]
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
    # tombstones of these settings with features: their file may be back unchanged (then restored, not decoded)
    tomb = ((prev["status"] == STATUS_DELETED) & (prev["settings_hash"] == settings_hash)
            & prev["has_features"].astype("boolean")).fillna(False).to_numpy(dtype=bool)
    stats = [_stat(p) if ok else None for p, ok in zip(corpus["path"], settled | tomb)]
    size = pd.array([st[0] if st else None for st in stats], dtype="Int64")
    mtime = pd.array([st[1] if st else None for st in stats], dtype="Int64")
    same = ((size == prev["file_size"].array) & (mtime == prev["mtime_ns"].array)).fillna(False).to_numpy(dtype=bool)
    unchanged = settled & same
    was_failed = (prev["status"] == STATUS_FAILED).fillna(False).to_numpy(dtype=bool)

    plan = IndexPlan(to_index=[], unchanged=int(unchanged.sum()), quarantined=quarantined,
                     live_before=int((state["status"] == STATUS_OK).sum()),
                     failed_kept=int((unchanged & was_failed).sum()))
    restore: dict[str, dict[str, dict]] = defaultdict(dict)
    mark_missing: dict[str, set[str]] = defaultdict(set)
    todo = np.flatnonzero(~unchanged)
    rest = corpus.iloc[todo]
    seen = state[state["video_id"].isin(rest["video_id"])]
    current = {r.video_id: r for r in seen.astype(object).where(seen.notna(), None).itertuples(index=False)}
    for i, video in zip(todo, rest.to_dict("records")):
        old = current.get(video["video_id"])
        if old is None:
            plan.to_index.append(video)
            continue
        st = stats[i] if settled[i] or tomb[i] else _stat(video["path"])  # None: the file is gone
        if st is None and old.status == STATUS_OK:  # listed, but missing (a manifest's NAS unmounted): its row
            plan.deleted.append(old.video_id)      # becomes a tombstone, as if the corpus no longer listed it:
            plan.missing.add(old.video_id)         # its features are kept, the mass-delete check counts it
            mark_missing[old.shard].add(old.video_id)
            continue
        if st is None and old.status == STATUS_DELETED:
            plan.unchanged += 1  # still missing: the tombstone stands
            continue
        if tomb[i] and st is not None and (same[i] or (old.fingerprint and
                                                        _safe_fingerprint(video["path"]) == old.fingerprint)):
            restore[old.shard][old.video_id] = {"path": video["path"], "file_size": st[0], "mtime_ns": st[1],
                                                **{k: video[k] for k in ("label", "split", "group")}}
            plan.restored.append(old.video_id)  # back, unchanged: its kept features are current again
            continue
        if old.status == STATUS_DELETED or (retry_failed and old.status == STATUS_FAILED):
            plan.to_index.append(video)  # back in the corpus, or retried: its new row replaces the old one
            drop[old.shard].add(old.video_id)
            continue
        same_settings = old.settings_hash == settings_hash  # then settled above: stat'ed, size or mtime changed
        if st is not None and same_settings and old.fingerprint:
            fp = _safe_fingerprint(video["path"])
            if fp == old.fingerprint:
                plan.unchanged += 1  # touched, not changed
                plan.failed_kept += old.status == STATUS_FAILED
                continue
            video = {**video, "fingerprint": fp}
        if old.status == STATUS_FAILED and st is None and same_settings:
            plan.unchanged += 1  # still missing: the failed row stands
            plan.failed_kept += 1
            continue
        plan.to_index.append(video)
        plan.reindexed.append(video["video_id"])
        plan.settings_changed += not same_settings
        drop[old.shard].add(old.video_id)

    mark = mark_missing
    gone = state[~state["video_id"].isin(corpus["video_id"]) & (state["status"] != STATUS_DELETED)]
    for vid, shard in zip(gone["video_id"], gone["shard"]):
        plan.deleted.append(vid)
        mark[shard].add(vid)
    ok = state.loc[state["video_id"].isin(plan.deleted), "status"] == STATUS_OK
    plan.deleted_ok = int(ok.sum())
    # tombstones kept long enough lose their features (their bookkeeping stays: the video was here once)
    cutoff = pd.Timestamp(datetime.now(timezone.utc) - timedelta(days=keep_deleted_days))
    old_tombs = state[(state["status"] == STATUS_DELETED) & state["has_features"].astype(bool)
                      & (state["indexed_at"] < cutoff) & ~state["video_id"].isin(plan.restored)]
    expire: dict[str, set[str]] = defaultdict(set)
    for vid, shard in zip(old_tombs["video_id"], old_tombs["shard"]):
        expire[shard].add(vid)
    plan.mark_deleted, plan.drop, plan.restore, plan.expire = dict(mark), dict(drop), dict(restore), dict(expire)
    return plan


def _safe_fingerprint(path: str) -> str | None:
    try:
        return fingerprint(path)
    except OSError:
        return None


class MassDeleteRefused(RuntimeError):
    """A run would mark more of the dataset deleted than it may (``RunConfig.max_delete``, always "all"): most
    likely the archive is unmounted or moved. Raised before anything is written."""


def check_deletions(plan: IndexPlan, out: str, root: str, max_delete: float, allow: bool) -> None:
    """Refuse ``plan`` when it marks more than ``max_delete`` of the dataset's live videos deleted, or all of them,
    unless ``allow``; the message names the count, the corpus root and the flags that confirm it."""
    n, live = plan.deleted_ok, plan.live_before  # rows with features: failed rows leaving cost nothing
    if allow or not n or not live:
        return
    if n < live and n <= max_delete * live:
        return
    what, flags = "all", "--allow-mass-delete"
    if n < live:
        what, flags = f"{n / live:.0%}", f"--max-delete {-(-100 * n // live) / 100:g} or --allow-mass-delete"
    raise MassDeleteRefused(
        f"{out}: this run would mark {n} of the dataset's {live} indexed videos deleted ({what}) because {root} no "
        f"longer lists them or their files are missing; is the archive mounted, and are the path and --layout "
        f"right? Nothing was written. If they are really gone, rerun with {flags}")


def quarantine_unreadable(store: Store, plan: IndexPlan) -> None:
    """Move the plan's unreadable shards aside (``Store.quarantine``: never deleted), noting where each went."""
    for q in plan.quarantined:
        q["moved_to"] = store.quarantine(q["name"])
