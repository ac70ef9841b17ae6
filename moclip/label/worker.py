"""Predict a group of feature shards on a (Dask) worker: one prediction file per feature shard, written atomically.

The worker reads one shard's features at a time (at most ``BATCH_VIDEOS`` videos' worth before it predicts and
writes them), so its memory depends on the batch, never on the archive. The model is loaded once per worker
process and kept (``predictor``).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from moclip.config import TimelineConfig
from moclip.dataset import STATUS_OK, Store, feature_set
from moclip.dataset.schema import conform
from moclip.dataset.storage import UnreadableFile, unreadable
from moclip.dataset.windows import is_windowed, window_features
from moclip.indexing.shard import match_thread_limit
from moclip.inference import Labeller, Predictor, ZeroShotModel
from moclip.label.counts import SUMMARY_COLUMNS, LabelCounts
from moclip.label.plan import ShardWork
from moclip.label.predict import predict_features, schema
from moclip.label.timeline import SEGMENT_SCHEMA, WINDOW_SCHEMA, predict_windows
from moclip.precision import resolve_device

BATCH_VIDEOS = 256  # videos predicted per forward pass (several small shards together)
BATCH_WINDOWS = 8192  # or windows of long videos (~190 MB of model inputs at the default sizes)
_PREDICTORS: dict[tuple[str, str, str], Predictor] = {}


@dataclass(frozen=True)
class LabelTarget:
    """Everything a worker needs besides its shards (small: sent with every task)."""

    model: str | None  # bundle folder (a path the workers can read); None: CLIP zero-shot over ``classes``
    device: str
    key: str  # the run's label key (moclip.label.plan.label_key)
    features: str  # the feature dataset's URL
    predictions: str  # the predictions folder's URL
    top_k: int = 5
    extra_classes: tuple[str, ...] = ()
    extra_text: list[list[float]] | None = None  # [E][D] zero-shot embeddings of extra_classes (from the flow)
    storage_options: dict = field(default_factory=dict)
    # the folders of the windows' and segments' files (written with time windows; stale ones always removed),
    # and how segments are made: None without windows
    windows: str | None = None
    segments: str | None = None
    timeline: TimelineConfig | None = None
    # zero-shot labelling (no model): the vocabulary, its text embeddings [C][D] (from the flow), the rows' model id
    classes: tuple[str, ...] = ()
    text: list[list[float]] | None = None
    model_id: str | None = None


@dataclass
class GroupResult:
    """What a task did; ``add`` sums the tasks of a run (``seconds``: worker time, ``peak_rss_mb``: the highest)."""

    counts: LabelCounts = field(default_factory=LabelCounts)
    shards: int = 0
    written: int = 0
    removed: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # of the worker process so far
    failed: list[tuple[str, str]] = field(default_factory=list)  # (feature shard, reason): predicted next run
    # unreadable prediction files moved aside (file, reason, moved to); their shards were predicted again
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, other: GroupResult) -> None:
        self.counts.add(other.counts)
        self.shards += other.shards
        self.written += other.written
        self.removed += other.removed
        self.seconds += other.seconds
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        self.failed += other.failed
        self.quarantined += other.quarantined


def predictor(target: LabelTarget) -> Labeller:
    """The target's model, loaded (weights hash-checked) once per process and kept; the vocabulary's zero-shot
    model when the target has no model."""
    if target.model is None:
        if target.text is None or not target.classes:
            raise ValueError("a label target needs a model or a vocabulary with its text embeddings")
        return ZeroShotModel(list(target.classes), np.asarray(target.text, np.float32), str(target.model_id),
                             resolve_device(target.device))
    k = (target.model, target.device, target.key)
    if k not in _PREDICTORS:
        _PREDICTORS.clear()  # one model at a time
        _PREDICTORS[k] = Predictor.load(target.model, target.device)
    return _PREDICTORS[k]


def _ok_rows(table: pa.Table) -> pa.Table:
    return conform(table).filter(pc.equal(table.column("status"), STATUS_OK))


def _unchanged(old: pd.DataFrame, rows: pa.Table) -> np.ndarray:
    """Which rows of ``old`` (predictions) were made from a feature row still in ``rows`` as it was then."""
    now = pd.DataFrame({"video_id": rows.column("video_id").to_pylist(),
                        "indexed_at": rows.column("indexed_at").to_pandas()})
    key = pd.MultiIndex.from_frame(now)
    return pd.MultiIndex.from_frame(old[["video_id", "indexed_at"]]).isin(key)


def label_shards(work: list[ShardWork], target: LabelTarget) -> GroupResult:
    """Predict the shards of ``work`` that are not current and write their files; read the current ones' summary
    columns. Returns the group's counts."""
    t0 = time.perf_counter()
    match_thread_limit()  # one torch thread per single-threaded Dask worker (OMP_NUM_THREADS), as indexing does
    if os.environ.get("OMP_NUM_THREADS") == "1" and pa.cpu_count() != 1:
        pa.set_cpu_count(1)  # and one Arrow decoding thread: 2 workers x 2 threads on 2 cores fight
    features = Store(target.features, target.storage_options)
    preds = Store(target.predictions, target.storage_options)
    siblings = [Store(u, target.storage_options) for u in (target.windows, target.segments) if u is not None]
    timeline = siblings if target.timeline is not None else []
    counts, written, removed = LabelCounts(), 0, 0
    failed: list[tuple[str, str]] = []
    quarantined: list[tuple[str, str, str]] = []

    def set_aside(e: UnreadableFile, name: str) -> None:  # never deleted: moved where readers do not look
        quarantined.append((e.path, e.reason, preds.quarantine(name)))
    text = None if target.extra_text is None else np.asarray(target.extra_text, np.float32)
    pending: list[tuple[ShardWork, pd.DataFrame | None, pa.Table]] = []
    sch = schema(bool(target.extra_classes))

    def flush() -> None:
        nonlocal written, removed
        if not pending:
            return
        # one forward pass for the batch; each row remembers its shard (feature_set sorts rows by video id)
        tables = [t.append_column("_shard", pa.array(np.full(t.num_rows, i, np.int32)))
                  for i, (_, _, t) in enumerate(pending) if t.num_rows]
        new = sch.empty_table().to_pandas()
        per_window: tuple[pd.DataFrame, pd.DataFrame] | None = None  # (windows, segments) of windowed features
        try:
            if tables:
                table = pa.concat_tables(tables)
                if is_windowed(table):
                    if not timeline:
                        raise ValueError("these features have time windows: label them with --window")
                    fs = window_features(table)
                    new, *per_window = predict_windows(predictor(target), fs, target.top_k,
                                                       target.timeline,
                                                       list(target.extra_classes), text)
                    shard_of = dict(zip(fs.meta["video_id"], fs.meta["_shard"]))
                    for df in (new, *per_window):
                        df["_shard"] = df["video_id"].map(shard_of)
                else:
                    fs = feature_set(table)
                    new = predict_features(predictor(target), fs, target.top_k, list(target.extra_classes), text)
                    new["_shard"] = fs.meta["_shard"].to_numpy()
        except Exception as e:  # noqa: BLE001 - e.g. rows of other settings: these shards fail, the rest go on
            failed.extend((w.feature_shard, _reason(e)) for w, _, _ in pending)
            pending.clear()
            return
        by_shard = dict(iter(new.groupby("_shard"))) if tables else {}
        for i, (w, kept, _) in enumerate(pending):
            mine = by_shard.get(i, new.iloc[:0]).drop(columns="_shard", errors="ignore")
            frame = pd.concat([kept, mine]) if kept is not None and len(kept) else mine
            frame = frame.sort_values("video_id", kind="stable").reset_index(drop=True)
            try:
                if timeline:  # first: the prediction file, written last, is what makes the shard current
                    for store, df, sc, by in zip(timeline, per_window or (None, None), (WINDOW_SCHEMA, SEGMENT_SCHEMA),
                                                 ("window_index", "segment_index")):
                        part = sc.empty_table().to_pandas() if df is None else df[df["_shard"] == i]
                        part = part.sort_values(["video_id", by], kind="stable").drop(columns="_shard",
                                                                                      errors="ignore")
                        store.write_table(w.target, pa.Table.from_pandas(part, schema=sc, preserve_index=False))
                preds.write_table(w.target, pa.Table.from_pandas(frame, schema=sch, preserve_index=False))
            except OSError as e:  # e.g. a full disk (StorageError names the file): predicted again next run
                failed.append((w.feature_shard, _reason(e)))
                for store in timeline:  # windows and segments live and die with their prediction file
                    with contextlib.suppress(OSError):
                        if store.exists(w.target):
                            store.remove(w.target)
                continue
            written += 1
            counts.add(LabelCounts.of(frame, predicted=len(mine)))
            removed += remove_predictions(preds, w.stale, siblings)
        pending.clear()

    for w in work:
        try:
            if w.current:
                try:
                    current = preds.read_table(w.target, SUMMARY_COLUMNS, missing_ok=True).to_pandas()
                except UnreadableFile as e:  # truncated, or not moclip's: set aside, predicted again below
                    set_aside(e, w.target)
                else:
                    counts.add(LabelCounts.of(current))
                    removed += remove_predictions(preds, w.stale, siblings)
                    continue
            rows = _ok_rows(features.read_table(w.feature_shard))
            # windowed shards are predicted whole (their windows and segments files go with the prediction file)
            kept = None
            if w.reuse and not timeline:
                try:
                    kept = _reusable(preds, w.reuse, rows)
                except UnreadableFile as e:  # every row is predicted again
                    set_aside(e, w.reuse)
        except UnreadableFile as e:  # the feature shard's bytes are bad (a page, not the footer: the index reads
            moved = features.quarantine(w.feature_shard)  # only its bookkeeping): aside, re-indexed next run
            quarantined.append((e.path, e.reason, moved))
            failed.append((w.feature_shard, f"{_reason(e)}; moved aside to {moved}: the next run indexes its "
                                            "videos again"))
            continue
        except Exception as e:  # noqa: BLE001 - any other error: this shard fails, the rest go on
            failed.append((w.feature_shard, _reason(e)))
            continue
        if kept is not None:
            rows = rows.filter(pc.invert(pc.is_in(rows.column("video_id"),
                                                  value_set=pa.array(kept["video_id"], pa.string()))))
        pending.append((w, kept, rows))
        if sum(t.num_rows for _, _, t in pending) >= BATCH_VIDEOS or _windows(pending) >= BATCH_WINDOWS:
            flush()
    flush()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return GroupResult(counts=counts, shards=len(work), written=written, removed=removed,
                       seconds=time.perf_counter() - t0, peak_rss_mb=rss, failed=failed, quarantined=quarantined)


