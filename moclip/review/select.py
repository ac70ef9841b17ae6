"""What a person should look at next: the items of a label run the model is least sure of, diverse, every predicted
class represented, never one already picked or reviewed.

    items        a label run's videos (``predictions/``), or its windows (``windows.parquet/``) when it had time
                 windows; each with its top-k labels and probabilities
    uncertainty  ``margin`` (top-1 minus top-2 probability: smallest first), ``entropy`` (over the top-k, the rest
                 of the probability as one more outcome: largest first), or ``random`` (the baseline)
    pool         the ``pool_factor`` x N most uncertain items not in the ledger (``moclip.review.ledger``)
    quota        each predicted class's most uncertain items first, ``per_class`` of them (rare classes get looked at)
    diversity    the rest by k-center greedy over the items' CLIP directions (from the search catalog of the run's
                 features): each next item the one farthest from everything picked or reviewed before, so 200
                 near-identical clips do not fill a batch, nor clips like those already reviewed

Every pick says why (``why``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from moclip.dataset import Store, read_manifest
from moclip.label.export import LABELS_MANIFEST
from moclip.label.plan import PREDICTIONS_DIR, parse_name
from moclip.label.timeline import WINDOWS_DIR

Strategy = Literal["margin", "entropy", "random"]
ITEM_COLUMNS = ["item_id", "video_id", "path", "start_s", "end_s", "labels", "probs", "top1", "top1_prob",
                "uncertainty", "why", "strategy", "model"]


def item_id(video_id: str, start_s: float | None = None, end_s: float | None = None) -> str:
    """An item's id: the video id, with its time range for a window (``video@12.000-16.000``)."""
    return video_id if start_s is None else f"{video_id}@{start_s:.3f}-{end_s:.3f}"


def uncertainty(probs: list[np.ndarray], strategy: Strategy, rng: np.random.Generator) -> np.ndarray:
    """Higher = look first. ``probs``: each item's top-k probabilities, best first."""
    if strategy == "random":
        return rng.random(len(probs))
    k = max((len(p) for p in probs), default=0)
    p = np.zeros((len(probs), max(k, 2)))
    for i, row in enumerate(probs):  # ragged lists -> one array (the columns after a row's own k stay 0)
        p[i, :len(row)] = row
    p = np.clip(p, 0, 1)
    if strategy == "margin":
        return 1.0 - (p[:, 0] - p[:, 1])
    q = np.concatenate([p, np.clip(1.0 - p.sum(axis=1, keepdims=True), 0, 1)], axis=1)  # the rest: one outcome
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(q > 0, q * np.log(q), 0.0).sum(axis=1)


