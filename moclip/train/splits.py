"""Train / validation / test splits. Validation is carved from train only; test is touched once, at the end.

When videos carry groups (UCF101's ``gXX``: same actor and scene), validation takes whole groups, per class, so a
group never sits on both sides. Without groups it takes a seeded, stratified random share of each class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Splits:
    train: np.ndarray  # row indices
    val: np.ndarray
    test: np.ndarray
    protocol: str  # how validation (and test, if not official) was chosen, in words


def has_value(values: pd.Series) -> pd.Series:
    """Where ``values`` holds something: not null, not "" and not the string "None" (labels and groups)."""
    return values.notna() & (values.astype(str) != "") & (values.astype(str) != "None")


def make_splits(meta: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """``meta`` needs ``label`` and may have ``split`` (train/test, or "review": reviewed samples, which train and
    validate but never test) and ``group``; unlabeled rows are left out."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    labeled = has_value(meta["label"]).to_numpy()
    split = meta["split"].astype(str).to_numpy() if "split" in meta else np.array(["None"] * len(meta))
    groups = meta["group"] if "group" in meta else pd.Series([None] * len(meta))
    has_group = has_value(groups).to_numpy()
    reviewed = labeled & (split == "review")
    official = labeled & np.isin(split, ["train", "test"])
    rest = labeled & ~reviewed
    notes = []
    if official.any():
        pool = np.flatnonzero(official & (split == "train"))
        test = np.flatnonzero(official & (split == "test"))
        notes.append("official train/test split")
    elif rest.any():
        pool, test = _carve(np.flatnonzero(rest), meta, has_group, test_fraction, rng)
        notes.append(f"no official split: {test_fraction:.0%} of each class held out as test"
                     + (" by group" if has_group[rest].all() else " at random"))
    else:
        pool, test = np.zeros(0, np.int64), np.zeros(0, np.int64)
    if reviewed.any():
        pool = np.union1d(pool, np.flatnonzero(reviewed))
        notes.append(f"{int(reviewed.sum())} reviewed samples train and validate (never test)")
    train, val = _carve(pool, meta, has_group, val_fraction, rng)
    by_group = len(pool) and has_group[pool].all()
    notes.append(f"validation: {val_fraction:.0%} of each class's train videos, "
                 + ("whole groups held out (no group on both sides)" if by_group else "at random (seeded)"))
    return Splits(np.sort(train), np.sort(val), np.sort(test), "; ".join(notes))


def _carve(idx: np.ndarray, meta: pd.DataFrame, has_group: np.ndarray, fraction: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (keep, held out), per class: rows with a group by whole groups (a class with one group
    keeps it), the others at random. A class of one kind only is split as before: by group when every row has
    one (and there are two groups at least), else by video."""
    labels = meta["label"].to_numpy()
    groups = meta["group"].to_numpy() if "group" in meta else np.array([None] * len(meta))
    keep, held = [], []
    for label in sorted(set(labels[idx])):
        rows = idx[labels[idx] == label]
        if len(rows) < 2:
            keep += rows.tolist()
            continue
        grouped, loose = rows[has_group[rows]], rows[~has_group[rows]]
        if len(grouped) == len(rows) and len(set(groups[rows])) < 2:  # one group: a random share of its rows
            grouped, loose = grouped[:0], rows
        out: list[int] = []
        if len(grouped):
            units = sorted(set(groups[grouped]))
            rng.shuffle(units)
            target, taken = fraction * len(grouped), 0
            for g in units[:-1]:  # at least one group stays
                if taken >= target:
                    break
                members = grouped[groups[grouped] == g]
                out += members.tolist()
                taken += len(members)
        if len(loose):
            perm = rng.permutation(loose)
            n_out = min(len(loose) - (0 if out or len(grouped) else 1), max(1, int(round(fraction * len(loose)))))
            out += perm[:n_out].tolist()
        held += out
        gone = set(out)
        keep += [r for r in rows.tolist() if r not in gone]
    return np.array(sorted(keep), dtype=np.int64), np.array(sorted(held), dtype=np.int64)
