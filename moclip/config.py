"""The settings vocabulary: frozen pydantic models, each option defined once (type, default, range, description).

``FeatureSettings`` (``MVConfig`` + ``ClipConfig``) is everything that changes the bytes of a feature; it goes into
the dataset's settings hash and is read back from manifests and bundles with ``FeatureSettings.model_validate``.
``RunConfig`` only changes how a job runs (workers, shard size, device), ``TrainConfig`` how models are trained.
The jobs (``moclip.params``), the CLI (``flows.cli``, generated from these models) and the Prefect flows all take
these same models, so an option's description shows in ``moclip --help`` and in a deployment's parameter schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

SCHEMA_VERSION = 2  # of stored features: a change makes old datasets re-index and old bundles refused
SCHEMA_VERSIONS = {
    1: "motion in % of the frame per frame, each block in the one cell under its centre",
    2: "motion in % of the displayed frame per second, each block spread over the cells it overlaps",
}
ACTIVATIONS = ("auto", "gelu", "quickgelu")  # ClipConfig.activation: see moclip.clip.pretrained

VIDEO_EXTENSIONS = (
    ".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".m2ts", ".3gp", ".flv",
    ".wmv", ".ogv", ".gif",
)

Device = Literal["auto", "cpu", "cuda"]
Layout = Literal["folder", "ucf101", "hmdb51", "manifest", "unlabeled"]
LAYOUTS: tuple[str, ...] = get_args(Layout)


class Settings(BaseModel):
    """Base of every settings model: immutable, and an unknown name is an error, not silently ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CorpusSpec(Settings):
    """Where a corpus lives and how to read it (``moclip.corpus.load_corpus`` turns it into one table)."""

    root: str = Field("", description="the corpus folder (the CLI's PATH); for layout=manifest, '' means the "
                                      "manifest's folder")
    layout: Layout = Field("folder", description="how labels and splits are found: folder (label = parent "
                                                 "folder), ucf101, hmdb51, manifest (CSV) or unlabeled")
    split_dir: str | None = Field(None, description="folder with the official split files (ucf101, hmdb51; "
                                                    "default: the usual place)")
    split: int = Field(1, ge=1, le=3, description="official split number (ucf101, hmdb51)")
    manifest: str | None = Field(None, description="CSV with path,label,split columns (layout=manifest)")
    allow_outside_root: bool = Field(False, description="let manifest paths leave the corpus root")

    @field_validator("split", mode="before")
    @classmethod
    def _no_bool(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"split must be 1, 2 or 3, got {v!r}")
        return v

    @model_validator(mode="after")
    def _needs(self) -> CorpusSpec:
        if self.layout == "manifest" and not self.manifest:
            raise ValueError("layout 'manifest' needs manifest= (the CSV path)")
        if self.layout != "manifest" and not self.root:
            raise ValueError(f"layout {self.layout!r} needs a corpus root")
        return self


class MVConfig(Settings):
    """How a video's motion vectors become one fixed-shape tensor (T x 2 x H x W)."""

    segments: int = Field(8, ge=1, le=64, description="T: temporal segments of the MV tensor (TSN-style)")
    grid: tuple[int, int] = Field(
        (15, 20), description="(H, W) cells of the MV tensor, e.g. 15x20 (320x240 at 16 px macroblocks is 15 x 20)")
    backend: Literal["pyav", "mvextractor"] = Field("pyav", description="motion-vector reader (native MVs)")
    source: Literal["auto", "native", "reencode"] = Field(
        "auto", description="where motion vectors come from: native (the stream's own: H.264, MPEG-4 Part 2, "
                            "MPEG-1/2, H.263), reencode (every video re-encoded as MPEG-4 Part 2 at 340x256: one "
                            "encoder's motion statistics for any archive), auto (native where the codec has them, "
                            "except interlaced H.264; else re-encoded)")
    max_frames: int = Field(216_000, ge=1, description="cap on decoded frames per video (216000: 2 h at 30 fps)")

    @field_validator("grid", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) == 1 and isinstance(v[0], str):  # the CLI's one value
            v = v[0]
        if isinstance(v, str):  # "15x20" (the CLI) as well as [15, 20] (JSON)
            m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", v)
            if not m:
                raise ValueError(f"grid must look like 15x20 (H x W), got {v!r}")
            return int(m[1]), int(m[2])
        return v

    @field_validator("grid")
    @classmethod
    def _grid_positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"grid must be two positive ints (H, W), got {v}")
        return v


