"""What a labelling run found, as Markdown: how many videos got which top-1 label (and which extra class)."""

from __future__ import annotations

from moclip.label.counts import LabelCounts
from moclip.report import RANDOM_CLIP_WARNING
from moclip.report import markdown as md


def mv_source_warning(counts: LabelCounts, trained: dict[str, int] | None) -> str | None:
    """A sentence when some videos' motion vectors come from a source the model was not trained on, else None."""
    if not counts.mv_source_unseen:
        return None
    have = ", ".join(f"{k} {v}" for k, v in sorted(counts.mv_sources.items()))
    seen = ", ".join(f"{k} {v}" for k, v in sorted((trained or {}).items()))
    return (f"{counts.mv_source_unseen} videos have motion vectors from a source the model was not trained on "
            f"(this archive: {have}; the model's training videos: {seen}); their labels lean on motion of another "
            "kind (rows: mv_source_unseen). Train on both, or index with the training data's --mv-source.")


ZERO_SHOT_NOTE = ("Labelled by CLIP ZERO-SHOT over the vocabulary (no trained model): probabilities are CLIP's "
                  "softmax at its logit scale (100 x cosine similarity), a ranking, NOT calibrated: a 0.9 is not "
                  "right 90 % of the time. Review a sample, then train a model on what was confirmed.")


def distribution_markdown(counts: LabelCounts, extra: bool, random_clip: bool = False,
                          trained_mv_sources: dict[str, int] | None = None, zero_shot: bool = False) -> str:
    """The top-1 label distribution of a run's ``counts``; with ``extra``, also the best zero-shot extra class per
    video; with ``random_clip``, the random-weights warning first; a warning when videos' MV source is one the
    model was not trained on (``trained_mv_sources``: the bundle's); ``zero_shot``: labels of CLIP zero-shot, said so
    (not calibrated)."""
    rows = [[lab, int(n), f"{s / n:.2f}"] for lab, (n, s) in sorted(counts.top1.items(), key=lambda kv: -kv[1][0])]
    n_missing = counts.mv_missing
    blocks = [
        md.heading(1, "Labels"),
        md.warning(RANDOM_CLIP_WARNING) if random_clip else None,
        md.warning(mv_source_warning(counts, trained_mv_sources)) if counts.mv_source_unseen else None,
        md.warning(ZERO_SHOT_NOTE) if zero_shot else None,
        md.paragraph(f"{counts.videos} videos labelled ({counts.predicted} predicted in this run, {counts.kept} "
                     "unchanged since the last)"
                     + (f"; {n_missing} had no usable motion vectors and were labelled from CLIP alone." if n_missing
                        else ".")),
        md.table(["top-1 label", "videos", "mean zero-shot probability (not calibrated)" if zero_shot
                  else "mean calibrated probability"], rows, [False, True, True]),
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
