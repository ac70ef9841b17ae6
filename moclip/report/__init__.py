"""Human-readable summaries and reports."""

# The one wording of the random-CLIP-weights warning: the report, the index and label summaries and the CLI say
# this (Markdown adds a warning sign; see moclip.report.markdown.warning).
RANDOM_CLIP_WARNING = (
    "CLIP WEIGHTS ARE RANDOM (untrained): appearance features carry no pretrained knowledge, so zero-shot and "
    "CLIP-probe numbers measure nothing about CLIP and fusion is motion vectors plus random features; do not "
    "compare them with the paper."
)
