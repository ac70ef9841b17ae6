"""What a label run found, as counts that add up shard by shard: the summary never holds a row per video."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

SUMMARY_COLUMNS = ["top1", "top1_prob", "mv_missing", "mv_source", "mv_source_unseen", "zero_shot_labels",
                   "zero_shot_probs", "zero_shot_margin"]


@dataclass
class LabelCounts:
    """Videos labelled, per top-1 label (count, sum of its probability), per best extra class (videos, of which
    closer than every trained class, sum of zero-shot probability); ``predicted`` of them in this run, ``kept``
    from before."""

    videos: int = 0
    predicted: int = 0
    kept: int = 0
    mv_missing: int = 0
    mv_sources: dict[str, int] = field(default_factory=dict)  # videos by MV source (native, reencoded)
    mv_source_unseen: int = 0  # videos whose MV source the model was not trained on
    top1: dict[str, list[float]] = field(default_factory=dict)  # label -> [videos, sum of top1_prob]
    extra: dict[str, list[float]] = field(default_factory=dict)  # label -> [videos, closer, sum of zero-shot prob]

    @classmethod
    def of(cls, preds: pd.DataFrame, predicted: int = 0) -> LabelCounts:
        """The counts of a frame of predictions (``SUMMARY_COLUMNS``; the zero-shot ones when present)."""
        c = cls(videos=len(preds), predicted=predicted, kept=len(preds) - predicted)
        if not len(preds):
            return c
        c.mv_missing = int(preds["mv_missing"].sum())
        if "mv_source" in preds:  # files written before it have neither column
            c.mv_sources = {str(k): int(v) for k, v in preds["mv_source"].value_counts().items()}
            c.mv_source_unseen = int(preds["mv_source_unseen"].sum())
        g = preds.groupby("top1")["top1_prob"].agg(["count", "sum"])
        c.top1 = {str(k): [int(r["count"]), float(r["sum"])] for k, r in g.iterrows()}
        if "zero_shot_labels" in preds:
            best = pd.DataFrame({"label": preds["zero_shot_labels"].map(lambda v: v[0]),
                                 "closer": preds["zero_shot_margin"].map(lambda v: v[0] > 0),
                                 "prob": preds["zero_shot_probs"].map(lambda v: v[0])})
            g = best.groupby("label").agg(videos=("closer", "size"), closer=("closer", "sum"), prob=("prob", "sum"))
            c.extra = {str(k): [int(r["videos"]), int(r["closer"]), float(r["prob"])] for k, r in g.iterrows()}
        return c

    def add(self, other: LabelCounts) -> None:
        self.videos += other.videos
        self.predicted += other.predicted
        self.kept += other.kept
        self.mv_missing += other.mv_missing
        self.mv_source_unseen += other.mv_source_unseen
        for k, v in other.mv_sources.items():
            self.mv_sources[k] = self.mv_sources.get(k, 0) + v
        for mine, theirs in ((self.top1, other.top1), (self.extra, other.extra)):
            for k, v in theirs.items():
                mine[k] = [a + b for a, b in zip(mine[k], v)] if k in mine else list(v)

    def top1_counts(self) -> dict[str, int]:
        """Videos per top-1 label, most first."""
        return {k: int(v[0]) for k, v in sorted(self.top1.items(), key=lambda kv: (-kv[1][0], kv[0]))}
