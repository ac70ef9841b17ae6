"""What ``train`` writes into a bundle's ``bundle.json``, typed: ``BundleMeta``.

``architecture`` holds each model's constructor arguments; ``Predictor`` rebuilds the models from them alone.
Bundles written before ``architecture`` existed (format 1, and format 2 until it was added) are migrated when
validated: their arguments are read from the keys that rebuilding used to combine (``mvnet.config`` and
``feature_dim``, ``features.clip_dim``, ``fusion.hidden`` and ``dropout``, the number of classes). Those keys are
still written: the bundle format number (``moclip.bundle``) did not change, so a moclip from before must still read a
new bundle. Fields that older bundles lack are optional: ``calibration`` (format 1: uncalibrated, T = 1),
``mv_missing``, ``precision``.

``read_meta`` reads ``bundle.json`` alone (no weights, no hash check): enough for the feature settings an archive
must be indexed with, or whether CLIP was random. ``Predictor.load`` loads the weights, hash-checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from moclip.bundle import META_NAME, BundleError, check_format, read_bundle_json
from moclip.config import ClipConfig, FeatureSettings, TrainConfig
from moclip.models import FusionHead, LinearProbe, create_mvnet

CALIBRATED = ("fusion", "mv_only", "clip_linear_probe")  # trained models, each with its own temperature


class _Meta(BaseModel):
    """Read from disk: immutable; keys this version does not know are kept, not refused."""

    model_config = ConfigDict(frozen=True, extra="allow")


class _Args(BaseModel):
    """Constructor arguments: exactly the constructor's parameters (an unknown one would not build)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class MVNetArgs(_Args):
    """``create_mvnet(config, num_classes)``."""

    config: dict[str, Any]  # the architecture's JSON (moclip/model_configs), as trained
    num_classes: int

    def build(self) -> torch.nn.Module:
        return create_mvnet(self.config, self.num_classes)


class FusionArgs(_Args):
    """``FusionHead(mv_dim, clip_dim, num_classes, hidden, dropout, stream_dropout)``."""

    mv_dim: int
    clip_dim: int
    num_classes: int
    hidden: int
    dropout: float
    stream_dropout: float  # training only (modality dropout): no effect on predictions

    def build(self) -> FusionHead:
        return FusionHead(**self.model_dump())


class ProbeArgs(_Args):
    """``LinearProbe(dim, num_classes)``."""

    dim: int
    num_classes: int

    def build(self) -> LinearProbe:
        return LinearProbe(**self.model_dump())


class Architecture(_Args):
    """Every trained model's constructor arguments (the weights are in the bundle's safetensors files)."""

    mvnet: MVNetArgs
    fusion: FusionArgs
    probe: ProbeArgs


class BundleClip(ClipConfig):
    """The CLIP the training dataset was indexed with: its settings (flat, as bundles always stored them), the id
    its weights resolved to, and whether they were random."""

    weights_id: str | None = None
    random_init: bool = False

    @property
    def settings(self) -> ClipConfig:
        return ClipConfig.model_validate(self.model_dump(include=set(ClipConfig.model_fields)))


class FeatureInfo(_Meta):
    settings: FeatureSettings  # an archive to label must be indexed with these
    settings_hash: str | None = None
    mv_shape: list[int]  # [T, 2, H, W]
    clip_dim: int


class MVNetInfo(_Meta):
    config: dict[str, Any]
    name: str
    params: int
    flops_per_video: int
    feature_dim: int


class FusionInfo(_Meta):
    hidden: int
    dropout: float
    params: int
    # what the head takes from the MV net: its penultimate "features", or its class "probabilities" (a head trained
    # on out-of-fold probabilities, TrainConfig.mv_folds)
    mv_input: Literal["features", "probabilities"] = "features"


class DatasetInfo(_Meta):
    url: str
    split_name: str
    split_protocol: str
    n_train: int
    n_val: int
    n_test: int


