"""Validation comes from train only; UCF101-style groups never straddle train and validation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from moclip.train.splits import make_splits


def ucf_like(n_classes=4, groups=10, clips=4):
    rows = []
    for c in range(n_classes):
        for g in range(1, groups + 1):
            for k in range(clips):
                rows.append({"video_id": f"C{c}/v_C{c}_g{g:02d}_c{k:02d}.avi", "label": f"C{c}", "group": f"g{g:02d}",
                             "split": "test" if g <= 3 else "train"})
    return pd.DataFrame(rows)


def test_groups_never_on_both_sides_and_test_untouched():
    meta = ucf_like()
    s = make_splits(meta, val_fraction=0.15, seed=0)
    assert set(s.test) == set(np.flatnonzero(meta["split"] == "test"))
    assert not set(s.train) & set(s.val) and not set(s.val) & set(s.test) and not set(s.train) & set(s.test)
    key = meta["label"] + "/" + meta["group"]
    assert not set(key.iloc[s.train]) & set(key.iloc[s.val])
    for c in meta["label"].unique():  # every class keeps train and val videos
        assert (meta["label"].iloc[s.val] == c).any() and (meta["label"].iloc[s.train] == c).any()
    assert "whole groups" in s.protocol and "official" in s.protocol


def test_seeded_and_stratified_without_groups():
    meta = pd.DataFrame({"video_id": [f"v{i}" for i in range(60)], "label": [f"L{i % 3}" for i in range(60)],
                         "split": [None] * 60, "group": [None] * 60})
    a, b = make_splits(meta, seed=1), make_splits(meta, seed=1)
    assert np.array_equal(a.val, b.val) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.val, make_splits(meta, seed=2).val)
    counts = meta["label"].iloc[a.test].value_counts()
    assert len(counts) == 3 and counts.min() >= 3
    assert len(a.train) + len(a.val) + len(a.test) == 60


def test_unlabeled_rows_are_left_out():
    meta = ucf_like(n_classes=2, groups=5, clips=2)
    meta.loc[0, "label"] = None
    s = make_splits(meta)
    assert 0 not in set(s.train) | set(s.val) | set(s.test)


def test_grouped_rows_never_straddle_validation_beside_rows_without_groups():
    """Reviewed windows (grouped by their video) next to a training dataset without groups: a video's windows are
    all on one side; a class with one reviewed video keeps it in train."""
    import pandas as pd

    from moclip.train.splits import make_splits

    rows = [{"label": "x", "group": None, "split": "None"} for _ in range(10)]
    rows += [{"label": "x", "group": f"review:{v}", "split": "review"} for v in "ab" for _ in range(6)]
    rows += [{"label": "y", "group": "review:c", "split": "review"} for _ in range(6)]
    rows += [{"label": "y", "group": None, "split": "None"} for _ in range(10)]
    meta = pd.DataFrame(rows)
    for seed in range(5):
        s = make_splits(meta, 0.3, seed=seed)
        for g in ("review:a", "review:b", "review:c"):
            members = set(meta.index[meta["group"] == g])
            assert members <= set(s.train) or members <= set(s.val), (seed, g)
        assert set(meta.index[meta["group"] == "review:c"]) <= set(s.train)
        assert not set(meta.index[meta["split"] == "review"]) & set(s.test)
