"""Train (MV net -> frozen features -> fusion head + CLIP linear probe + zero-shot text) and evaluate once on test.

    dataset ──> splits (val from train only) ──> MV net ──> [MV feats || CLIP feats] ──> fusion head
                                       └──> CLIP linear probe      └──> CLIP zero-shot (text prompts)
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from moclip import zeroshot
from moclip.bundle import Bundle, load_bundle, save_bundle
from moclip.config import ClipConfig, TrainConfig
from moclip.dataset import FeatureSet, load_features, read_manifest, read_metadata, read_settings
from moclip.models import (
    PAPER_MV_NET,
    FusionHead,
    LinearProbe,
    count_params,
    create_mvnet,
    flops_per_video,
    mvnet_config,
    set_input_scale,
)
from moclip.precision import autocast, resolve_device, train_precision
from moclip.train import calibrate, metrics
from moclip.train.augment import augment
from moclip.train.loop import FitConfig, fit, predict
from moclip.train.splits import Splits, make_splits

PAPER = {"source": "MoCLIP-Lite (arXiv 2509.17084), UCF101 split 1, top-1",
         "top1": {"fusion": 0.892, "zero_shot": 0.650, "mv_only": 0.665}}
CALIBRATED = ("fusion", "mv_only", "clip_linear_probe")  # trained models, each with its own temperature


@dataclass
class Prepared:
    fs: FeatureSet
    classes: list[str]
    y: np.ndarray  # class index, -1 for unlabeled
    splits: Splits
    mv: torch.Tensor
    valid: torch.Tensor
    clip: torch.Tensor  # [N, D] video embedding: mean of normalised frames
    clip_frames: np.ndarray  # [N, K, D]
    mv_missing: torch.Tensor  # [N] bool: no segment has usable motion vectors (all-intra, 1 frame, ...)

    def with_mv(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``idx`` that have motion vectors (what the MV net can learn from)."""
        return idx[~self.mv_missing.cpu().numpy()[idx]]


def mv_missing(valid: torch.Tensor) -> torch.Tensor:
    """[N, T] usable-MV counts per segment -> [N] bool: the video has no usable motion vectors at all."""
    return (valid > 0).sum(1) == 0