class ClipConfig(Settings):
    """Which CLIP image encoder embeds which frames."""

    model: str = Field("ViT-B-32", description="open_clip architecture")
    weights: str = Field("openai", description="open_clip pretrained tag, a local checkpoint file, or 'none' "
                                               "(random init)")
    frames: int = Field(8, ge=1, le=64, description="K: RGB frames embedded per video")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="CLIP precision; auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32 "
                            "(a dataset records the resolved one)")
    # the resolved activation is part of the weights id (moclip.clip.pretrained): that is how it enters the hash
    activation: Literal["auto", "gelu", "quickgelu"] = Field(
        "auto", description="CLIP activation; auto: from the tag, the model config or the checkpoint where the "
                            "file tells (OpenAI-trained weights need quickgelu)")

    def resolved(self, device: str) -> ClipConfig:
        """This config with ``precision="auto"`` replaced by what ``device`` runs best (see moclip.precision)."""
        if self.precision != "auto":
            return self
        from moclip.precision import default_precision  # torch only, not open_clip

        return self.model_copy(update={"precision": default_precision(device)})


class WindowConfig(Settings):
    """Time windows for long, untrimmed videos (``moclip.video.windows``): unset, a video is one window."""

    seconds: float | None = Field(None, gt=0, le=24 * 3600, description="window length in seconds: every window of "
                                                                         "a video gets its own MV tensor and CLIP "
                                                                         "frames (default: one window = the video)")
    stride: float | None = Field(None, gt=0, description="seconds between window starts (default: half the window; "
                                                         "at most the window)")
    frames: int = Field(2, ge=1, le=64, description="CLIP frames per window (frames are shared by overlapping "
                                                    "windows: each decoded frame is embedded once)")

    @model_validator(mode="after")
    def _consistent(self) -> WindowConfig:
        if self.seconds is None:
            if self.stride is not None:
                raise ValueError("stride needs a window (--window SECONDS)")
            return self
        if self.stride is not None and self.stride > self.seconds * (1 + 1e-9):
            raise ValueError(f"stride {self.stride:g} s is longer than the window {self.seconds:g} s: parts of "
                             "every video would never be seen")
        return self

    @property
    def enabled(self) -> bool:
        return self.seconds is not None

    @property
    def stride_s(self) -> float:
        """The stride in seconds (half the window when not given)."""
        if self.seconds is None:
            raise ValueError("no window set")
        return self.stride if self.stride is not None else self.seconds / 2


class TimelineConfig(Settings):
    """How the labelled windows of a video become action segments (``moclip.label.timeline``). The defaults were
    chosen on a validation corpus (the untrimmed demo corpus of seed 1; the benchmark reports seed 0)."""

    min_score: float = Field(0.3, ge=0, le=1, description="a stretch whose (smoothed) probability is below this "
                                                          "gets no label in segments.parquet (no confident label)")
    smooth: int = Field(5, ge=1, le=101, description="probabilities averaged over this many windows' worth of time "
                                                     "(a centred moving average) before segments are cut (1: none)")
    min_motion: float = Field(0.5, ge=0, description="a stretch whose motion is below this (99th-percentile cell "
                                                     "speed, % of the frame per second, over ~0.5 s) shows no "
                                                     "action: no label (0: off)")

    @field_validator("min_motion")
    @classmethod
    def _per_second(cls, v: float) -> float:
        if 0 < v < 0.1:  # e.g. a script's 0.02 from before feature schema 2
            warnings.warn(f"--min-motion {v:g} is in % of the frame per second since feature schema 2 (it was per "
                          f"frame: {v:g} per frame is {25 * v:g} per second at 25 fps)", UserWarning, stacklevel=2)
        return v


