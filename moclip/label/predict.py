"""Top-k fusion predictions for a set of videos' features, plus optional zero-shot classes.

``probs`` are the fusion head's calibrated probabilities over the trained classes: ``softmax(logits / T)`` with the
temperature ``T`` fitted on the validation split after training (stored in the bundle). They sum to 1 over the
trained classes (a closed set: a video of an action the model never saw still gets a trained label), and on
videos like the validation set a label given with 0.8 is right about 80 % of the time. A video with no usable
motion vectors (``mv_missing``) is predicted from CLIP alone, by the head's own CLIP-only path.

Extra class names the model was never trained on are scored by CLIP zero-shot (text prompts) and reported in
their own columns, marked as zero-shot: see ``extra_class_columns``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from moclip import zeroshot
from moclip.dataset import FeatureSet, load_features, read_manifest
from moclip.dataset.reader import mv_source_of
from moclip.inference import Inputs, Labeller, Predictor
from moclip.models.run import softmax

ZERO_SHOT_COLUMNS = ["zero_shot_labels", "zero_shot_probs", "zero_shot_cosine", "zero_shot_margin"]


def schema(extra: bool) -> pa.Schema:
    """The predictions' columns (every shard of a run has the same: ``extra``, the zero-shot ones too).
    ``indexed_at`` is the feature row's: a rerun keeps a prediction while the row it was made from is unchanged."""
    text, nums = pa.list_(pa.string()), pa.list_(pa.float64())
    fields = [("video_id", pa.string()), ("path", pa.string()), ("labels", text), ("probs", nums),
              ("top1", pa.string()), ("top1_prob", pa.float64()), ("mv_missing", pa.bool_()),
              ("mv_source", pa.string()), ("mv_source_unseen", pa.bool_())]
    if extra:
        fields += [(c, text if c == "zero_shot_labels" else nums) for c in ZERO_SHOT_COLUMNS]
    fields += [("model", pa.string()), ("labeled_at", pa.timestamp("ms", tz="UTC")),
               ("indexed_at", pa.timestamp("ms", tz="UTC"))]
    return pa.schema(fields)


def predict_features(predictor: Labeller, fs: FeatureSet, top_k: int = 5, extra_classes: list[str] | None = None,
                     extra_text: np.ndarray | None = None) -> pd.DataFrame:
    """Predictions (``schema``'s columns) for the videos of ``fs``; ``extra_text``: the zero-shot embeddings of
    ``extra_classes`` (``Predictor.zero_shot_text``)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    extra = bool(extra_classes)
    if len(fs.meta) == 0:
        return schema(extra).empty_table().to_pandas()
    classes = predictor.classes
    x = Inputs.of(fs, predictor.device)
    probs = predictor.probs(x)
    out = pd.DataFrame({"video_id": fs.meta["video_id"].to_numpy(), "path": fs.meta["path"].to_numpy()})
    out = pd.concat([out, top_columns(probs, classes, top_k)], axis=1)
    out["mv_missing"] = x.mv_missing.cpu().numpy()
    out["mv_source"], out["mv_source_unseen"] = mv_source_columns(fs.meta, predictor.mv_sources)
    if extra:
        if extra_text is None:
            raise ValueError("extra_classes given without their text embeddings (extra_text)")
        out = pd.concat([out, extra_class_columns(x.clip.cpu().numpy(), predictor.text, extra_text, extra_classes,
                                                  top_k)], axis=1)
    out["model"] = predictor.model_id
    out["labeled_at"] = pd.Timestamp(datetime.now(timezone.utc)).floor("ms")
    out["indexed_at"] = fs.meta["indexed_at"].to_numpy() if "indexed_at" in fs.meta else pd.NaT
    return out


def mv_source_columns(meta: pd.DataFrame, trained: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's MV source (native or reencoded; rows from before the column: native), and whether the model was
    trained on none of that source (the bundle's ``mv_sources``; unknown for older bundles: never flagged). Native
    and re-encoded motion of one scene differ (docs/MOTION_VECTORS.md), so a model that never saw one kind is less
    sure of it than its probabilities say."""
    src = mv_source_of(meta)
    unseen = np.zeros(len(src), bool) if not trained else ~np.isin(src, [k for k, n in trained.items() if n])
    return src, unseen


def top_columns(probs: np.ndarray, classes: list[str], top_k: int) -> pd.DataFrame:
    """``labels``, ``probs`` (the top-k, best first), ``top1`` and ``top1_prob`` of each row of ``probs`` [N, C]."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :min(top_k, len(classes))]
    top = np.take_along_axis(probs, order, axis=1).astype(np.float64)
    names = np.asarray(classes, dtype=object)[order]
    return pd.DataFrame({"labels": list(names.tolist()), "probs": list(top.tolist()), "top1": names[:, 0],
                         "top1_prob": top[:, 0]})


def predict(dataset: str, model: str | Path | Predictor, top_k: int = 5, extra_classes: list[str] | None = None,
            device: str = "auto") -> pd.DataFrame:
    """Every video of a (small) dataset at once, in memory; ``model``: a bundle folder (loaded on ``device``), or a
    loaded ``Predictor`` (on its own device). Archives are labelled shard by shard instead (``moclip.label.worker``,
    the label flow): memory then does not grow with the archive."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, device)
    manifest = read_manifest(dataset) or {}
    predictor.check_dataset(dataset, manifest)
    text = predictor.zero_shot_text(extra_classes, dataset, manifest) if extra_classes else None
    return predict_features(predictor, load_features(dataset), top_k, extra_classes, text)


def extra_class_columns(video_emb: np.ndarray, trained_text: np.ndarray, extra_text: np.ndarray,
                        extra_classes: list[str], top_k: int) -> pd.DataFrame:
    """Zero-shot scores of extra class names, each against the trained classes' names too.

    ``zero_shot_probs``: CLIP's zero-shot softmax (100 x cosine) over the trained and the extra names together,
    so an extra name is likely only where CLIP finds it closer than the trained classes; ``zero_shot_cosine``: the
    raw cosine similarity; ``zero_shot_margin``: its cosine minus the best trained class's (> 0: closer than any).
    """
    unit = zeroshot.normalize(video_emb)
    cos_trained, cos_extra = unit @ trained_text.T, unit @ extra_text.T
    joint = softmax(100.0 * np.concatenate([cos_trained, cos_extra], axis=1))[:, trained_text.shape[0]:]
    margin = cos_extra - cos_trained.max(axis=1, keepdims=True)
    order = np.argsort(-joint, axis=1, kind="stable")[:, :min(top_k, len(extra_classes))]
    names = np.asarray(extra_classes, dtype=object)[order]
    return pd.DataFrame({
        "zero_shot_labels": list(names.tolist()),
        "zero_shot_probs": list(np.take_along_axis(joint, order, axis=1).astype(np.float64).tolist()),
        "zero_shot_cosine": list(np.take_along_axis(cos_extra, order, axis=1).astype(np.float64).tolist()),
        "zero_shot_margin": list(np.take_along_axis(margin, order, axis=1).astype(np.float64).tolist()),
    })
