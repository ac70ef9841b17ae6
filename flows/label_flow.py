"""Label an archive: index it (incrementally, with the model's feature settings) -> predict -> write -> summary.

    index-corpus (subflow) ──> predict-labels ──> write-predictions ──> label-summary artifact
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.index_flow import index_corpus
from flows.runtime import without_heartbeats
from moclip.config import FeatureSettings
from moclip.label import clip_is_random, distribution_markdown, index_settings_of
from moclip.params import LabelParams
from tasks.label_tasks import predict_labels, write_predictions


@flow(name="label-archive")
def label_archive(params: LabelParams) -> dict:
    """Top-k labels for every video of an archive, plus zero-shot scores for extra class names."""
    index_params = params.index_params(FeatureSettings.model_validate(index_settings_of(params.model)))
    with without_heartbeats():  # a subflow: this flow's heartbeat covers the process
        indexed = index_corpus(index_params)
    preds = predict_labels(index_params.out, params.model, params.top_k, params.extra_classes, params.run.device)
    parquet, csv = write_predictions(preds, params.out, params.storage_options)
    summary = distribution_markdown(preds, bool(params.extra_classes), clip_is_random(params.model))
    create_markdown_artifact(summary, key="label-summary",
                             description=f"{len(preds)} videos labelled -> {parquet}")
    return {"n_labelled": len(preds), "n_failed": indexed.failed, "predictions": parquet, "csv": csv,
            "top1_counts": preds["top1"].value_counts().to_dict() if len(preds) else {}}
