"""Train and evaluate: dataset -> model bundle -> test metrics (once) -> report.md / report.html + artifact.

    train-models ──> evaluate-test ──> write-report ──> evaluation-report artifact
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.server import without_heartbeats
from moclip.params import EvaluateParams, TrainParams
from tasks.train_tasks import evaluate_test, train_models, write_report


@flow(name="train-model")
def train_model(params: TrainParams) -> str:
    """Train the MV net, fusion head, CLIP linear probe and zero-shot text embeddings; write the bundle."""
    return train_models(params)


@flow(name="evaluate-model")
def evaluate_model(params: EvaluateParams) -> dict:
    """Evaluate a bundle on the dataset's test split once; write the report and publish its summary.

    Returns ``{"results": EvaluationResults, "report_md": path, "report_html": path}``."""
    from moclip.report.render import summary_markdown

    results = evaluate_test(params)
    md, html = write_report(results, params.report_out)
    create_markdown_artifact(summary_markdown(results), key="evaluation-report",
                             description=f"report: {html}")
    return {"results": results, "report_md": md, "report_html": html}


@flow(name="train-and-evaluate")
def train_and_evaluate(params: TrainParams) -> dict:
    if params.dataset is None:
        raise ValueError("evaluation needs a dataset with a test split: give `dataset` (reviewed samples alone "
                         "train a model, `moclip train --reviewed`, but never test one)")
    with without_heartbeats():  # subflows: this flow's heartbeat covers the process
        model = train_model(params)
        return evaluate_model(EvaluateParams(dataset=params.dataset, model=model, device=params.train.device,
                                             report_out=params.report_out or f"{params.model_out}/report"))
