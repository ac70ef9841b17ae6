"""The review loop as deployments: a round after labelling, and learning from what people answered.

    review-round:  select-batch ──> export-batch (Label Studio project) ──> review-round artifact
    retrain:       import-reviews ──> train-model (reviews + dataset) ──> evaluate-model ──> label-archive again
"""

from __future__ import annotations

import time
import uuid

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.server import without_heartbeats
from flows.train_flow import evaluate_model, train_model
from moclip.dataset import Store, read_manifest, read_settings
from moclip.label.export import LABELS_MANIFEST
from moclip.params import EvaluateParams, LabelParams, RetrainParams, ReviewRoundParams, TrainParams
from tasks.review_tasks import export_batch, import_reviews_task, select_batch


@flow(name="review-round")
def review_round(params: ReviewRoundParams) -> dict:
    """Pick the batch people should check next and put it in the Label Studio project."""
    if params.batch_out is None and not Store(params.labels).local:
        raise ValueError(f"{params.labels}: give batch_out, a local folder for the batch (batches are local files)")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    batch = params.batch_out or f"{params.labels.rstrip('/')}/_review/batches/{stamp}-{uuid.uuid4().hex[:6]}"
    n = select_batch(params.labels, params.n, params.strategy, batch)
    done = export_batch(batch, params.url, params.project, params.media_url, params.document_root)
    create_markdown_artifact(f"# Review round\n\n{n} items picked ({params.strategy}) into `{batch}`; Label Studio "
                             f"project **{done.title}** (id {done.project}): {done.imported} tasks imported, "
                             f"{done.already} already there.\n", key="review-round",
                             description=f"{done.imported} tasks for review")
    return {"batch": batch, "picked": n, "project": done.project, "imported": done.imported, "already": done.already}


def relabel_params(labels: str, model: str, storage_options: dict | None = None) -> LabelParams:
    """The label run's own parameters (``_labels.json``) with the new model in place of the old or the vocabulary,
    and the time windows its features were indexed with (a zero-shot run may have taken them from its features)."""
    about = Store(labels, storage_options).read_json(LABELS_MANIFEST) or {}
    recorded = about.get("params")
    if not recorded:
        raise ValueError(f"{labels}: its {LABELS_MANIFEST} does not record how it was labelled (a run of an older "
                         "moclip): label it again with --model")
    keep = {k: v for k, v in recorded.items() if k not in ("model", "classes", "prompts", "features")}
    manifest = read_manifest(str(about.get("features")), storage_options) if about.get("features") else None
    if manifest and manifest.get("settings"):
        keep["windows"] = read_settings(manifest).window.model_dump()
    return LabelParams.model_validate({**keep, "model": model, "storage_options": storage_options or {}})


@flow(name="retrain")
def retrain(params: RetrainParams) -> dict:
    """Import the answers, train on them, evaluate (with a dataset), and label the archive again."""
    from flows.label_flow import label_archive

    out: dict = {}
    with without_heartbeats():
        if params.url:
            rep = import_reviews_task(params.labels, params.url, params.project, params.storage_options)
            out["imported"] = {"answered": rep.answered, "skipped": rep.skipped, "model_right": rep.model_right,
                               "disagreements": len(rep.disagreements)}
        model = train_model(TrainParams(dataset=params.dataset, reviewed=[params.labels], model_out=params.model_out,
                                        train=params.train))
        out["model"] = model
        if params.dataset:
            out["evaluation"] = evaluate_model(EvaluateParams(dataset=params.dataset, model=model,
                                                              device=params.train.device,
                                                              report_out=f"{params.model_out}/report"))
        if params.relabel:
            out["labels"] = label_archive(relabel_params(params.labels, model, params.storage_options))
    return out
