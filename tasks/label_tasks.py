"""Prefect tasks of the label flow: thin wrappers over moclip.label."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from moclip import label
from moclip.inference import Predictor


@task(name="predict-labels", cache_policy=NO_CACHE)
def predict_labels(dataset: str, model: str | Predictor, top_k: int, extra_classes: list[str],
                   device: str) -> pd.DataFrame:
    """``model``: a bundle folder, loaded on ``device``, or a ``Predictor`` already loaded (on its own device)."""
    return label.predict(dataset, model, top_k, extra_classes or None, device)


@task(name="write-predictions", cache_policy=NO_CACHE)
def write_predictions(preds: pd.DataFrame, out: str, storage_options: dict) -> tuple[str, str]:
    return label.write_predictions(preds, out, storage_options)
