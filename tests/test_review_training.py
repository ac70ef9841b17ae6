"""Learning from reviews: reviewed videos, and the windows inside reviewed time ranges of long videos, are training
samples, with or without a training dataset; they train and validate, never test."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers.datasets import MOTIONS, index_in_process, motion_corpus
from helpers.training import QUICK
from helpers.videos import make_untrimmed

from moclip.config import WindowConfig
from moclip.review import ledger


def _run(labels, features: str, reviewed: pd.DataFrame) -> str:
    """A label run folder whose reviewers answered ``reviewed`` (REVIEW_COLUMNS' essentials)."""
    labels.mkdir(parents=True, exist_ok=True)
    (labels / "_labels.json").write_text(json.dumps({"features": features}))
    cols = {"item_id": reviewed["video_id"], "path": None, "model_label": None, "annotation_id": 1, "task_id": 1,
            "reviewer": "1", "reviewed_at": pd.Timestamp("2026-12-06", tz="UTC")}
    ledger.write(str(labels), ledger.REVIEWED, reviewed.assign(**{k: v for k, v in cols.items()
                                                                  if k not in reviewed}))
    return str(labels)


def test_windows_inside_reviewed_ranges_become_labelled_samples(tmp_path):
    from moclip.review.training import reviewed_features, window_labels

    meta = pd.DataFrame({"video_id": ["a"] * 5, "start_s": [0.0, 1.0, 2.0, 3.0, 4.0],
                         "end_s": [2.0, 3.0, 4.0, 5.0, 6.0]})
    ranges = pd.DataFrame({"video_id": ["a", "a"], "start_s": [0.0, 3.5], "end_s": [2.5, 6.0],
                           "label": ["right", "left"]})
    assert window_labels(meta, ranges).tolist() == ["right", "right", None, "left", "left"]

    root = tmp_path / "archive"
    make_untrimmed(root / "x" / "long.mp4", [(3, 0, 50), (0, 0, 50), (-3, 0, 50)], width=320, height=240, seed=3)
    ds = index_in_process(root, tmp_path / "ds", window=WindowConfig(seconds=1.0, stride=0.5))
    labels = _run(tmp_path / "labels", ds, pd.DataFrame({
        "video_id": ["x/long.mp4", "x/long.mp4"], "start_s": [0.0, 4.0], "end_s": [2.0, 6.0],
        "label": ["right", "left"]}))
    extra = reviewed_features(labels)
    m = extra.fs.meta
    assert (m["split"] == "review").all() and set(m["group"]) == {"review:x/long.mp4"}
    assert m.loc[m["label"] == "right", "end_s"].max() <= 2.5 and m.loc[m["label"] == "left", "start_s"].min() >= 3.5
    # each range's windows, and the ones half inside it at its end
    assert sorted(m["label"].value_counts().to_dict().items()) == [("left", 4), ("right", 4)]
    assert extra.fs.mv.shape[0] == extra.fs.clip.shape[0] == len(m)


@pytest.mark.slow
def test_a_model_trains_on_reviews_alone_or_with_a_dataset_and_reviews_never_test(tmp_path):
    from moclip.inference import read_meta
    from moclip.review.training import reviewed_samples
    from moclip.train.pipeline import train

    base = index_in_process(motion_corpus(tmp_path / "train", per_class=4, n_frames=16), tmp_path / "base")
    archive = motion_corpus(tmp_path / "archive", per_class=3, n_frames=16)
    for f in list(archive.rglob("*.mp4")):  # other videos than the training dataset's, with names of their own
        f.rename(f.with_name("new_" + f.name))
    feats = index_in_process(archive, tmp_path / "archive_ds")
    videos = pd.read_parquet(feats, columns=["video_id"])["video_id"].tolist()
    labels = _run(tmp_path / "labels", feats, pd.DataFrame({
        "video_id": videos, "start_s": np.nan, "end_s": np.nan, "label": [v.split("/")[0] for v in videos]}))
    extra = reviewed_samples([labels])
    assert len(extra.fs.meta) == 12 and set(extra.fs.meta["label"]) == set(MOTIONS)

    both = read_meta(train(base, tmp_path / "m_both", QUICK, log=lambda m: None, extra=extra).path)
    reviewed = set(videos)
    assert reviewed <= set(both.splits.train) | set(both.splits.val)  # every reviewed video trains or validates
    assert "reviewed samples train and validate (never test)" in both.dataset.split_protocol
    from moclip.dataset import load_features
    from moclip.train.splits import make_splits

    base_meta = load_features(base).meta
    test_ids = set(base_meta["video_id"].iloc[make_splits(base_meta, QUICK.val_fraction, seed=0).test])
    assert both.dataset.n_test == len(test_ids) > 0  # the dataset's own test split, as without reviews
    assert both.dataset.n_train + both.dataset.n_val == 16 - len(test_ids) + 12
    assert not test_ids & reviewed and not test_ids & (set(both.splits.train) | set(both.splits.val))

    alone = read_meta(train(None, tmp_path / "m_alone", QUICK, log=lambda m: None, extra=extra).path)
    assert alone.dataset.n_test == 0 and alone.dataset.n_train + alone.dataset.n_val == 12
    assert alone.dataset.url == feats and alone.classes == sorted(MOTIONS)
    assert not set(alone.splits.train) & set(alone.splits.val)  # grouped by video: never on both sides