def schema_problem(version: Any) -> str | None:
    """None for this moclip's feature schema; else what differs, in words."""
    if version == SCHEMA_VERSION:
        return None
    return (f"feature schema {version} ({SCHEMA_VERSIONS.get(version, 'unknown to this moclip')}); this moclip's "
            f"features are schema {SCHEMA_VERSION} ({SCHEMA_VERSIONS[SCHEMA_VERSION]})")


def recorded_schema(settings: dict) -> Any:
    """The feature schema recorded settings (a manifest's or a bundle's) were made with (1 before it was recorded)."""
    return settings.get("schema_version", 1)


class FeatureSettings(Settings):
    """Everything that changes stored features; its hash decides what an incremental rerun reuses."""

    mv: MVConfig = Field(default_factory=MVConfig)
    clip: ClipConfig = Field(default_factory=ClipConfig)
    window: WindowConfig = Field(default_factory=WindowConfig, description="time windows (long, untrimmed videos)")
    schema_version: int = Field(SCHEMA_VERSION, description="version of the feature layout (fixed)")

    @field_validator("schema_version")
    @classmethod
    def _this_schema(cls, v: int) -> int:
        problem = schema_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @model_serializer(mode="wrap")
    def _no_unset_window(self, handler: Any) -> dict:
        """Without windows, the dump (manifests, bundles) is what it was before windows existed: a moclip from
        before reads it, and its bytes are today's."""
        data = handler(self)
        if isinstance(data, dict) and not self.window.enabled:
            data.pop("window", None)
        return data

    def resolved(self, device: str) -> FeatureSettings:
        """These settings as a dataset records them: CLIP precision resolved for ``device``."""
        return self.model_copy(update={"clip": self.clip.resolved(device)})

    def to_dict(self) -> dict:
        return self.model_dump()

    def settings_hash(self, weights_id: str | None = None) -> str:
        """Hash of the settings; ``weights_id`` pins the actual CLIP weights (e.g. checkpoint file hash)."""
        if self.clip.precision == "auto":
            raise ValueError("resolve the CLIP precision first (FeatureSettings.resolved): 'auto' is no precision")
        payload = self.to_dict()
        payload["mv"]["grid"] = list(payload["mv"]["grid"])
        payload["clip"]["weights_id"] = weights_id or payload["clip"]["weights"]
        payload["mv"].pop("max_frames", None)  # a cap only decides failure, never feature bytes
        payload["clip"].pop("activation", None)  # the resolved activation is in the weights id
        if self.window.enabled:  # unset, it is not in the dump: today's hashes exactly
            payload["window"] = {**payload["window"], "stride": self.window.stride_s}
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def without_window(self) -> FeatureSettings:
        """These settings for whole videos: what a model trained on trimmed clips was indexed with."""
        return self.model_copy(update={"window": WindowConfig()})


