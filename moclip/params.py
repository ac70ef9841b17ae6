"""Typed job parameters (pydantic): the CLI and Prefect deployments validate the same model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from moclip.config import ClipConfig, FeatureSettings, MVConfig, RunConfig

if TYPE_CHECKING:
    from moclip.corpus import CorpusSpec

Layout = Literal["folder", "ucf101", "hmdb51", "manifest", "unlabeled"]


class IndexParams(BaseModel):
    """Everything an index run needs. Unknown names, wrong types and out-of-range values are rejected."""

    model_config = ConfigDict(extra="forbid")

    corpus: str = Field(description="corpus root folder")
    out: str = Field(description="dataset folder or fsspec URL (s3://bucket/prefix, ...)")
    layout: Layout = "folder"
    split_dir: str | None = Field(None, description="folder with official split files (ucf101, hmdb51)")
    split: int = Field(1, ge=1, le=3)
    manifest: str | None = Field(None, description="CSV manifest (layout=manifest)")
    allow_outside_root: bool = False
    segments: int = Field(8, ge=1, le=64, description="T: temporal segments of the MV tensor")
    grid: tuple[int, int] = Field((15, 20), description="(H, W) cells of the MV tensor")
    mv_backend: Literal["pyav", "mvextractor"] = "pyav"
    max_frames: int = Field(216_000, ge=1, description="cap on decoded frames per video")
    clip_model: str = "ViT-B-32"
    clip_weights: str = Field("openai", description="open_clip pretrained tag, checkpoint path, or 'none'")
    clip_activation: Literal["auto", "gelu", "quickgelu"] = Field(
        "auto", description="CLIP activation; auto: from the tag, the model config or the checkpoint file")
    clip_frames: int = Field(8, ge=1, le=64, description="K: RGB frames embedded per video")
    clip_precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32 (recorded resolved)")
    clip_batch_size: int = Field(64, ge=1, le=4096)
    shard_size: int = Field(16, ge=1, le=10_000, description="videos per Dask task")
    workers: int | None = Field(None, ge=1, le=1024, description="local Dask worker processes (default: cores)")
    dask_address: str | None = Field(None, description="existing Dask scheduler, e.g. tcp://host:8786")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    decode_timeout_s: float = Field(1800.0, gt=0)
    decode_hard_timeout_s: float | None = Field(
        None, gt=0, description="kill a decoder still inside one video after this (default: decode_timeout_s + 60)")
    retry_failed: bool = Field(False, description="re-decode videos that failed before")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `out`")

    def corpus_spec(self) -> CorpusSpec:
        from moclip.corpus import CorpusSpec  # pandas: not for every command line

        return CorpusSpec(root=self.corpus, layout=self.layout, split_dir=self.split_dir, split=self.split,
                          manifest=self.manifest, allow_outside_root=self.allow_outside_root)

    def settings(self) -> FeatureSettings:
        return FeatureSettings(
            mv=MVConfig(segments=self.segments, grid=self.grid, backend=self.mv_backend, max_frames=self.max_frames),
            clip=ClipConfig(model=self.clip_model, weights=self.clip_weights, frames=self.clip_frames,
                            precision=self.resolved_precision(), activation=self.clip_activation),
        )

    def resolved_precision(self) -> str:
        if self.clip_precision != "auto":
            return self.clip_precision
        from moclip.precision import default_precision  # torch only, not open_clip

        return default_precision(self.device)

    def run_config(self) -> RunConfig:
        return RunConfig(
            shard_size=self.shard_size, workers=self.workers, dask_address=self.dask_address,
            clip_batch_size=self.clip_batch_size, device=self.device, decode_timeout_s=self.decode_timeout_s,
            decode_hard_timeout_s=self.decode_hard_timeout_s,
        )


class TrainParams(BaseModel):
    """A train (and evaluate) run. Unknown names, wrong types and out-of-range values are rejected."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="indexed dataset folder or fsspec URL")
    model_out: str = Field(description="where the trained-model bundle is written")
    report_out: str | None = Field(None, description="where report.md / report.html go (evaluate)")
    mvnet: str = "mvnet-r21d"
    mv_epochs: int = Field(40, ge=1, le=10_000)
    head_epochs: int = Field(100, ge=1, le=100_000)
    batch_size: int = Field(64, ge=2, le=65_536)
    patience: int = Field(10, ge=1)
    flip: bool = Field(True, description="horizontal-flip augmentation (off when classes depend on left/right)")
    val_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    prompts: Literal["short", "clip-ucf101", "plain"] = "short"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="training forward passes; auto = bf16 where the hardware has it natively")

    def train_config(self):
        from moclip.train.pipeline import TrainConfig

        return TrainConfig(mvnet=self.mvnet, mv_epochs=self.mv_epochs, head_epochs=self.head_epochs,
                           batch_size=self.batch_size, patience=self.patience, flip=self.flip,
                           val_fraction=self.val_fraction, seed=self.seed, device=self.device, prompts=self.prompts,
                           precision=self.precision)


class LabelParams(BaseModel):
    """Label an archive with a trained bundle. Unknown names, wrong types and out-of-range values are rejected."""

    model_config = ConfigDict(extra="forbid")

    corpus: str = Field(description="archive folder (videos found recursively) or manifest root")
    model: str = Field(description="trained-model bundle folder")
    out: str = Field(description="output folder or fsspec URL: predictions.parquet, predictions.csv")
    features_out: str | None = Field(None, description="where the archive's features go (default: OUT/features)")
    layout: Literal["unlabeled", "manifest", "folder"] = "unlabeled"
    manifest: str | None = None
    top_k: int = Field(5, ge=1, le=1000)
    extra_classes: list[str] = Field(default_factory=list, description="class names scored zero-shot by CLIP")
    shard_size: int = Field(16, ge=1, le=10_000)
    workers: int | None = Field(None, ge=1, le=1024)
    dask_address: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    storage_options: dict = Field(default_factory=dict)

    def index_params(self, settings: dict) -> IndexParams:
        """Index the archive with exactly the feature settings the model was trained on."""
        mv, clip = settings["mv"], settings["clip"]
        return IndexParams(
            corpus=self.corpus, out=self.features_out or f"{self.out.rstrip('/')}/features", layout=self.layout,
            manifest=self.manifest, segments=mv["segments"], grid=tuple(mv["grid"]), mv_backend=mv["backend"],
            max_frames=mv.get("max_frames", 216_000), clip_model=clip["model"], clip_weights=clip["weights"],
            clip_activation=clip.get("activation", "auto"), clip_frames=clip["frames"],
            clip_precision=clip["precision"], shard_size=self.shard_size, workers=self.workers,
            dask_address=self.dask_address, device=self.device, storage_options=self.storage_options,
        )
