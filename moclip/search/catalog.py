"""What search looks through: one unit CLIP vector per video (or per time window of a long video), with where it
is and how much moves there, kept beside the dataset and brought up to date shard by shard.

    <dataset>/_search/                 (a local dataset; else ~/.cache/moclip/search/<hash of the URL>/)
        catalog.json                   the dataset it mirrors (CLIP weights, settings) and, per feature shard, the
                                       version read and its items' keys
        items/<shard>.<version>.parquet   key, video_id, path, window_index, start_s, end_s, motion, duration_s,
                                       motion_signature (each MV segment's mean motion per quadrant: [8 T])
        vectors/<shard>.<version>.npy     float16 [n, D]: each item's frames' mean direction, unit length
        ann/                           the approximate index (``moclip.search.ann``), above ``EXACT_MAX`` items

A sync lists the dataset's shards (one listing) and reads only the shards that are new or were rewritten since
the last; items of shards that are gone leave the index. The dataset's shards and manifest are only read (the
catalog is a folder of its own, inside a local dataset unless --index-dir puts it elsewhere): an index run may
write them meanwhile (a shard rewritten after the listing is read again by the next sync). Every file here is
written atomically, catalog.json last, so an interrupted sync leaves the previous catalog usable; one process at a
time syncs or reads it (a file lock).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from filelock import FileLock

from moclip import zeroshot
from moclip.dataset import STATUS_OK, Store, feature_set
from moclip.dataset.schema import conform
from moclip.dataset.storage import UnreadableFile
from moclip.dataset.windows import is_windowed, window_features
from moclip.files import atomic_write_bytes, atomic_write_text
from moclip.label.plan import file_identity
from moclip.label.timeline import segment_speed
from moclip.search.ann import EXACT_MAX, AnnIndex

CATALOG_DIR = "_search"
CATALOG_FILE = "catalog.json"
FORMAT = 1
ITEM_COLUMNS = ["key", "video_id", "path", "window_index", "start_s", "end_s", "motion", "duration_s",
                "motion_signature"]


class SearchError(ValueError):
    """A search that cannot be done as asked (no CLIP features, other CLIP weights, a bad query): says why."""


def default_folder(dataset: str) -> Path:
    """Where a dataset's catalog lives: inside a local dataset folder, else in the user's cache."""
    store = Store(dataset)
    if store.local:
        return Path(store.root) / CATALOG_DIR
    digest = hashlib.sha256(dataset.rstrip("/").encode()).hexdigest()[:16]
    return Path(os.environ.get("MOCLIP_CACHE", Path.home() / ".cache" / "moclip")) / "search" / digest


def shard_items(table: pa.Table) -> tuple[pd.DataFrame, np.ndarray]:
    """The searchable items of one feature shard (its ok rows): per window with time windows, else per video.
    Returns (their ``ITEM_COLUMNS`` but ``key``, in video id then time order; their unit vectors [n, D])."""
    table = conform(table)
    table = table.filter(pc.equal(table.column("status"), STATUS_OK))
    if table.num_rows == 0:
        return pd.DataFrame(columns=ITEM_COLUMNS[1:]), np.zeros((0, 0), np.float32)
    windowed = is_windowed(table)
    fs = window_features(table) if windowed else feature_set(table)
    meta = fs.meta.reset_index(drop=True)
    duration = pd.to_numeric(meta["duration_s"], errors="coerce").fillna(0.0).to_numpy(np.float64)
    items = pd.DataFrame({
        "video_id": meta["video_id"].astype(str), "path": meta["path"].astype(str),
        "window_index": meta["window_index"].astype(np.int32) if windowed else np.zeros(len(meta), np.int32),
        "start_s": meta["start_s"].to_numpy(np.float64) if windowed else np.zeros(len(meta)),
        "end_s": meta["end_s"].to_numpy(np.float64) if windowed else duration,
        "motion": segment_speed(fs.mv).mean(axis=1) if len(meta) else np.zeros(0),
        "duration_s": duration,
        "motion_signature": list(motion_signature(fs.mv)),
    })
    return items, zeroshot.video_embedding(fs.clip).astype(np.float32)


def motion_signature(mv: np.ndarray) -> np.ndarray:
    """[N, T, 2, H, W] MV tensors -> [N, 8 T] float32: each segment's mean motion vector in each quadrant of the
    picture. Small, and tells apart what a single mean cannot (turning left or right, zooming in or out)."""
    n, t = mv.shape[:2]
    if n == 0:
        return np.zeros((0, 8 * t), np.float32)
    rows = np.array_split(np.arange(mv.shape[3]), 2)
    cols = np.array_split(np.arange(mv.shape[4]), 2)
    parts = [mv[:, :, :, r][:, :, :, :, c].mean(axis=(3, 4)) for r in rows for c in cols if len(r) and len(c)]
    return np.stack(parts, axis=-1).reshape(n, -1).astype(np.float32)


@dataclass
class SyncReport:
    shards: int  # the dataset's shards now
    read: int  # shards read in this sync (new or rewritten)
    dropped: int  # shards whose items left (gone, or rewritten)
    items: int  # items now
    unreadable: list[str]  # shards that could not be read now (left out until they can)
    approximate: bool  # whether the approximate index is used (more than EXACT_MAX items)


class Catalog:
    """A dataset's searchable items (see the module docstring). ``sync`` brings it up to date; ``load`` reads it."""

    def __init__(self, dataset: str, manifest: dict, folder: str | Path | None = None,
                 storage_options: dict | None = None, exact_max: int = EXACT_MAX):
        self.dataset, self.manifest = dataset, manifest
        self.folder = Path(folder) if folder is not None else default_folder(dataset)
        self.store = Store(dataset, storage_options)
        self.exact_max = exact_max
        # the dataset however its path was spelled (relative, with a trailing slash, through a symlink)
        where = os.path.realpath(self.store.root) if self.store.local else dataset.rstrip("/")
        self.what = {"format": FORMAT, "dataset": where, "clip_weights_id": manifest.get("clip_weights_id"),
                     "settings_hash": manifest.get("settings_hash")}

    def _read_state(self) -> dict:
        try:
            state = json.loads((self.folder / CATALOG_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return state if all(state.get(k) == v for k, v in self.what.items()) else {}  # another dataset: anew

    def _lock(self) -> FileLock:
        """One search process at a time updates or reads the catalog (a sync removes files a reader may want)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SearchError(f"{self.folder}: cannot keep the search catalog there ({e.strerror or e}); give "
                              "--index-dir a folder this user can write") from e
        return FileLock(str(self.folder / ".lock"))

    def sync(self, log: Callable[[str], None] = lambda m: None) -> SyncReport:
        """Read the shards that are new or rewritten since the last sync; drop the items of shards that are gone."""
        with self._lock():
            try:
                return self._sync(log)
            except PermissionError as e:
                raise SearchError(f"{self.folder}: cannot write the search catalog ({e}); give --index-dir a "
                                  "folder this user can write") from e

    def _sync(self, log: Callable[[str], None]) -> SyncReport:
        state = self._read_state()
        if not state and (self.folder / CATALOG_FILE).exists():  # of another dataset or settings: start anew
            for sub in ("items", "vectors", "ann"):
                shutil.rmtree(self.folder / sub, ignore_errors=True)
        shards: dict[str, dict] = state.get("shards", {})
        next_key = int(state.get("next_key", 0))
        infos = self.store.shard_infos()
        now = {name: file_identity(info) for name, info in infos.items()}
        dropped = [n for n, s in shards.items() if now.get(n) != s["version"]]
        todo = [n for n in now if n not in shards or n in dropped]
        (self.folder / "items").mkdir(parents=True, exist_ok=True)
        (self.folder / "vectors").mkdir(parents=True, exist_ok=True)
        gone_keys = [np.arange(shards[n]["first_key"], shards[n]["first_key"] + shards[n]["n"], dtype=np.uint64)
                     for n in dropped]
        old_files = [self._stem(n, shards[n]["version"]) for n in dropped]
        for n in dropped:
            del shards[n]
        unreadable, added = [], []
        for i, name in enumerate(todo):
            try:
                items, vectors = shard_items(self.store.read_table(name))
            except (FileNotFoundError, UnreadableFile) as e:  # rewritten or removed since the listing, or bad
                unreadable.append(f"{self.store.path(name)}: {e}")
                continue
            items.insert(0, "key", np.arange(next_key, next_key + len(items), dtype=np.uint64))
            stem = self._stem(name, now[name])
            buf = io.BytesIO()
            items.to_parquet(buf, index=False)
            atomic_write_bytes(self.folder / "items" / f"{stem}.parquet", buf.getvalue())
            buf = io.BytesIO()
            np.save(buf, vectors.astype(np.float16))
            atomic_write_bytes(self.folder / "vectors" / f"{stem}.npy", buf.getvalue())
            shards[name] = {"version": now[name], "first_key": next_key, "n": len(items),
                            "dim": int(vectors.shape[1]) if len(items) else 0}
            added.append(name)
            next_key += len(items)
            if (i + 1) % 50 == 0:
                log(f"search catalog: {i + 1}/{len(todo)} shards read")
        total = sum(s["n"] for s in shards.values())
        approximate = total > self.exact_max
        ann_state = state.get("ann")
        if approximate:
            ann_state = self._sync_ann(shards, ann_state, gone_keys, added)
        state = {**self.what, "shards": shards, "next_key": next_key, "ann": ann_state if approximate else None}
        atomic_write_text(self.folder / CATALOG_FILE, json.dumps(state, indent=1, sort_keys=True))
        for stem in old_files:  # after the catalog that no longer names them
            for sub, ext in (("items", "parquet"), ("vectors", "npy")):
                (self.folder / sub / f"{stem}.{ext}").unlink(missing_ok=True)
        return SyncReport(shards=len(now), read=len(added), dropped=len(dropped), items=total,
                          unreadable=unreadable, approximate=approximate)

    def _sync_ann(self, shards: dict, ann_state: dict | None, gone: list[np.ndarray], added: list[str]) -> dict:
        """Bring the approximate index up to ``shards``: remove the dropped shards' keys, add the new ones."""
        dim = next((s["dim"] for s in shards.values() if s["n"]), 0)
        if not ann_state:  # none in use until now: whatever is on disk is of an older catalog
            shutil.rmtree(self.folder / "ann", ignore_errors=True)
        index = AnnIndex.open(self.folder / "ann", dim)
        have = set((ann_state or {}).get("shards", []))
        if gone and len(index):
            index.remove(np.concatenate(gone))
        missing = [n for n in shards if n not in have or n in added]
        for name in missing:
            s = shards[name]
            if s["n"]:
                vectors = np.load(self.folder / "vectors" / f"{self._stem(name, s['version'])}.npy").astype(np.float32)
                index.add(np.arange(s["first_key"], s["first_key"] + s["n"], dtype=np.uint64), vectors)
        index.save()
        return {"shards": sorted(shards)}

    def snapshot(self) -> tuple[pd.DataFrame, np.ndarray, AnnIndex | None, Callable[[np.ndarray], dict]]:
        """``load`` (without the motion signatures), ``ann`` and ``signatures`` of one state of the catalog: a query
        reads the signatures of its hits' videos only (at 10^6 windows, all of them are a quarter of a GB)."""
        with self._lock():
            state = self._read_state()
            items, vectors = self.load(signatures=False, state=state)
            return items, vectors, self.ann(), lambda keys: self.signatures(keys, state)

    def load(self, signatures: bool = True, state: dict | None = None) -> tuple[pd.DataFrame, np.ndarray]:
        """Every item (``ITEM_COLUMNS``; without ``motion_signature`` unless ``signatures``) and its unit vector
        (float16 [N, D]), as of the last sync."""
        state = self._read_state() if state is None else state
        columns = ITEM_COLUMNS if signatures else [c for c in ITEM_COLUMNS if c != "motion_signature"]
        parts, vectors = [], []
        for name, s in sorted(state.get("shards", {}).items()):
            if not s["n"]:
                continue
            stem = self._stem(name, s["version"])
            parts.append(pd.read_parquet(self.folder / "items" / f"{stem}.parquet", columns=columns))
            vectors.append(np.load(self.folder / "vectors" / f"{stem}.npy"))
        if not parts:
            return pd.DataFrame(columns=columns), np.zeros((0, 0), np.float16)
        return pd.concat(parts, ignore_index=True), np.concatenate(vectors)

    def signatures(self, keys: np.ndarray, state: dict | None = None) -> dict[int, np.ndarray]:
        """The motion signatures of the items ``keys``, read from the shards that hold them."""
        state = self._read_state() if state is None else state
        want = np.unique(np.asarray(keys, dtype=np.uint64))
        out: dict[int, np.ndarray] = {}
        for name, s in state.get("shards", {}).items():
            lo, hi = s["first_key"], s["first_key"] + s["n"]
            mine = want[(want >= lo) & (want < hi)]
            if not len(mine):
                continue
            df = pd.read_parquet(self.folder / "items" / f"{self._stem(name, s['version'])}.parquet",
                                 columns=["key", "motion_signature"], filters=[("key", "in", mine.tolist())])
            out.update({int(k): np.asarray(v, np.float32) for k, v in zip(df["key"], df["motion_signature"])})
        return out

    def ann(self) -> AnnIndex | None:
        """The approximate index, when the catalog is large enough to have one."""
        state = self._read_state()
        if not state.get("ann"):
            return None
        dim = next((s["dim"] for s in state["shards"].values() if s["n"]), 0)
        return AnnIndex.open(self.folder / "ann", dim)

    @staticmethod
    def _stem(name: str, version: str) -> str:
        return f"{name.removesuffix('.parquet')}.{version}"
