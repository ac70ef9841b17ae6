"""What each job takes: composed of the settings models in ``moclip.config`` (each option is defined there, once).

The CLI (``flows.cli``) is generated from these models and the Prefect flows take them as their one parameter, so
a deployment's parameter schema and ``moclip <job> --help`` show the same names, defaults and descriptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from moclip.config import (
    ClipConfig,
    CorpusSpec,
    FeatureSettings,
    RunConfig,
    Settings,
    TimelineConfig,
    TrainConfig,
    WindowConfig,
)

__all__ = ["ArchiveSpec", "DemoParams", "EvaluateParams", "IndexParams", "LabelParams", "TrainParams"]


class IndexParams(Settings):
    """Index a video corpus into a Parquet feature dataset (MV tensors + CLIP embeddings), incrementally."""

    corpus: CorpusSpec = Field(description="the corpus and how to read it")
    out: str = Field(description="dataset folder or fsspec URL (s3://bucket/prefix, ...)")
    features: FeatureSettings = Field(default_factory=FeatureSettings, description="what the features are")
    run: RunConfig = Field(default_factory=RunConfig, description="how the job runs (never changes features)")
    retry_failed: bool = Field(False, description="decode again videos that failed before")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `out` (JSON), e.g. "
                                                                    '{"client_kwargs": {"endpoint_url": "..."}}')

    def settings(self) -> FeatureSettings:
        """The feature settings as the dataset records them (CLIP precision resolved for the run's device)."""
        return self.features.resolved(self.run.device)

    def workers_clip(self) -> tuple[ClipConfig, str] | None:
        """What local workers' fork server should build for them (CLIP config, device); None on a Dask cluster."""
        return None if self.run.dask_address else (self.settings().clip, self.run.device)


class TrainParams(Settings):
    """Train the MV net, fusion head, CLIP linear probe and zero-shot text embeddings on an indexed dataset."""

    dataset: str = Field(description="indexed dataset folder or fsspec URL")
    model_out: str = Field(description="where the trained-model bundle is written")
    report_out: str | None = Field(None, description="where report.md / report.html go (train-and-evaluate; "
                                                     "default: MODEL_OUT/report)")
    train: TrainConfig = Field(default_factory=TrainConfig, description="how the models are trained")


class EvaluateParams(Settings):
    """Evaluate a model bundle once on the dataset's test split and write the report."""

    dataset: str = Field(description="indexed dataset folder or fsspec URL")
    model: str = Field(description="model bundle folder")
    report_out: str = Field(description="report folder (report.md, report.html, results.json, plots/)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda if available, else cpu")


class ArchiveSpec(CorpusSpec):
    """An archive to label: a folder searched recursively (unlabeled), a manifest, or class folders."""

    layout: Literal["unlabeled", "manifest", "folder"] = Field(
        "unlabeled", description="unlabeled (videos found recursively), manifest (CSV) or folder")


class LabelParams(Settings):
    """Label an archive with a trained bundle (indexed first, incrementally, with the bundle's feature settings)."""

    corpus: ArchiveSpec = Field(description="the archive and how to read it")
    model: str = Field(description="trained-model bundle folder")
    out: str = Field(description="output folder or fsspec URL: predictions/ (one Parquet file per feature shard), "
                                 "predictions.csv, _labels.json")
    features_out: str | None = Field(None, description="where the archive's features go (default: OUT/features)")
    top_k: int = Field(5, ge=1, le=1000, description="labels (with probabilities) per video")
    extra_classes: list[str] = Field(default_factory=list, description="class names scored zero-shot by CLIP, "
                                                                       'e.g. "a,b,c"')
    csv: bool = Field(True, description="also export every prediction to OUT/predictions.csv (rewritten when "
                                         "predictions changed)")
    windows: WindowConfig = Field(default_factory=WindowConfig, description="time windows: label every window of "
                                                                           "long videos (OUT/windows.parquet, "
                                                                           "segments.parquet, timelines.html)")
    timeline: TimelineConfig = Field(default_factory=TimelineConfig, description="with windows: how segments are "
                                                                                "made")
    run: RunConfig = Field(default_factory=RunConfig, description="how indexing and prediction run")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `out` (JSON)")

    @field_validator("extra_classes", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        """ "a, b,c" or ["a", "b"]: names stripped, empty ones dropped."""
        names = v.split(",") if isinstance(v, str) else v
        if isinstance(names, list):
            return [n.strip() if isinstance(n, str) else n for n in names if not isinstance(n, str) or n.strip()]
        return v

    def index_params(self, features: FeatureSettings) -> IndexParams:
        """Index the archive with exactly the feature settings the model was trained on."""
        features = features.model_copy(update={"window": self.windows})
        return IndexParams(corpus=self.corpus.model_dump(), features=features, run=self.run,
                           out=self.features_out or f"{self.out.rstrip('/')}/features",
                           storage_options=self.storage_options)


class DemoParams(Settings):
    """Generate the synthetic demo corpus and run the whole job on it: index, train, evaluate, report."""

    out: str = Field(description="output folder: corpus/, dataset/, model/, report.html, report.md")
    corpus_seed: int = Field(0, ge=0, description="seed of the generated demo corpus")
    features: FeatureSettings = Field(default_factory=FeatureSettings, description="what the features are")
    run: RunConfig = Field(default_factory=RunConfig, description="how the index job runs; its device trains too")
    # the demo's motion classes depend on direction (left vs right, clockwise vs counter-clockwise): no flips
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(flip=False), description="how models are "
                                                                                           "trained")
    random_clip_fallback: bool = Field(True, description="go on with random CLIP weights (and say so) when the "
                                                         "CLIP weights cannot be loaded here")

    @model_validator(mode="before")
    @classmethod
    def _no_flip(cls, data: Any) -> Any:
        """Training options given without ``flip`` keep the demo's flip=False."""
        if isinstance(data, dict) and isinstance(data.get("train"), dict) and "flip" not in data["train"]:
            data = {**data, "train": {**data["train"], "flip": False}}
        return data

    def index_params(self, clip_weights: str | None = None) -> IndexParams:
        features = self.features
        if clip_weights is not None:
            features = features.model_copy(update={"clip": features.clip.model_copy(update={"weights": clip_weights})})
        return IndexParams(corpus=CorpusSpec(root=str(Path(self.out) / "corpus")),
                           out=str(Path(self.out) / "dataset"), features=features, run=self.run)

    def train_params(self) -> TrainParams:
        train = self.train if self.train.device != "auto" else self.train.model_copy(update={"device": self.run.device})
        return TrainParams(dataset=str(Path(self.out) / "dataset"), model_out=str(Path(self.out) / "model"),
                           report_out=self.out, train=train)