class SplitIds(_Meta):
    """The video ids trained and validated on (evaluate refuses a test split that contains any)."""

    train: list[str]
    val: list[str]


class Curve(_Meta):
    train_loss: list[float]
    val_top1: list[float]
    best_epoch: int
    best_val_top1: float


class Summary(_Meta):
    top1: float
    top5: float
    n: int


class Calibration(_Meta):
    temperature: float
    fitted_on: str
    n: int
    val_nll_before: float
    val_nll_after: float


class MVMissingCounts(_Meta):
    n_train: int
    n_val: int


class BundleMeta(_Meta):
    """``bundle.json``: what the models are, what they were trained on and how, and how well they did on val."""

    classes: list[str]
    clip: BundleClip
    features: FeatureInfo
    architecture: Architecture
    mvnet: MVNetInfo
    fusion: FusionInfo
    train_config: TrainConfig
    dataset: DatasetInfo
    splits: SplitIds
    curves: dict[str, Curve]
    val: dict[str, Summary]
    calibration: dict[str, Calibration] | None = None  # format 1: none (loads uncalibrated, T = 1)
    mv_missing: MVMissingCounts | None = None
    # training videos by where their motion vectors came from ("native": the stream's own, "reencoded": moclip's
    # MPEG-4 re-encode); None in bundles written before it was recorded
    mv_sources: dict[str, int] | None = None
    time_per_stage_s: dict[str, float] = {}
    device: str
    precision: str | None = None
    versions: dict[str, str] = {}
    # written by moclip.bundle.save_bundle (whatever is here is replaced there)
    format: int | None = None
    files: dict[str, str] = {}
    saved_at: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        if isinstance(data, dict) and "architecture" not in data:
            data = {**data, "architecture": architecture_of_old_bundle(data)}
        tc = data.get("train_config") if isinstance(data, dict) else None
        if isinstance(tc, dict) and "clip_subsets" not in tc:  # bundles from before trained on K-frame means only
            data = {**data, "train_config": {**tc, "clip_subsets": False}}
        return data

    @property
    def temperature(self) -> dict[str, float]:
        """Each calibrated model's temperature; 1.0 where the bundle has none (format 1)."""
        cal = self.calibration or {}
        return {k: cal[k].temperature if k in cal else 1.0 for k in CALIBRATED}

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None


def architecture_of_old_bundle(m: dict) -> dict:
    """The constructor arguments of a bundle written before they were stored, from the keys rebuilding read."""
    try:
        n = len(m["classes"])
        clip_dim = m["features"]["clip_dim"]
        return {
            "mvnet": {"config": m["mvnet"]["config"], "num_classes": n},
            "fusion": {"mv_dim": m["mvnet"]["feature_dim"], "clip_dim": clip_dim, "num_classes": n,
                       "hidden": m["fusion"]["hidden"], "dropout": m["fusion"]["dropout"],
                       # bundles from before modality dropout trained without it (it never changes predictions)
                       "stream_dropout": (m.get("train_config") or {}).get("stream_dropout", 0.0)},
            "probe": {"dim": clip_dim, "num_classes": n},
        }
    except (KeyError, TypeError) as e:
        raise ValueError(f"bundle metadata lacks the model architecture (no {e})") from e


def read_meta(path: str | Path) -> BundleMeta:
    """A bundle's ``bundle.json``, typed (no weights are read or hash-checked: see ``Predictor.load``)."""
    return validate_meta(read_bundle_json(path), Path(path) / META_NAME)


def validate_meta(meta: dict, where: str | Path = META_NAME) -> BundleMeta:
    """``meta`` (a ``bundle.json``'s content) as a ``BundleMeta``; a bundle of an unknown format is refused."""
    check_format(meta, where)
    try:
        return BundleMeta.model_validate(meta)
    except ValidationError as e:
        raise BundleError(f"{where}: not valid bundle metadata: {e}") from e
