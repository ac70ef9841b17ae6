"""Label an archive: index it (incrementally, with the model's feature settings) -> predict -> write -> summary.

    index-corpus (subflow) ──> predict-labels ──> write-predictions ──> label-summary artifact

The bundle is loaded once, before indexing (a modified weights file is refused before any work), and that one
``Predictor`` gives the settings to index with, the predictions and whether CLIP was random.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.index_flow import index_corpus
from flows.runtime import without_heartbeats
from moclip.inference import Predictor
from moclip.params import LabelParams
from moclip.report.label_summary import distribution_markdown
from tasks.label_tasks import predict_labels, write_predictions


@flow(name="label-archive")
def label_archive(params: LabelParams) -> dict:
    """Top-k labels for every video of an archive, plus zero-shot scores for extra class names."""
    predictor = Predictor.load(params.model, params.run.device)
    index_params = params.index_params(predictor.settings)
    with without_heartbeats():  # a subflow: this flow's heartbeat covers the process
        indexed = index_corpus(index_params)
    preds = predict_labels(index_params.out, predictor, params.top_k, params.extra_classes, params.run.device)
    parquet, csv = write_predictions(preds, params.out, params.storage_options)
    summary = distribution_markdown(preds, bool(params.extra_classes), predictor.meta.clip.random_init)
    create_markdown_artifact(summary, key="label-summary",
                             description=f"{len(preds)} videos labelled -> {parquet}")
    return {"n_labelled": len(preds), "n_failed": indexed.failed, "predictions": parquet, "csv": csv,
            "top1_counts": preds["top1"].value_counts().to_dict() if len(preds) else {}}
