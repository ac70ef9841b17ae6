"""Which feature shards a label run must predict, which it may keep, and which predictions it must remove.

Predictions are sharded like the features: one Parquet file per feature shard, in ``OUT/predictions/``, named

    <feature shard>.<feature-file identity>.<label key>.parquet

The identity is a hash of the feature file's listing entry (size, mtime and inode locally; ETag, generation or
checksum on object stores): it changes whenever the index rewrites the shard. The label key is a hash of the
model's weights and the label options (top-k, extra classes). So a rerun plans from two folder listings alone:

- a prediction file whose name matches its feature shard's identity and the run's key is current: kept as is;
- a feature shard without one is predicted; when an older prediction file of it has the same key (the index
  rewrote the shard: a video re-indexed elsewhere, or marked deleted), its rows whose feature row is unchanged
  (same video id and ``indexed_at``) are kept and only the rest predicted, so only new and changed videos are;
- a model or option change changes the key: every shard is predicted again;
- prediction files of feature shards that are gone (all their videos re-indexed elsewhere or deleted) are removed;
- with time windows, a prediction file is current only while its windows and segments files (same name, in
  ``windows.parquet/`` and ``segments.parquet/``) are there too: the three live and die together.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

PREDICTIONS_DIR = "predictions"
FORMAT = 2  # of prediction files: part of the label key, so a change re-predicts (2: mv_source, mv_source_unseen)
_NAME = re.compile(r"(.+)\.([0-9a-f]{10})\.([0-9a-f]{10})\.parquet")  # only what prediction_name writes
IDENTITY_KEYS = ("ETag", "etag", "generation", "md5Hash", "crc32c", "size", "mtime", "ino", "LastModified",
                 "last_modified", "created")


def file_identity(info: dict) -> str:
    """10 hex digits naming one version of a file, from its fsspec listing entry."""
    fields = {k: str(info[k]) for k in IDENTITY_KEYS if info.get(k) is not None}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def label_key(model_files: dict[str, str], top_k: int, extra_classes: list[str], timeline: dict | None = None) -> str:
    """10 hex digits naming what a prediction depends on besides the features: every weights file's hash (the
    bundle's ``files``), top-k and the extra class names, the prediction file format, and with time windows how
    segments are made (``timeline``)."""
    blob = {"files": model_files, "top_k": top_k, "extra": list(extra_classes), "format": FORMAT}
    if timeline is not None:
        blob["timeline"] = timeline
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:10]


def prediction_name(feature_shard: str, identity: str, key: str) -> str:
    return f"{feature_shard.removesuffix('.parquet')}.{identity}.{key}.parquet"


def parse_name(name: str) -> tuple[str, str, str] | None:
    """(feature shard, identity, key) of a prediction file name; None for anything else."""
    m = _NAME.fullmatch(name)
    return (f"{m[1]}.parquet", m[2], m[3]) if m else None


@dataclass
class ShardWork:
    """One feature shard in a label run."""

    feature_shard: str
    target: str  # the prediction file that stands for it once the run is done
    size: int  # bytes of the feature shard (to balance tasks)
    current: bool = False  # ``target`` exists already: only read for the summary
    reuse: str | None = None  # an older prediction file with this run's key: rows of unchanged videos are kept
    stale: list[str] = field(default_factory=list)  # other prediction files of this shard, removed after


@dataclass
class LabelPlan:
    shards: list[ShardWork]
    orphans: list[str]  # prediction files whose feature shard is gone
    unknown: list[str]  # files in the predictions folder that are not prediction files (left alone)

    @property
    def to_predict(self) -> list[ShardWork]:
        return [w for w in self.shards if not w.current]


def plan_labels(feature_infos: dict[str, dict], prediction_infos: dict[str, dict], key: str,
                sibling_infos: list[dict[str, dict]] | None = None) -> LabelPlan:
    """The plan (see the module docstring) from the two folders' listings (``Store.shard_infos``), and with time
    windows the windows' and segments' folders' listings (``sibling_infos``)."""
    siblings = sibling_infos or []
    by_shard: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    unknown = []
    for name in prediction_infos:
        parsed = parse_name(name)
        if parsed is None:
            unknown.append(name)
        else:
            by_shard[parsed[0]].append((name, parsed[1], parsed[2]))
    shards = []
    for shard, info in feature_infos.items():
        target = prediction_name(shard, file_identity(info), key)
        have = by_shard.pop(shard, [])
        older = [n for n, _, k in have if n != target and k == key]
        shards.append(ShardWork(
            feature_shard=shard, target=target, size=int(info.get("size") or 0),
            current=any(n == target for n, _, _ in have) and all(target in sib for sib in siblings),
            reuse=older[0] if older else None,
            stale=[n for n, _, _ in have if n != target]))
    orphans = [n for files in by_shard.values() for n, _, _ in files]
    return LabelPlan(shards=shards, orphans=sorted(orphans), unknown=unknown)


def group_work(shards: list[ShardWork], workers: int, max_bytes: int = 32 << 20) -> list[list[ShardWork]]:
    """Consecutive groups of shards, one Dask task each: at most ``max_bytes`` of features to predict per group
    (bounded worker memory and Prefect's ~0.2 s per task amortised over ~1,000 videos), and at least 4 groups per
    worker when there are enough shards, so no worker waits for the last. A current shard (only read for the
    summary) weighs a twentieth of its size."""
    if not shards:
        return []
    weights = [w.size / 20 if w.current else w.size for w in shards]
    total = sum(weights) or 1
    n = max(-(-int(total) // max_bytes), min(len(shards), 4 * max(workers, 1)))
    groups: list[list[ShardWork]] = [[]]
    acc = 0.0
    for w, weight in zip(shards, weights):
        if groups[-1] and acc + weight / 2 > total * len(groups) / n:
            groups.append([])
        groups[-1].append(w)
        acc += weight
    return groups