def run_items(labels: str, storage_options: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """A label run's items (whole videos, or windows of a windowed run) and its ``_labels.json``."""
    out = Store(labels, storage_options)
    about = out.read_json(LABELS_MANIFEST)
    if not about:
        raise ValueError(f"{labels}: not a label run's output (no {LABELS_MANIFEST}): run `moclip label` first")
    windowed = bool(about.get("windowed")) or bool(Store(out.path(WINDOWS_DIR), storage_options).shard_names())
    folder = Store(out.path(WINDOWS_DIR if windowed else PREDICTIONS_DIR), storage_options)
    cols = ["video_id", "path", "labels", "probs", "top1", "top1_prob", "model"] + (
        ["start_s", "end_s"] if windowed else [])
    key = about.get("label_key")
    # the run's own files only: not an older model's (a shard that failed in the last run), nor a user's own file
    names = [n for n in folder.shard_names() if (parse_name(n) or (None, None, None))[2] == key or key is None]
    if not names:
        raise ValueError(f"{folder.url}: no prediction files of the last label run (label key {key}) to review")
    df = pd.concat([folder.read_table(n, cols).to_pandas() for n in names], ignore_index=True)
    if not windowed:
        df["start_s"], df["end_s"] = np.nan, np.nan
    df["item_id"] = [item_id(v) if not windowed else item_id(v, s, e)
                     for v, s, e in zip(df["video_id"], df["start_s"], df["end_s"])]
    return df.drop_duplicates("item_id").reset_index(drop=True), about


def directions(about: dict, items: pd.DataFrame, storage_options: dict | None = None) -> np.ndarray | None:
    """Each item's unit CLIP direction from the search catalog of the run's features (synced here; None when the
    features cannot be read: then the pick is by uncertainty and quota alone)."""
    from moclip.search.catalog import Catalog

    features = about.get("features")
    manifest = read_manifest(features, storage_options) if features else None
    if not manifest:
        return None
    catalog = Catalog(features, manifest, storage_options=storage_options)
    catalog.sync()
    cat, vectors = catalog.load()
    if len(cat) == 0:
        return None
    windowed = items["start_s"].notna().any()
    keys = [item_id(v) if not windowed else item_id(v, s, e)
            for v, s, e in zip(cat["video_id"], cat["start_s"], cat["end_s"])]
    row = pd.Series(np.arange(len(keys)), index=keys)
    row = row[~row.index.duplicated()]
    at = row.reindex(items["item_id"]).to_numpy()
    out = np.zeros((len(items), vectors.shape[1]), np.float32)
    ok = ~np.isnan(at)
    out[ok] = vectors[at[ok].astype(np.int64)].astype(np.float32)
    return out


def k_center(vectors: np.ndarray, pool: np.ndarray, chosen: list[int], n: int,
             covered: np.ndarray | None = None) -> list[tuple[int, float]]:
    """Up to ``n`` more of ``pool`` (row numbers), each the farthest (cosine distance) from ``chosen``, from
    ``covered`` (directions of items reviewed before: [M, D]) and from every one picked before it; the first, with
    nothing chosen or covered, is ``pool``'s first. Returns (row, its distance)."""
    picked: list[tuple[int, float]] = []
    if n <= 0 or len(pool) == 0:
        return picked
    v = np.asarray(vectors[pool], np.float32)  # gathered once
    dist = np.full(len(pool), np.inf)
    if chosen:
        dist = np.minimum(dist, (1.0 - v @ np.asarray(vectors[chosen], np.float32).T).min(axis=1))
    if covered is not None and len(covered):
        dist = np.minimum(dist, (1.0 - v @ np.asarray(covered, np.float32).T).min(axis=1))
    taken = np.zeros(len(pool), bool)
    for _ in range(min(n, len(pool))):
        j = int(np.argmax(np.where(taken, -np.inf, dist))) if np.isfinite(dist).any() else int(np.argmin(taken))
        taken[j] = True
        picked.append((int(pool[j]), float(dist[j]) if np.isfinite(dist[j]) else 0.0))
        dist = np.minimum(dist, 1.0 - v @ v[j])
    return picked


def select(items: pd.DataFrame, n: int, strategy: Strategy = "margin", exclude: set[str] | None = None,
           vectors: np.ndarray | None = None, pool_factor: float = 5.0, per_class: int | None = None,
           seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` items to review (``ITEM_COLUMNS``), most uncertain first among the picks (see the module
    docstring); ``exclude``: item ids already picked or reviewed; ``vectors``: unit directions [len(items), D]."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    seen = items["item_id"].isin(exclude or set()).to_numpy()
    fresh = items[~seen].reset_index(drop=True)
    vec = None if vectors is None else vectors[~seen]
    covered = None if vectors is None else vectors[seen][np.linalg.norm(vectors[seen], axis=1) > 0]
    u = uncertainty(list(fresh["probs"]), strategy, rng)
    order = np.argsort(-u, kind="stable")
    pool = order[:max(n, int(np.ceil(pool_factor * n)))] if strategy != "random" else order[:n]
    why: dict[int, str] = {}
    rank = {int(r): i + 1 for i, r in enumerate(order)}
    what = {"margin": "margin", "entropy": "entropy", "random": "random draw"}[strategy]

    def said(r: int) -> str:
        p = list(fresh.at[r, "probs"])
        detail = f"margin {p[0] - (p[1] if len(p) > 1 else 0):.3f}" if strategy == "margin" else (
            f"entropy {u[r]:.3f}" if strategy == "entropy" else "random")
        return f"{detail} (rank {rank[r]} of {len(fresh)} by {what})"

    if strategy != "random":
        top1 = fresh["top1"].to_numpy()[pool]
        classes = pd.Series(top1).value_counts(ascending=True)
        quota = per_class if per_class is not None else max(1, n // (4 * max(1, len(classes))))
        by_class = pd.Series(pool).groupby(top1, sort=False).apply(list).to_dict()  # each in uncertainty order
        for label in classes.index:  # rarest predicted class first
            if len(why) >= n:
                break
            for r in by_class[label][:min(quota, n - len(why))]:
                why[int(r)] = f"{said(int(r))}; quota of predicted class {label!r} ({classes[label]} in the pool)"
        rest = np.array([r for r in pool if int(r) not in why], dtype=np.int64)
        known = rest if vec is None else rest[np.linalg.norm(vec[rest], axis=1) > 0]  # in the catalog
        if vec is not None and len(known):
            for r, d in k_center(vec, known, list(why), n - len(why), covered):
                why[r] = f"{said(r)}; diverse: cosine distance {d:.3f} to the nearest pick or reviewed item"
        for r in rest:  # the rest by uncertainty (items without a CLIP direction, or no directions at all)
            if len(why) >= n:
                break
            if int(r) not in why:
                why[int(r)] = said(int(r))
    else:
        for r in pool:
            why[int(r)] = said(int(r))
    rows = sorted(why, key=lambda r: (-u[r], r))
    out = fresh.loc[rows].assign(uncertainty=u[rows], why=[why[r] for r in rows], strategy=strategy)
    return out[ITEM_COLUMNS].reset_index(drop=True)
