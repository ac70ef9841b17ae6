"""Label an indexed archive with a trained bundle, shard by shard (``plan`` -> ``worker`` -> ``export``).

    plan.py      which feature shards need predicting (two folder listings; prediction files named for what they
                 were made from)
    worker.py    predict a group of shards on a Dask worker; one prediction file per feature shard, atomic
    predict.py   the predictions of a set of features (and ``predict``: a small dataset at once, in memory)
    counts.py    the run's label distribution, added up shard by shard
    export.py    the CSV export, ``_labels.json`` and the timelines page
    timeline.py  with time windows: per-window predictions -> segments (windows.parquet, segments.parquet)
    scoring.py   a timeline against a ground truth: frame accuracy, segment F1, boundary error
"""

from moclip.label.counts import LabelCounts
from moclip.label.plan import PREDICTIONS_DIR, LabelPlan, ShardWork, group_work, label_key, plan_labels
from moclip.label.predict import extra_class_columns, predict, predict_features
from moclip.label.worker import GroupResult, LabelTarget, label_shards

__all__ = [
    "PREDICTIONS_DIR", "GroupResult", "LabelCounts", "LabelPlan", "LabelTarget", "ShardWork",
    "extra_class_columns", "group_work", "label_key", "label_shards", "plan_labels", "predict", "predict_features",
]
