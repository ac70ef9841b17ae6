"""What a labelling run found, as Markdown: how many videos got which top-1 label (and which extra class)."""

from __future__ import annotations

from moclip.label.counts import LabelCounts
from moclip.report import RANDOM_CLIP_WARNING
from moclip.report import markdown as md


def distribution_markdown(counts: LabelCounts, extra: bool, random_clip: bool = False) -> str:
    """The top-1 label distribution of a run's ``counts``; with ``extra``, also the best zero-shot extra class per
    video; with ``random_clip``, the random-weights warning first."""
    rows = [[lab, int(n), f"{s / n:.2f}"] for lab, (n, s) in sorted(counts.top1.items(), key=lambda kv: -kv[1][0])]
    n_missing = counts.mv_missing
    blocks = [
        md.heading(1, "Labels"),
        md.warning(RANDOM_CLIP_WARNING) if random_clip else None,
        md.paragraph(f"{counts.videos} videos labelled ({counts.predicted} predicted in this run, {counts.kept} "
                     "unchanged since the last)"
                     + (f"; {n_missing} had no usable motion vectors and were labelled from CLIP alone." if n_missing
                        else ".")),
        md.table(["top-1 label", "videos", "mean calibrated probability"], rows, [False, True, True]),
    ]
    if extra and counts.videos:
        blocks += [
            md.heading(2, "Extra classes, scored ZERO-SHOT by CLIP (not trained; not comparable with the above)"),
            md.paragraph("Probabilities are CLIP's zero-shot softmax over the trained and the extra class names "
                         "together."),
            md.table(["best extra class", "videos", "of which closer than every trained class",
                      "mean zero-shot probability"],
                     [[lab, int(n), int(closer), f"{s / n:.2f}"]
                      for lab, (n, closer, s) in sorted(counts.extra.items(), key=lambda kv: -kv[1][0])],
                     [False, True, True, True]),
        ]
    return md.document(blocks)