def _windows(pending: list[tuple[ShardWork, pd.DataFrame | None, pa.Table]]) -> int:
    """Time windows in the pending rows (0 without windows)."""
    return sum(pc.sum(pc.list_value_length(t.column("window_start_s"))).as_py() or 0 for _, _, t in pending
               if t.num_rows)


def _reusable(preds: Store, name: str, rows: pa.Table) -> pd.DataFrame:
    """The rows of an older prediction file still valid for ``rows`` (``UnreadableFile`` when it is not readable
    or not a prediction file: then every row is predicted again)."""
    old = preds.read_table(name).to_pandas()
    if not {"video_id", "indexed_at"} <= set(old.columns):
        raise UnreadableFile(preds.path(name), "not a moclip prediction file (no video_id/indexed_at columns)")
    return old[_unchanged(old, rows)]


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


def quarantine_unreadable_siblings(preds: Store, siblings: list[Store]) -> list[tuple[str, str, str]]:
    """Read every windows/segments file whole; an unreadable one is moved aside with its prediction file (so the
    next run predicts its shard again). Returns (file, reason, moved to) of each. For when reading them together
    (the timelines page) failed: the one bad file is found and named."""
    import pyarrow.parquet as pq

    bad = []
    for store in siblings:
        for name in store.shard_infos():
            try:
                with store.fs.open(store.path(name), "rb") as f:
                    pq.read_table(f)
            except Exception as e:  # noqa: BLE001 - classified by unreadable()
                if not unreadable(e):
                    raise
                bad.append((store.path(name), _reason(e), store.quarantine(name)))
                if preds.exists(name):
                    preds.quarantine(name)
    return bad


def remove_orphan_siblings(preds: Store, siblings: list[Store]) -> int:
    """Remove every windows/segments file whose prediction file is not there (a run that failed between writing
    them and writing it, a prediction file a person removed): the three live and die together, so a later run can
    never leave duplicate windows or segments. Returns how many were removed."""
    have = set(preds.shard_infos())
    n = 0
    for store in siblings:
        for name in store.shard_infos():
            if name not in have:
                store.remove(name)
                n += 1
    return n


def remove_predictions(store: Store, names: list[str], siblings: list[Store] = ()) -> int:
    """Remove prediction files ``names`` (and their windows/segments files in ``siblings``); how many were there."""
    n = 0
    for name in names:
        for other in siblings:
            if other.exists(name):
                other.remove(name)
        if store.exists(name):
            store.remove(name)
            n += 1
    return n
