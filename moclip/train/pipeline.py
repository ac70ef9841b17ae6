"""Train (MV net -> frozen features -> fusion head + CLIP linear probe + zero-shot text) and evaluate once on test.

    dataset ──> splits (val from train only) ──> MV net ──> [MV feats || CLIP feats] ──> fusion head
                                       └──> CLIP linear probe      └──> CLIP zero-shot (text prompts)
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from moclip.bundle import META_NAME, Bundle, save_bundle
from moclip.config import TrainConfig
from moclip.dataset import (
    FeatureSet,
    check_schema,
    load_features,
    read_manifest,
    read_metadata,
    whole_clip_settings,
)
from moclip.dataset.reader import mv_source_of
from moclip.inference.features import Inputs, fused_features, mv_features
from moclip.inference.meta import CALIBRATED, Architecture, BundleMeta, FusionArgs, MVNetArgs, ProbeArgs
from moclip.inference.predictor import Predictor, method_scores
from moclip.inference.text import check_text_weights, class_embeddings
from moclip.models import PAPER_MV_NET, count_params, flops_per_video, mvnet_config, set_input_scale
from moclip.precision import resolve_device, train_precision
from moclip.progress import Epochs
from moclip.train import calibrate, metrics, results
from moclip.train.augment import augment
from moclip.train.determinism import deterministic
from moclip.train.loop import FitConfig, fit
from moclip.train.splits import Splits, has_value, make_splits


@dataclass
class ExtraFeatures:
    """Training samples from outside a training dataset: reviewed videos, or windows inside reviewed time ranges of
    long videos (``moclip.review.training``). ``fs.meta`` has ``label`` and ``group`` (the video: its windows stay
    on one side of validation) and ``split`` "review": they train and validate, never test."""

    fs: FeatureSet
    manifest: dict  # of the features dataset they come from
    url: str


def concat_features(parts: list[FeatureSet]) -> FeatureSet:
    """Feature sets one after the other; CLIP frames repeated in order up to the largest K (a window has fewer
    frames than a clip); MV tensors must have one shape."""
    parts = [f for f in parts if len(f.meta)]
    if len(parts) == 1:
        return parts[0]
    shapes = {f.mv.shape[1:] for f in parts}
    if len(shapes) > 1:
        raise ValueError(f"the training samples have MV tensors of different shapes ({sorted(shapes)}): index the "
                         "archive with the training dataset's --segments and --grid")
    k = max(f.clip.shape[1] for f in parts)

    def padded(c: np.ndarray) -> np.ndarray:
        return c if c.shape[1] == k else c[:, [i * c.shape[1] // k for i in range(k)]]

    return FeatureSet(pd.concat([f.meta for f in parts], ignore_index=True), np.concatenate([f.mv for f in parts]),
                      np.concatenate([f.mv_valid for f in parts]), np.concatenate([padded(f.clip) for f in parts]))


@dataclass
class Prepared(Inputs):
    """A dataset's model inputs (``Inputs``: mv, valid, clip, clip_frames, mv_missing), labels and splits."""

    fs: FeatureSet
    classes: list[str]
    y: np.ndarray  # class index, -1 for unlabeled
    splits: Splits

    def with_mv(self, idx: np.ndarray) -> np.ndarray:
        """The rows of ``idx`` that have motion vectors (what the MV net can learn from)."""
        return idx[~self.mv_missing.cpu().numpy()[idx]]


