"""Label an indexed archive with a trained bundle: top-k fusion predictions, plus optional zero-shot classes.

``probs`` are the fusion head's calibrated probabilities over the trained classes: ``softmax(logits / T)`` with the
temperature ``T`` fitted on the validation split after training (stored in the bundle). They sum to 1 over the
trained classes (a closed set: a video of an action the model never saw still gets a trained label), and on
videos like the validation set a label given with 0.8 is right about 80 % of the time. A video with no usable
motion vectors (``mv_missing``) is predicted from CLIP alone, by the head's own CLIP-only path.

Extra class names the model was never trained on are scored by CLIP zero-shot (text prompts) and reported in
their own columns, marked as zero-shot: see ``extra_class_columns``.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip import zeroshot
from moclip.dataset import Store, load_features, read_manifest
from moclip.inference import Inputs, Predictor
from moclip.train import calibrate

PREDICTIONS = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"
COLUMNS = ["video_id", "path", "labels", "probs", "top1", "top1_prob", "mv_missing", "model", "labeled_at"]


def predict(dataset: str, model: str | Path | Predictor, top_k: int = 5, extra_classes: list[str] | None = None,
            device: str = "auto") -> pd.DataFrame:
    """Top-k trained classes per video with calibrated probabilities (see the module docstring). ``model``: a
    bundle folder (loaded on ``device``), or a loaded ``Predictor`` (on its own device)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
    manifest = read_manifest(dataset) or {}
    predictor.check_dataset(dataset, manifest)
    fs = load_features(dataset)
    classes = predictor.classes
    k = min(top_k, len(classes))
    now = datetime.now(timezone.utc)
    if len(fs.meta) == 0:
        return pd.DataFrame(columns=COLUMNS)
    x = Inputs.of(fs, predictor.device)
    probs = predictor.fusion_probs(x)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = pd.DataFrame({
        "video_id": fs.meta["video_id"].to_numpy(),
        "path": fs.meta["path"].to_numpy(),
        "labels": [[classes[j] for j in row] for row in order],
        "probs": [[float(probs[i, j]) for j in row] for i, row in enumerate(order)],
    })
    out["top1"] = [labels[0] for labels in out["labels"]]
    out["top1_prob"] = [p[0] for p in out["probs"]]
    out["mv_missing"] = x.mv_missing.cpu().numpy()
    if extra_classes:
        text = predictor.zero_shot_text(extra_classes, dataset, manifest)
        out = pd.concat([out, extra_class_columns(x.clip.cpu().numpy(), predictor.text, text, extra_classes, top_k)],
                        axis=1)
    out["model"] = predictor.model_id
    out["labeled_at"] = now
    return out


def extra_class_columns(video_emb: np.ndarray, trained_text: np.ndarray, extra_text: np.ndarray,
                        extra_classes: list[str], top_k: int) -> pd.DataFrame:
    """Zero-shot scores of extra class names, each against the trained classes' names too.

    ``zero_shot_probs``: CLIP's zero-shot softmax (100 x cosine) over the trained and the extra names together,
    so an extra name is likely only where CLIP finds it closer than the trained classes; ``zero_shot_cosine``: the
    raw cosine similarity; ``zero_shot_margin``: its cosine minus the best trained class's (> 0: closer than any).
    """
    unit = zeroshot.normalize(video_emb)
    cos_trained, cos_extra = unit @ trained_text.T, unit @ extra_text.T
    joint = calibrate.softmax(100.0 * np.concatenate([cos_trained, cos_extra], axis=1))[:, trained_text.shape[0]:]
    margin = cos_extra - cos_trained.max(axis=1, keepdims=True)
    order = np.argsort(-joint, axis=1, kind="stable")[:, :min(top_k, len(extra_classes))]
    rows = range(len(order))
    return pd.DataFrame({
        "zero_shot_labels": [[extra_classes[j] for j in order[i]] for i in rows],
        "zero_shot_probs": [[float(joint[i, j]) for j in order[i]] for i in rows],
        "zero_shot_cosine": [[float(cos_extra[i, j]) for j in order[i]] for i in rows],
        "zero_shot_margin": [[float(margin[i, j]) for j in order[i]] for i in rows],
    })


def write_predictions(preds: pd.DataFrame, out: str, storage_options: dict | None = None) -> tuple[str, str]:
    """Predictions Parquet + a flat CSV export (top-k joined by '|'), each written atomically."""
    store = Store(out, storage_options)
    store.write_table(PREDICTIONS, pa.Table.from_pandas(preds, preserve_index=False))
    flat = preds.copy()
    for col in ("labels", "probs", "zero_shot_labels", "zero_shot_probs", "zero_shot_cosine", "zero_shot_margin"):
        if col in flat:
            flat[col] = ["|".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) for row in flat[col]]
    buf = io.StringIO()
    flat.to_csv(buf, index=False)
    store.write_bytes(PREDICTIONS_CSV, buf.getvalue().encode())
    return store.path(PREDICTIONS), store.path(PREDICTIONS_CSV)

