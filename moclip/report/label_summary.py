"""What a labelling run found, as Markdown: how many videos got which top-1 label (and which extra class)."""

from __future__ import annotations

import pandas as pd

from moclip.report import RANDOM_CLIP_WARNING
from moclip.report import markdown as md


def distribution_markdown(preds: pd.DataFrame, extra: bool, random_clip: bool = False) -> str:
    """The top-1 label distribution of ``preds`` (``moclip.label.predict``'s frame); with ``extra``, also the best
    zero-shot extra class per video; with ``random_clip``, the random-weights warning first."""
    n_missing = int(preds["mv_missing"].sum()) if "mv_missing" in preds and len(preds) else 0
    rows = []
    if len(preds):
        g = preds.groupby("top1")["top1_prob"].agg(["count", "mean"]).sort_values("count", ascending=False)
        rows = [[lab, int(r["count"]), f"{r['mean']:.2f}"] for lab, r in g.iterrows()]
    blocks = [
        md.heading(1, "Labels"),
        md.warning(RANDOM_CLIP_WARNING) if random_clip else None,
        md.paragraph(f"{len(preds)} videos labelled"
                     + (f"; {n_missing} had no usable motion vectors and were labelled from CLIP alone." if n_missing
                        else ".")),
        md.table(["top-1 label", "videos", "mean calibrated probability"], rows, [False, True, True]),
    ]
    if extra and len(preds):
        best = pd.DataFrame({"label": preds["zero_shot_labels"].map(lambda v: v[0]),
                             "closer": preds["zero_shot_margin"].map(lambda v: v[0] > 0),
                             "prob": preds["zero_shot_probs"].map(lambda v: v[0])})
        g = best.groupby("label").agg(videos=("closer", "size"), closer=("closer", "sum"), prob=("prob", "mean"))
        blocks += [
            md.heading(2, "Extra classes, scored ZERO-SHOT by CLIP (not trained; not comparable with the above)"),
            md.paragraph("Probabilities are CLIP's zero-shot softmax over the trained and the extra class names "
                         "together."),
            md.table(["best extra class", "videos", "of which closer than every trained class",
                      "mean zero-shot probability"],
                     [[lab, int(r["videos"]), int(r["closer"]), f"{r['prob']:.2f}"]
                      for lab, r in g.sort_values("videos", ascending=False).iterrows()],
                     [False, True, True, True]),
        ]
    return md.document(blocks)
