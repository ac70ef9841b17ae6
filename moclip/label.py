"""Label an indexed archive with a trained bundle: top-k fusion predictions, plus optional zero-shot classes.

Extra class names the model was never trained on are scored by CLIP zero-shot (text prompts) and reported in
their own columns, marked as zero-shot: they are not comparable with the trained classes' probabilities.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from moclip import zeroshot
from moclip.bundle import load_bundle
from moclip.dataset import Store, load_features, read_manifest
from moclip.precision import autocast, train_precision
from moclip.train.pipeline import fused_features, load_clip_model, pick_device, rebuild

PREDICTIONS = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"


def clip_is_random(model: str | Path) -> bool:
    return bool(load_bundle(model).meta["clip"].get("random_init"))


def index_settings_of(model: str | Path) -> dict:
    """The feature settings a bundle was trained on (an archive must be indexed with the same ones)."""
    return load_bundle(model).meta["features"]["settings"]


def predict(dataset: str, model: str | Path, top_k: int = 5, extra_classes: list[str] | None = None,
            device: str = "auto") -> pd.DataFrame:
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    bundle = load_bundle(model)
    m = bundle.meta
    manifest = read_manifest(dataset) or {}
    if manifest.get("settings_hash") != m["features"].get("settings_hash"):
        raise ValueError(f"{dataset}: indexed with feature settings {manifest.get('settings_hash')}, but the model "
                         f"needs {m['features'].get('settings_hash')}; index the archive with the model's settings")
    dev = pick_device(device)
    fs = load_features(dataset)
    net, head, _, _ = rebuild(bundle, dev)
    classes = m["classes"]
    k = min(top_k, len(classes))
    now = datetime.now(timezone.utc)
    if len(fs.meta) == 0:
        return pd.DataFrame(columns=["video_id", "path", "labels", "probs", "top1", "top1_prob", "model", "labeled_at"])
    mv = torch.from_numpy(fs.mv).to(dev)
    valid = torch.from_numpy(fs.mv_valid).to(dev)
    clip = torch.from_numpy(zeroshot.video_embedding(fs.clip)).float().to(dev)
    precision = train_precision(dev, m["train_config"].get("precision", "auto"))  # as evaluate scores it
    with torch.no_grad(), autocast(dev, precision):
        logits = head(fused_features(net, mv, valid, clip, precision)).float()
    probs = torch.softmax(logits, dim=1).cpu().numpy()
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    out = pd.DataFrame({
        "video_id": fs.meta["video_id"].to_numpy(),
        "path": fs.meta["path"].to_numpy(),
        "labels": [[classes[j] for j in row] for row in order],
        "probs": [[float(probs[i, j]) for j in row] for i, row in enumerate(order)],
    })
    out["top1"] = [labels[0] for labels in out["labels"]]
    out["top1_prob"] = [p[0] for p in out["probs"]]
    if extra_classes:
        clip_model, tokenizer = load_clip_model(manifest, dev)
        text = zeroshot.text_embeddings(clip_model, tokenizer, extra_classes, manifest.get("clip_weights_id", "?"),
                                        m["train_config"].get("prompts", "short"))
        zs = torch.softmax(torch.from_numpy(zeroshot.scores(clip.cpu().numpy(), text)), dim=1).numpy()
        zk = min(top_k, len(extra_classes))
        zorder = np.argsort(-zs, axis=1, kind="stable")[:, :zk]
        out["zero_shot_labels"] = [[extra_classes[j] for j in row] for row in zorder]
        out["zero_shot_probs"] = [[float(zs[i, j]) for j in row] for i, row in enumerate(zorder)]
    out["model"] = str(m.get("files", {}).get("fusion.safetensors", "?"))[:16]
    out["labeled_at"] = now
    return out


def write_predictions(preds: pd.DataFrame, out: str, storage_options: dict | None = None) -> tuple[str, str]:
    """Predictions Parquet + a flat CSV export (top-k joined by '|'), each written atomically."""
    store = Store(out, storage_options)
    store.write_table(PREDICTIONS, pa.Table.from_pandas(preds, preserve_index=False))
    flat = preds.copy()
    for col in ("labels", "probs", "zero_shot_labels", "zero_shot_probs"):
        if col in flat:
            flat[col] = ["|".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) for row in flat[col]]
    buf = io.StringIO()
    flat.to_csv(buf, index=False)
    store.write_bytes(PREDICTIONS_CSV, buf.getvalue().encode())
    return store.path(PREDICTIONS), store.path(PREDICTIONS_CSV)


def distribution_markdown(preds: pd.DataFrame, extra: bool, random_clip: bool = False) -> str:
    lines = ["# Labels", ""]
    if random_clip:
        lines += ["> **The model's CLIP weights are RANDOM (untrained): zero-shot scores mean nothing.**", ""]
    lines += [f"{len(preds)} videos labelled.", "", "| top-1 label | videos | mean probability |", "|---|---:|---:|"]
    if len(preds):
        g = preds.groupby("top1")["top1_prob"].agg(["count", "mean"]).sort_values("count", ascending=False)
        lines += [f"| {lab} | {int(r['count'])} | {r['mean']:.2f} |" for lab, r in g.iterrows()]
    if extra and len(preds):
        zs = preds["zero_shot_labels"].map(lambda v: v[0]).value_counts()
        lines += ["", "## Extra classes, scored ZERO-SHOT by CLIP (not trained; not comparable with the above)", "",
                  "| zero-shot top-1 | videos |", "|---|---:|"]
        lines += [f"| {lab} | {n} |" for lab, n in zs.items()]
    return "\n".join(lines) + "\n"