def prepare(url: str | None, cfg: TrainConfig, device: torch.device, classes: list[str] | None = None,
            extra: ExtraFeatures | None = None) -> Prepared:
    parts = [load_features(url)] if url else []
    if extra is not None:
        parts.append(extra.fs)
    where = url or (extra.url if extra else "no dataset")
    if not parts or not any(len(f.meta) for f in parts):
        raise ValueError(f"{where}: no successfully indexed videos to train on")
    fs = concat_features(parts)
    labels = fs.meta["label"]
    if classes is None:
        classes = sorted({str(v) for v in labels if v is not None and str(v) not in ("", "None", "nan")})
    if len(classes) < 2:
        raise ValueError(f"{where}: need at least 2 labelled classes, found {len(classes)}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(str(v), -1) for v in labels], dtype=np.int64)
    meta = fs.meta.assign(label=[lab if yi >= 0 else None for lab, yi in zip(labels, y)])
    splits = make_splits(meta, cfg.val_fraction, seed=cfg.seed)
    x = Inputs.of(fs, device)
    return Prepared(fs=fs, classes=classes, y=y, splits=splits, **{f.name: getattr(x, f.name) for f in fields(x)})


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


def _folds(meta: pd.DataFrame, rows: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``rows`` in ``k`` folds of whole groups (a UCF101 group's clips share a scene: never on both sides), shuffled
    with ``seed``; rows without a group are their own."""
    groups = meta["group"].iloc[rows] if "group" in meta else pd.Series([None] * len(rows))
    grouped = has_value(groups).to_numpy()  # as make_splits reads groups
    keys = np.array([f"g:{g}" if has else f"r:{r}" for g, r, has in zip(groups, rows, grouped)])
    unique = np.random.default_rng(seed).permutation(np.unique(keys))
    fold_of = {key: i % k for i, key in enumerate(unique)}
    return [rows[np.array([fold_of[key] == f for key in keys], dtype=bool)] for f in range(min(k, len(unique)))]


def _fusion_batches(fused: torch.Tensor, y_np: np.ndarray, missing: torch.Tensor, frames: torch.Tensor | None,
                    seed: int) -> Callable:
    """The fusion head's batches. With ``frames`` ([N, K, D] L2-normalised frame embeddings; ``clip_subsets``), a
    training batch's CLIP part is the mean of a random k of each clip's K frames (one k per batch, 1..K), normalised
    as ``zeroshot.video_embedding`` does: a window of 2 frames is then no stranger to the head than a clip of 8."""
    plain = _feature_batches(fused, y_np, missing)
    if frames is None or frames.shape[1] < 2:
        return plain
    gen = torch.Generator().manual_seed(seed)
    k_max, dim = frames.shape[1], frames.shape[2]

    def batch(idx: np.ndarray, train: bool):
        (x, miss), y = plain(idx, train)
        if not train:
            return (x, miss), y
        k = int(torch.randint(1, k_max + 1, (1,), generator=gen))
        pick = torch.rand(len(idx), k_max, generator=gen).argsort(dim=1)[:, :k].to(frames.device)
        sub = frames[torch.from_numpy(idx).to(frames.device)].gather(1, pick[..., None].expand(-1, -1, dim))
        clip = torch.nn.functional.normalize(sub.mean(1), dim=1)
        return (torch.cat([x[:, :x.shape[1] - dim], clip], dim=1), miss), y

    return batch


def train(url: str | None, out: str | Path, cfg: TrainConfig | None = None,
          log: Callable[[str], None] = print, extra: ExtraFeatures | None = None) -> Bundle:
    """Train everything on the dataset at ``url`` and/or ``extra`` samples (reviewed videos and time ranges); write
    the model bundle to ``out``. Never touches test. Seeded: one seed gives one bundle, on a GPU too
    (``moclip.train.determinism``)."""
    cfg = cfg or TrainConfig()
    if url is None and extra is None:
        raise ValueError("nothing to train on: give a dataset, reviewed labels, or both")
    with deterministic(resolve_device(cfg.device)):
        return _train(url, out, cfg, log, extra)


def _train(url: str | None, out: str | Path, cfg: TrainConfig, log: Callable[[str], None],
           extra: ExtraFeatures | None = None) -> Bundle:
    times: dict[str, float] = {}
    t = time.perf_counter()
    device = resolve_device(cfg.device)
    precision = train_precision(device, cfg.precision)
    torch.manual_seed(cfg.seed)
    manifest = (read_manifest(url) or {}) if url else extra.manifest
    where = url or extra.url
    check_schema(manifest, where)  # before reading features: an older moclip's need indexing again
    if extra is not None:
        check_schema(extra.manifest, extra.url)
        if url and manifest.get("settings") and whole_clip_settings(manifest, url)[1] != \
                whole_clip_settings(extra.manifest, extra.url)[1]:
            raise ValueError(f"{extra.url}: indexed with other feature settings than {url} (CLIP weights "
                             f"{extra.manifest.get('clip_weights_id')} vs {manifest.get('clip_weights_id')}): "
                             "index the archive with the training dataset's settings")
    if manifest.get("settings"):
        check_text_weights(where, manifest)  # before training, not after: the text tower is built last
    p = prepare(url, cfg, device, extra=extra)
    s = p.splits
    if len(s.train) == 0 or len(s.val) == 0:
        raise ValueError(f"{where}: not enough labelled videos for train/val ({len(s.train)}/{len(s.val)})")
    times["load"] = time.perf_counter() - t
    log(f"{len(p.classes)} classes; train {len(s.train)}, val {len(s.val)}, test {len(s.test)} ({s.protocol})")

    t = time.perf_counter()
    n = len(p.classes)
    arch = mvnet_config(cfg.mvnet)
    mv_args = MVNetArgs(config=arch, num_classes=n)
    torch.manual_seed(cfg.seed)
    net = mv_args.build().to(device)
    # the MV net learns from the videos that have motion vectors; the others reach the fusion head's CLIP-only path
    mv_train, mv_val = p.with_mv(s.train), p.with_mv(s.val)
    if len(mv_train) < len(s.train):
        log(f"{len(s.train) - len(mv_train)} training videos have no usable motion vectors: the MV net skips them, "
            "the fusion head sees them through its CLIP-only path")
    if len(mv_train) == 0:
        raise ValueError(f"{where}: no training video has usable motion vectors; nothing for the MV net to learn from")
    set_input_scale(net, p.mv[torch.from_numpy(mv_train).to(device)])
    # a small training set (a first review round) still gets >= 8 steps per epoch: at batch 64, 130 videos made 3
    # steps an epoch and the net stopped half-trained (test top-1 0.58-0.85 over seeds; 0.88-1.0 at batch 17)
    mv_batch = max(8, min(cfg.batch_size, math.ceil(len(mv_train) / 8)))
    fit_mv = FitConfig(epochs=cfg.mv_epochs, batch_size=mv_batch, lr=cfg.mv_lr,
                       weight_decay=cfg.weight_decay, patience=cfg.patience, seed=cfg.seed, precision=precision)
    with Epochs("mv-net", cfg.mv_epochs, log) as epochs:
        h_mv = fit(net, _mv_batches(p, cfg.flip, cfg.seed), mv_train, mv_val if len(mv_val) else s.val, fit_mv,
                   epochs)
    times["mv_net"] = time.perf_counter() - t

    t = time.perf_counter()
    mv_input = "probabilities" if cfg.mv_folds >= 2 else "features"
    fused = fused_features(net, p.mv, p.valid, p.clip, precision, mv_input)
    if cfg.mv_folds >= 2:
        folds = _folds(p.fs.meta, mv_train, cfg.mv_folds, cfg.seed)
        log(f"fusion head on out-of-fold MV probabilities: {len(folds)} more MV nets, one per fold of the training "
            "videos")
        for f, held in enumerate(folds):
            rest = np.setdiff1d(mv_train, held)
            torch.manual_seed(cfg.seed + 1 + f)
            net_f = mv_args.build().to(device)
            set_input_scale(net_f, p.mv[torch.from_numpy(rest).to(device)])
            fit(net_f, _mv_batches(p, cfg.flip, cfg.seed + 1 + f), rest, mv_val if len(mv_val) else s.val, fit_mv)
            rows = torch.from_numpy(held).to(device)
            fused[rows, :n] = mv_features(net_f, p.mv[rows], p.valid[rows], precision=precision, probabilities=True)
        times["mv_folds"] = time.perf_counter() - t
        t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    mv_dim = n if mv_input == "probabilities" else net.feature_dim
    fusion_args = FusionArgs(mv_dim=mv_dim, clip_dim=int(p.clip.shape[1]), num_classes=n, hidden=cfg.hidden,
                             dropout=cfg.dropout, stream_dropout=cfg.stream_dropout)
    head = fusion_args.build().to(device)
    train_rows = torch.from_numpy(s.train).to(device)
    head.fit_standardisation(fused[train_rows], p.mv_missing[train_rows])
    # big batches are cheap on frozen features, but a small dataset still gets >= 8 steps per epoch
    head_batch = max(16, min(cfg.head_batch_size, math.ceil(len(s.train) / 8)))
    fit_head = FitConfig(epochs=cfg.head_epochs, batch_size=head_batch, lr=cfg.head_lr,
                         weight_decay=cfg.weight_decay, patience=cfg.patience, seed=cfg.seed, precision=precision)
    frames = (torch.nn.functional.normalize(torch.from_numpy(p.clip_frames).float(), dim=2).to(device)
              if cfg.clip_subsets else None)
    h_fusion = fit(head, _fusion_batches(fused, p.y, p.mv_missing, frames, cfg.seed), s.train, s.val, fit_head)
    times["fusion_head"] = time.perf_counter() - t

    t = time.perf_counter()
    torch.manual_seed(cfg.seed)
    probe_args = ProbeArgs(dim=int(p.clip.shape[1]), num_classes=n)
    probe = probe_args.build().to(device)
    probe.fit_standardisation(p.clip[train_rows])
    h_probe = fit(probe, _feature_batches(p.clip, p.y), s.train, s.val, fit_head)
    times["linear_probe"] = time.perf_counter() - t

    t = time.perf_counter()
    text = class_embeddings(manifest, p.classes, cfg.prompts, device, where)
    times["zero_shot_text"] = time.perf_counter() - t

    # calibration: one temperature per trained model, fitted on validation (the test split stays untouched)
    net = net.to(device)
    val_scores = method_scores(p, s.val, net, head, probe, text, fused, precision)
    calibration = {k: calibrate.fit_on_val(val_scores[k], p.y[s.val]) for k in CALIBRATED}
    log("temperatures (fitted on val): " + ", ".join(f"{k} {v['temperature']:.2f}" for k, v in calibration.items()))

    settings, settings_hash = whole_clip_settings(manifest, where)  # there are: the text tower was built from them
    mv_shape = tuple(p.fs.mv.shape[1:])
    meta = BundleMeta(
        classes=p.classes,
        clip={**settings.clip.model_dump(), "weights_id": manifest.get("clip_weights_id", "unknown"),
              "random_init": bool(manifest.get("clip_random_init", False))},
        features={"settings": settings, "settings_hash": settings_hash, "mv_shape": list(mv_shape),
                  "clip_dim": fusion_args.clip_dim},
        architecture=Architecture(mvnet=mv_args, fusion=fusion_args, probe=probe_args),
        # what the architecture says again, as bundles before it had it (a moclip of before reads them)
        mvnet={"config": arch, "name": cfg.mvnet, "params": count_params(net),
               "flops_per_video": flops_per_video(net.cpu(), mv_shape), "feature_dim": net.feature_dim},
        fusion={"hidden": cfg.hidden, "dropout": cfg.dropout, "params": count_params(head), "mv_input": mv_input},
        train_config=cfg,
        dataset={"url": where, "split_name": split_name(manifest, where), "split_protocol": s.protocol,
                 "n_train": len(s.train), "n_val": len(s.val), "n_test": len(s.test)},
        splits={"train": p.fs.meta["video_id"].iloc[s.train].tolist(),
                "val": p.fs.meta["video_id"].iloc[s.val].tolist()},
        curves={"mv_net": h_mv.to_dict(), "fusion": h_fusion.to_dict(), "clip_linear_probe": h_probe.to_dict()},
        val={k: metrics.summary(v, p.y[s.val]) for k, v in val_scores.items() if k != "zero_shot_single"},
        calibration=calibration,
        mv_missing={"n_train": int(p.mv_missing[train_rows].sum()),
                    "n_val": int(p.mv_missing[torch.from_numpy(s.val).to(device)].sum())},
        mv_sources=mv_sources(p.fs.meta.iloc[s.train]),
        time_per_stage_s={k: round(v, 2) for k, v in times.items()},
        device=str(device),
        precision=precision,
        versions=versions(),
    )
    log(f"val top-1: mv-only {meta.val['mv_only'].top1:.3f}, fusion {meta.val['fusion'].top1:.3f}, "
        f"probe {meta.val['clip_linear_probe'].top1:.3f}")
    weights = {"mvnet": _cpu(net.state_dict()), "fusion": _cpu(head.state_dict()), "probe": _cpu(probe.state_dict()),
               "text": _cpu({"class_embeddings": torch.from_numpy(text)})}
    path = save_bundle(out, meta.model_dump(mode="json"), weights)
    # the bundle as written, not loaded back: bundle.json for what save_bundle added (the weights' hashes), the
    # weights from memory (the very CPU tensors it wrote, so there is nothing to re-read and re-hash)
    return Bundle(path=path, meta=json.loads((path / META_NAME).read_text()), weights=weights)


def mv_sources(meta: pd.DataFrame) -> dict[str, int]:
    """Videos by where their motion vectors came from (rows written before ``mv_source`` existed: native)."""
    return {str(k): int(v) for k, v in pd.Series(mv_source_of(meta)).value_counts().sort_index().items()}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as the bundle stores it: CPU copies (not views of the trained models), contiguous."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}


def split_name(manifest: dict, url: str) -> str:
    """How the report names the evaluation data, e.g. "ucf101 split 1"."""
    corpus = manifest.get("corpus") or {}
    layout = corpus.get("layout")
    if layout in ("ucf101", "hmdb51"):
        return f"{layout} split {corpus.get('split', 1)}"
    return f"{layout} corpus at {corpus.get('root')}" if layout else url


def versions() -> dict[str, str]:
    import open_clip
    import pyarrow

    import moclip

    return {"moclip": moclip.__version__, "torch": torch.__version__, "open_clip": open_clip.__version__,
            "pyarrow": pyarrow.__version__, "numpy": np.__version__, "python": platform.python_version()}


def evaluate(url: str, model: str | Path, device: str = "auto") -> results.EvaluationResults:
    """Test-set metrics of every method (the test split is used here and only here) -> the report's results."""
    t0 = time.perf_counter()
    predictor = Predictor.load(model, device)
    m, dev = predictor.meta, predictor.device
    manifest = read_manifest(url) or {}
    predictor.check_dataset(url, manifest)
    p = prepare(url, m.train_config, dev, classes=predictor.classes)
    test = p.splits.test
    seen = set(m.splits.train) | set(m.splits.val)
    leaked = [vid for vid in p.fs.meta["video_id"].iloc[test] if vid in seen]
    if leaked:
        raise ValueError(f"{url}: {len(leaked)} test videos were used in training or validation (e.g. {leaked[0]}); "
                         "evaluate on a dataset whose test split the model never saw")
    if len(test) == 0:
        raise ValueError(f"{url}: no labelled test videos to evaluate")
    y = p.y[test]
    precision = predictor.precision  # as in training, where this machine has it natively
    scores = predictor.method_scores(p, test)
    calibration = {k: calibrate.calibration_summary(scores[k], y, predictor.temperature[k]) for k in CALIBRATED}
    calibrated = m.calibrated  # bundles of format 1 carry no temperatures
    n = len(p.classes)
    preds = {k: scores[k].argmax(1) for k in ("fusion", "mv_only", "clip_linear_probe")}
    all_meta = read_metadata(url)
    ok = int((all_meta["status"] == "ok").sum())
    failed = int((all_meta["status"] == "failed").sum())
    times = dict(m.time_per_stage_s)
    times["evaluate"] = round(time.perf_counter() - t0, 2)
    return results.EvaluationResults(
        dataset=results.DatasetSummary(
            url=url, n_total=ok + failed, n_ok=ok, n_failed=failed, n_train=len(p.splits.train),
            n_val=len(p.splits.val), n_test=len(test), classes=p.classes, split_name=m.dataset.split_name,
            val_protocol=p.splits.protocol),
        clip=results.ClipSummary(model=m.clip.model, weights_id=m.clip.weights_id, frames=m.clip.frames,
                                 random_init=m.clip.random_init),
        paper=results.PAPER,
        methods=results.Methods(**{k: metrics.summary(v, y) for k, v in scores.items()}),
        calibration=results.CalibrationResults(fitted=calibrated, methods=calibration),
        mv_missing=results.MVMissing(n_test=int(p.mv_missing[torch.from_numpy(test).to(dev)].sum())),
        per_class=results.PerClass(**{k: metrics.per_class_accuracy(v, y, n) for k, v in preds.items()}),
        confusion=results.Confusion(fusion=metrics.confusion(preds["fusion"], y, n).tolist()),
        curves=results.Curves(**{k: c.model_dump(mode="json") for k, c in m.curves.items()}),
        models=results.ModelSizes(
            mv_net=results.ModelSize(params=m.mvnet.params, flops_per_video=m.mvnet.flops_per_video,
                                     description=f"{m.mvnet.name}: {m.mvnet.config.get('description', '')}"),
            paper_mv_net=results.ModelSize(**PAPER_MV_NET),
            fusion=results.FusionSize(params=m.fusion.params,
                                      description=f"MLP on [MV feats || CLIP feats], hidden {m.fusion.hidden}"),
        ),
        provenance=results.Provenance(
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            seeds={"train": m.train_config.seed}, versions=versions(), time_per_stage_s=times,
            device=str(dev), precision=precision, dataset_settings_hash=manifest.get("settings_hash"),
            model_bundle=str(model),
        ),
    )