def prepare(url: str, cfg: TrainConfig, device: torch.device, classes: list[str] | None = None) -> Prepared:
    fs = load_features(url)
    if len(fs.meta) == 0:
        raise ValueError(f"{url}: no successfully indexed videos to train on")
    labels = fs.meta["label"]
    if classes is None:
        classes = sorted({str(v) for v in labels if v is not None and str(v) not in ("", "None", "nan")})
    if len(classes) < 2:
        raise ValueError(f"{url}: need at least 2 labelled classes, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)
    meta = fs.meta.assign(label=[lab if yi >= 0 else None for lab, yi in zip(labels, y)])
    splits = make_splits(meta, cfg.val_fraction, seed=cfg.seed)
    valid = torch.from_numpy(fs.mv_valid).to(device)
    return Prepared(
        fs=fs, classes=classes, y=y, splits=splits, mv=torch.from_numpy(fs.mv).to(device), valid=valid,
        clip=torch.from_numpy(zeroshot.video_embedding(fs.clip)).float().to(device), clip_frames=fs.clip,
        mv_missing=mv_missing(valid),
    )


def _mv_batches(p: Prepared, flip: bool, seed: int) -> Callable:
    gen = torch.Generator().manual_seed(seed)
    y = torch.from_numpy(p.y).to(p.mv.device)

    def batch(idx: np.ndarray, train: bool):
        i = torch.from_numpy(idx).to(p.mv.device)
        mv, valid = p.mv[i], p.valid[i]
        if train:
            mv_c, valid_c = augment(mv.cpu(), valid.cpu(), gen, flip)
            mv, valid = mv_c.to(p.mv.device), valid_c.to(p.mv.device)
        return (mv, valid), y[i]

    return batch


def _feature_batches(x: torch.Tensor, y_np: np.ndarray, missing: torch.Tensor | None = None) -> Callable:
    """Batches of frozen features; with ``missing`` (fusion head), each row's MV-missing flag travels along."""
    y = torch.from_numpy(y_np).to(x.device)

    def batch(idx: np.ndarray, train: bool):
        i = torch.from_numpy(idx).to(x.device)
        return ((x[i],) if missing is None else (x[i], missing[i])), y[i]

    return batch


@torch.no_grad()
def mv_features(net: torch.nn.Module, mv: torch.Tensor, valid: torch.Tensor, batch: int = 512,
                precision: str = "fp32") -> torch.Tensor:
    net.eval()
    with autocast(mv.device, precision):
        return torch.cat([net.features(mv[i:i + batch], valid[i:i + batch]).float()
                          for i in range(0, len(mv), batch)])


def fused_features(net: torch.nn.Module, mv: torch.Tensor, valid: torch.Tensor, clip: torch.Tensor,
                   precision: str = "fp32") -> torch.Tensor:
    """What the fusion head sees: [frozen MV-net features || CLIP video embedding]."""
    return torch.cat([mv_features(net, mv, valid, precision=precision), clip], dim=1)


def _clip_config(manifest: dict) -> ClipConfig:
    """The dataset's CLIP settings, for building its text tower (any precision: the text is embedded in fp32)."""
    return read_settings(manifest).clip.model_copy(update={"precision": "fp32"})


def check_clip_weights(url: str, manifest: dict) -> None:
    """Refuse CLIP weights that no longer resolve to the id the dataset's image embeddings were made with (a
    checkpoint file replaced in place, another activation): a text tower of other weights would not match them.
    Cheap (resolves, never loads): run it before any work that would need the text tower."""
    from moclip.clip import resolve_weights

    cfg = _clip_config(manifest)
    have, want = resolve_weights(cfg.model, cfg.weights, cfg.activation).weights_id, manifest.get("clip_weights_id")
    if want and have != want:
        raise ValueError(f"{url}: its CLIP image embeddings were made with weights {want}, but {cfg.weights!r} "
                         f"now resolves to {have}; the text tower would not match them. Restore those weights, "
                         "or re-index the dataset with the new ones")


def text_cache_id(manifest: dict) -> str:
    """Keys the text-embedding cache: the CLIP model and its weights id (file and random-init ids name no model)."""
    return f"{manifest['settings']['clip']['model']}:{manifest.get('clip_weights_id', 'unknown')}"


def load_clip_model(manifest: dict, device: torch.device, url: str = "the dataset"):
    """The full open_clip model (text tower included) the dataset was indexed with, and its tokenizer."""
    import open_clip

    from moclip.clip import load_clip

    check_clip_weights(url, manifest)
    cfg = _clip_config(manifest)
    return load_clip(cfg, device=str(device)).model, open_clip.get_tokenizer(cfg.model)


def train(url: str, out: str | Path, cfg: TrainConfig | None = None,
          log: Callable[[str], None] = print) -> Bundle:
    """Train everything on the dataset at ``url``; write the model bundle to ``out``. Never touches test."""
    cfg = cfg or TrainConfig()
    times: dict[str, float] = {}
    t = time.perf_counter()
    device = resolve_device(cfg.device)
    precision = train_precision(device, cfg.precision)
    torch.manual_seed(cfg.seed)
    manifest = read_manifest(url) or {}
    if manifest.get("settings"):
        check_clip_weights(url, manifest)  # before training, not after: the text tower is built last
    p = prepare(url, cfg, device)
    s = p.splits
    if len(s.train) == 0 or len(s.val) == 0:
        raise ValueError(f"{url}: not enough labelled videos for train/val ({len(s.train)}/{len(s.val)})")
    times["load"] = time.perf_counter() - t
    log(f"{len(p.classes)} classes; train {len(s.train)}, val {len(s.val)}, test {len(s.test)} ({s.protocol})")

    t = time.perf_counter()
    arch = mvnet_config(cfg.mvnet)
    torch.manual_seed(cfg.seed)
    net = create_mvnet(arch, len(p.classes)).to(device)
    # the MV net learns from the videos that have motion vectors; the others reach the fusion head's CLIP-only path
    mv_train, mv_val = p.with_mv(s.train), p.with_mv(s.val)
    if len(mv_train) < len(s.train):
        log(f"{len(s.train) - len(mv_train)} training videos have no usable motion vectors: the MV net skips them, "
            "the fusion head sees them through its CLIP-only path")
    if len(mv_train) == 0:
        raise ValueError(f"{url}: no training video has usable motion vectors; nothing for the MV net to learn from")
    set_input_scale(net, p.mv[torch.from_numpy(mv_train).to(device)])
    fit_mv = FitConfig(epochs=cfg.mv_epochs, batch_size=cfg.batch_size, lr=cfg.mv_lr,
                       weight_decay=cfg.weight_decay, patience=cfg.patience, seed=cfg.seed, precision=precision)
    h_mv = fit(net, _mv_batches(p, cfg.flip, cfg.seed), mv_train, mv_val if len(mv_val) else s.val, fit_mv,
               lambda e, loss, acc: log(f"mv-net epoch {e}: loss {loss:.3f} val top-1 {acc:.3f}"))
    times["mv_net"] = time.perf_counter() - t

    t = time.perf_counter()
    fused = fused_features(net, p.mv, p.valid, p.clip, precision)
    torch.manual_seed(cfg.seed)
    head = FusionHead(net.feature_dim, p.clip.shape[1], len(p.classes), cfg.hidden, cfg.dropout,
                      cfg.stream_dropout).to(device)
    train_rows = torch.from_numpy(s.train).to(device)
    head.fit_standardisation(fused[train_rows], p.mv_missing[train_rows])
    # big batches are cheap on frozen features, but a small dataset still gets >= 8 steps per epoch
    head_batch = max(16, min(cfg.head_batch_size, math.ceil(len(s.train) / 8)))
    fit_head = FitConfig(epochs=cfg.head_epochs, batch_size=head_batch, lr=cfg.head_lr,
                         weight_decay=cfg.weight_decay, patience=cfg.patience, seed=cfg.seed, precision=precision)
    h_fusion = fit(head, _feature_batches(fused, p.y, p.mv_missing), s.train, s.val, fit_head)
    times["fusion_head"] = time.perf_counter() - t

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    probe = LinearProbe(p.clip.shape[1], len(p.classes)).to(device)
    probe.fit_standardisation(p.clip[train_rows])
    h_probe = fit(probe, _feature_batches(p.clip, p.y), s.train, s.val, fit_head)
    times["linear_probe"] = time.perf_counter() - t

    t = time.perf_counter()
    clip_model, tokenizer = load_clip_model(manifest, device, url)
    clip_id = manifest.get("clip_weights_id", "unknown")
    text = zeroshot.text_embeddings(clip_model, tokenizer, p.classes, text_cache_id(manifest), cfg.prompts)
    times["zero_shot_text"] = time.perf_counter() - t

    # calibration: one temperature per trained model, fitted on validation (the test split stays untouched)
    net = net.to(device)
    val_scores = method_scores(p, s.val, net, head, probe, text, fused, precision)
    calibration = {}
    for k in CALIBRATED:
        t_k = calibrate.fit_temperature(val_scores[k], p.y[s.val])
        calibration[k] = {"temperature": t_k, "fitted_on": "val", "n": len(s.val),
                          "val_nll_before": calibrate.nll(val_scores[k], p.y[s.val]),
                          "val_nll_after": calibrate.nll(val_scores[k], p.y[s.val], t_k)}
    log("temperatures (fitted on val): " + ", ".join(f"{k} {v['temperature']:.2f}" for k, v in calibration.items()))

    mv_shape = tuple(p.fs.mv.shape[1:])
    meta = {
        "classes": p.classes,
        "clip": {**manifest.get("settings", {}).get("clip", {}), "weights_id": clip_id,
                 "random_init": bool(manifest.get("clip_random_init", False))},
        "features": {"settings": manifest.get("settings"), "settings_hash": manifest.get("settings_hash"),
                     "mv_shape": list(mv_shape), "clip_dim": int(p.clip.shape[1])},
        "mvnet": {"config": arch, "name": cfg.mvnet, "params": count_params(net),
                  "flops_per_video": flops_per_video(net.cpu(), mv_shape), "feature_dim": net.feature_dim},
        "fusion": {"hidden": cfg.hidden, "dropout": cfg.dropout, "params": count_params(head)},
        "train_config": cfg.model_dump(),
        "dataset": {"url": url, "split_name": split_name(manifest, url), "split_protocol": s.protocol,
                    "n_train": len(s.train), "n_val": len(s.val), "n_test": len(s.test)},
        "splits": {"train": p.fs.meta["video_id"].iloc[s.train].tolist(),
                   "val": p.fs.meta["video_id"].iloc[s.val].tolist()},
        "curves": {"mv_net": h_mv.to_dict(), "fusion": h_fusion.to_dict(), "clip_linear_probe": h_probe.to_dict()},
        "val": {k: metrics.summary(v, p.y[s.val]) for k, v in val_scores.items() if k != "zero_shot_single"},
        "calibration": calibration,
        "mv_missing": {"n_train": int(p.mv_missing[train_rows].sum()),
                       "n_val": int(p.mv_missing[torch.from_numpy(s.val).to(device)].sum())},
        "time_per_stage_s": {k: round(v, 2) for k, v in times.items()},
        "device": str(device),
        "precision": precision,
        "versions": versions(),
    }
    log(f"val top-1: mv-only {meta['val']['mv_only']['top1']:.3f}, fusion {meta['val']['fusion']['top1']:.3f}, "
        f"probe {meta['val']['clip_linear_probe']['top1']:.3f}")
    weights = {"mvnet": net.state_dict(), "fusion": head.state_dict(), "probe": probe.state_dict(),
               "text": {"class_embeddings": torch.from_numpy(text)}}
    save_bundle(out, meta, weights)
    return load_bundle(out)


def split_name(manifest: dict, url: str) -> str:
    """How the report names the evaluation data, e.g. "ucf101 split 1"."""
    corpus = manifest.get("corpus") or {}
    layout = corpus.get("layout")
    if layout in ("ucf101", "hmdb51"):
        return f"{layout} split {corpus.get('split', 1)}"
    return f"{layout} corpus at {corpus.get('root')}" if layout else url


def method_scores(p: Prepared, idx: np.ndarray, net, head, probe, text: np.ndarray,
                  fused: torch.Tensor, precision: str = "fp32") -> dict[str, np.ndarray]:
    """Class scores [len(idx), C] of every method on the rows ``idx``."""
    rows = torch.from_numpy(idx).to(p.clip.device)
    return {
        "zero_shot_mean": zeroshot.scores(p.clip[rows].cpu().numpy(), text),
        "zero_shot_single": zeroshot.scores(p.clip_frames[idx, p.clip_frames.shape[1] // 2], text),
        "mv_only": predict(net, _mv_batches(p, False, 0), idx, precision=precision),
        "clip_linear_probe": predict(probe, _feature_batches(p.clip, p.y), idx, precision=precision),
        "fusion": predict(head, _feature_batches(fused, p.y, p.mv_missing), idx, precision=precision),
    }


def versions() -> dict[str, str]:
    import open_clip
    import pyarrow

    import moclip

    return {"moclip": moclip.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "pyarrow": pyarrow.__version__, "numpy": np.__version__, "python": platform.python_version()}


@dataclass
class Models:
    """A bundle's trained models, ready for inference, and the temperature of each (1.0: uncalibrated)."""

    net: torch.nn.Module
    head: FusionHead
    probe: LinearProbe
    text: np.ndarray  # [C, D] zero-shot class embeddings of the trained classes
    temperature: dict[str, float]


def rebuild(bundle: Bundle, device: torch.device) -> Models:
    """The bundle's models, ready for inference (weights loaded from safetensors only)."""
    m = bundle.meta
    n = len(m["classes"])
    net = create_mvnet(m["mvnet"]["config"], n)
    net.load_state_dict(bundle.weights["mvnet"])
    head = FusionHead(m["mvnet"]["feature_dim"], m["features"]["clip_dim"], n, m["fusion"]["hidden"],
                      m["fusion"]["dropout"])
    head.load_state_dict(bundle.weights["fusion"])
    probe = LinearProbe(m["features"]["clip_dim"], n)
    probe.load_state_dict(bundle.weights["probe"])
    text = bundle.weights["text"]["class_embeddings"].numpy()
    temperature = {k: float(m.get("calibration", {}).get(k, {}).get("temperature", 1.0)) for k in CALIBRATED}
    return Models(net.to(device).eval(), head.to(device).eval(), probe.to(device).eval(), text, temperature)


def check_settings(url: str, manifest: dict, bundle_meta: dict) -> None:
    """Refuse a dataset indexed with other feature settings (or other CLIP weights) than the model's."""
    have, want = manifest.get("settings_hash"), bundle_meta["features"].get("settings_hash")
    if have != want:
        raise ValueError(f"{url}: indexed with feature settings {have}, but the model was trained on {want} "
                         f"(CLIP weights {manifest.get('clip_weights_id')} vs "
                         f"{bundle_meta.get('clip', {}).get('weights_id')}); index it with the model's settings")


def evaluate(url: str, model: str | Path, device: str = "auto") -> dict:
    """Test-set metrics of every method (the test split is used here and only here) -> the report's results."""
    t0 = time.perf_counter()
    bundle = load_bundle(model)
    m = bundle.meta
    cfg = TrainConfig.model_validate(m["train_config"])
    dev = resolve_device(device)
    manifest = read_manifest(url) or {}
    check_settings(url, manifest, m)
    p = prepare(url, cfg, dev, classes=m["classes"])
    test = p.splits.test
    seen = set(m["splits"]["train"]) | set(m["splits"]["val"])
    leaked = [vid for vid in p.fs.meta["video_id"].iloc[test] if vid in seen]
    if leaked:
        raise ValueError(f"{url}: {len(leaked)} test videos were used in training or validation (e.g. {leaked[0]}); "
                         "evaluate on a dataset whose test split the model never saw")
    if len(test) == 0:
        raise ValueError(f"{url}: no labelled test videos to evaluate")
    models = rebuild(bundle, dev)
    net, head, probe, text = models.net, models.head, models.probe, models.text
    y = p.y[test]
    precision = train_precision(dev, cfg.precision)  # as in training, where this machine has it natively
    fused = fused_features(net, p.mv, p.valid, p.clip, precision)
    scores = method_scores(p, test, net, head, probe, text, fused, precision)
    calibration = {k: calibrate.calibration_summary(scores[k], y, models.temperature[k]) for k in CALIBRATED}
    calibrated = "calibration" in m  # bundles of format 1 carry no temperatures
    n = len(p.classes)
    preds = {k: scores[k].argmax(1) for k in ("fusion", "mv_only", "clip_linear_probe")}
    all_meta = read_metadata(url)
    ok = int((all_meta["status"] == "ok").sum())
    failed = int((all_meta["status"] == "failed").sum())
    times = dict(m.get("time_per_stage_s", {}))
    times["evaluate"] = round(time.perf_counter() - t0, 2)
    return {
        "title": "moclip evaluation",
        "dataset": {"url": url, "n_total": ok + failed, "n_ok": ok, "n_failed": failed,
                    "n_train": len(p.splits.train), "n_val": len(p.splits.val), "n_test": len(test),
                    "classes": p.classes, "split_name": m["dataset"].get("split_name", url),
                    "val_protocol": p.splits.protocol},
        "clip": {"model": m["clip"].get("model"), "weights_id": m["clip"].get("weights_id"),
                 "frames": m["clip"].get("frames"), "random_init": bool(m["clip"].get("random_init"))},
        "paper": PAPER,
        "methods": {k: metrics.summary(v, y) for k, v in scores.items()},
        "calibration": {"fitted": calibrated, "methods": calibration},
        "mv_missing": {"n_test": int(p.mv_missing[torch.from_numpy(test).to(dev)].sum())},
        "per_class": {k: metrics.per_class_accuracy(v, y, n) for k, v in preds.items()},
        "confusion": {"fusion": metrics.confusion(preds["fusion"], y, n).tolist()},
        "curves": m["curves"],
        "models": {
            "mv_net": {"params": m["mvnet"]["params"], "flops_per_video": m["mvnet"]["flops_per_video"],
                       "description": f"{m['mvnet']['name']}: {m['mvnet']['config'].get('description', '')}"},
            "paper_mv_net": PAPER_MV_NET,
            "fusion": {"params": m["fusion"]["params"],
                       "description": f"MLP on [MV feats || CLIP feats], hidden {m['fusion']['hidden']}"},
        },
        "provenance": {
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seeds": {"train": cfg.seed}, "versions": versions(), "time_per_stage_s": times,
            "device": str(dev), "precision": precision, "dataset_settings_hash": manifest.get("settings_hash"),
            "model_bundle": str(model),
        },
    }