class RunConfig(Settings):
    """How an index job runs (never changes features)."""

    shard_size: int | None = Field(None, ge=1, le=10_000, description="videos per Dask task (default 16; 128 "
                                                                       "with CUDA, for big CLIP batches)")
    workers: int | None = Field(None, ge=1, le=1024, description="local Dask worker processes (default: one per "
                                                                  "core; with CUDA, one per GPU)")
    dask_address: str | None = Field(None, description="use an existing Dask scheduler, e.g. tcp://host:8786")
    clip_batch_size: int | None = Field(None, ge=1, le=4096, description="CLIP images per forward pass (default "
                                                                         "64; 512 with CUDA)")
    device: Device = Field("auto", description="auto: cuda if available, else cpu")
    decode_workers: int | None = Field(
        None, ge=0, le=1024, description="decoder processes feeding each worker's CLIP model (default: 0 on CPU, "
                                         "each worker decodes its own videos; with CUDA, the machine's cores shared "
                                         "among its GPU workers, less one each)")
    resources: dict[str, float] = Field(
        default_factory=dict, description="Dask resources an index shard needs, e.g. GPU=1: shards run only on "
                                          "workers started with `--resources GPU=1` (default with CUDA on a Dask "
                                          "cluster: GPU=1)")
    decode_timeout_s: float = Field(1800.0, gt=0, description="seconds allowed per video, checked between frames "
                                                              "(lower it for archives of short clips)")
    decode_hard_timeout_s: float | None = Field(
        None, gt=0, description="seconds after which a decoder stuck inside one video is killed (default: "
                                "decode timeout + 60)")
    lock_timeout_s: float = Field(6 * 3600.0, ge=0, description="seconds an index run waits while another run "
                                                                "writes the same (local) dataset")
    max_delete: float = Field(0.5, ge=0, le=1, description="largest share of a dataset's videos one run may mark "
                                                           "deleted (gone from the corpus); more stops the run "
                                                           "before it writes anything (an unmounted archive)")
    allow_mass_delete: bool = Field(False, description="let a run mark more than --max-delete of the dataset, or "
                                                       "all of it, deleted")
    keep_deleted_days: float = Field(30.0, ge=0, description="days a deleted video's row keeps its features, so "
                                                             "the file coming back unchanged is restored without "
                                                             "decoding")
    split_s: float = Field(600.0, ge=0, description="with --window: a video at least this many seconds long is "
                                                    "decoded in ranges (--range-length) by several tasks at once, "
                                                    "into the row one decode gives; 0: never")
    range_s: float = Field(120.0, ge=1, description="seconds of video per range of a long video (each range starts "
                                                     "at the keyframe nearest before)")

    @property
    def hard_timeout_s(self) -> float:
        """Seconds one video may spend in the decoder before its process is killed (a hang inside one frame)."""
        return self.decode_hard_timeout_s or self.decode_timeout_s + 60.0


class TrainConfig(Settings):
    """How the MV net, the fusion head and the CLIP linear probe are trained (stored in the bundle)."""

    mvnet: str = Field("mvnet-r21d", description="MV-net architecture: a name in moclip/model_configs or a JSON "
                                                 "path")
    mv_epochs: int = Field(40, ge=1, le=10_000, description="MV-net epochs (early stopping on val)")
    head_epochs: int = Field(100, ge=1, le=100_000, description="fusion-head and probe epochs")
    batch_size: int = Field(64, ge=2, le=65_536, description="MV-net batch size (at most: a small training set "
                                                            "gets smaller batches, >= 8 steps per epoch)")
    head_batch_size: int = Field(512, ge=2, le=65_536, description="fusion head and linear probe batch size "
                                                                   "(frozen features: big batches are cheap)")
    mv_lr: float = Field(2e-3, gt=0)
    head_lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    patience: int = Field(10, ge=1, description="early-stopping patience (epochs)")
    hidden: int = Field(512, ge=1, description="fusion-head hidden width")
    dropout: float = Field(0.5, ge=0, lt=1)
    stream_dropout: float = Field(0.3, ge=0, lt=1, description="fusion head: chance a training sample loses one "
                                                               "whole stream")
    clip_subsets: bool = Field(True, description="fusion head: train on the mean of a random k of each clip's K frame "
                                                 "embeddings (k from 1 to K), as time windows embed fewer frames "
                                                 "than training clips (docs/BENCHMARKS.md)")
    mv_folds: int = Field(0, ge=0, le=20, description="fusion head: train it on out-of-fold MV-net probabilities "
                                                      "from this many folds of the training videos (one extra MV "
                                                      "net per fold; measured worse on the demo, docs/BENCHMARKS.md)"
                                                      "; 0: on the features of the MV net fitted on the same videos")
    flip: bool = Field(True, description="horizontal-flip augmentation (off when classes depend on left vs right)")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="share of train held out for validation")
    seed: int = Field(0, ge=0)
    device: Device = Field("auto", description="auto: cuda if available, else cpu")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training forward passes; auto: bf16 where the CPU/GPU has it natively")
    prompts: Literal["short", "clip-ucf101", "plain"] = Field("short", description="zero-shot prompt ensemble")
