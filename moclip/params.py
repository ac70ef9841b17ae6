"""What each job takes: composed of the settings models in ``moclip.config`` (each option is defined there, once).

The CLI (``flows.cli``) is generated from these models and the Prefect flows take them as their one parameter, so
a deployment's parameter schema and ``moclip <job> --help`` show the same names, defaults and descriptions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator, model_validator

from moclip.config import (
    ClipConfig,
    CorpusSpec,
    FeatureSettings,
    RunConfig,
    Settings,
    TimelineConfig,
    TrainConfig,
    WindowConfig,
    recorded_schema,
    schema_problem,
)
from moclip.vocabulary import Vocabulary, read_vocabulary_file

__all__ = ["ArchiveSpec", "DemoParams", "EvaluateParams", "IndexParams", "LabelParams", "ReviewExportParams",
           "ReviewImportParams", "ReviewRoundParams", "ReviewSelectParams", "RetrainParams", "SearchParams",
           "TrainParams"]


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

    def with_recorded(self, manifest: dict | None) -> tuple[IndexParams, list[str]]:
        """These parameters with what the caller did not give (pydantic's ``model_fields_set``: a flag, a key of a
        deployment's parameters) taken from the dataset's manifest: the corpus layout and split options, and the
        feature settings it was indexed with. So a nightly ``moclip index ARCHIVE --out DS`` re-indexes nothing
        because a default differs from what a label job or an earlier run chose. Returns the parameters and one
        line per adopted value (for the run's log). A new dataset (no manifest) keeps the defaults."""
        if not manifest:
            return self, []
        notes: list[str] = []
        recorded = {k: v for k, v in (manifest.get("corpus") or {}).items()
                    if k in CorpusSpec.model_fields and k != "root" and k not in self.corpus.model_fields_set
                    and v != getattr(self.corpus, k)}
        corpus = self.corpus
        if recorded:
            corpus = CorpusSpec.model_validate({**self.corpus.model_dump(), **recorded})
            notes.append("corpus " + ", ".join(f"{k.replace('_', '-')} {v}" for k, v in recorded.items())
                         + " as the dataset recorded it (give --layout and the split options to change it)")
        features = self.features
        if manifest.get("settings"):
            recorded = dict(manifest["settings"])
            problem = schema_problem(recorded_schema(recorded))
            recorded.pop("schema_version", None)  # never adopted: this moclip writes its own
            if problem:
                notes.append(f"the dataset was indexed with {problem}: every video is indexed again")
            features = FeatureSettings.model_validate(_fill_unset(self.features, recorded))
            clip = features.clip
            if clip.precision == "fp16" and "precision" not in self.features.clip.model_fields_set:
                from moclip.precision import device_type  # torch

                if device_type(self.run.device) != "cuda":  # fp16 needs CUDA: a CPU run keeps its own precision
                    features = features.model_copy(update={"clip": clip.model_copy(
                        update={"precision": self.features.clip.precision})})
                    notes.append("the dataset's CLIP precision fp16 needs CUDA: this run on the CPU uses "
                                 f"--precision {self.features.clip.precision}")
        out = self.model_copy(update={"corpus": corpus, "features": features})
        changed = settings_diff(self.settings().to_dict(), out.settings().to_dict())
        if changed:
            notes.append("feature settings as the dataset recorded them: " + ", ".join(changed)
                         + " (give the flags to change them: that re-indexes every video)")
        return out, notes


def _fill_unset(model: BaseModel, recorded: dict) -> dict:
    """``model`` as a dict, with every field its caller did not set replaced by ``recorded``'s value (nested
    models field by field: ``--segments 4`` keeps the recorded grid)."""
    out: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if name not in model.model_fields_set and name in recorded:
            out[name] = recorded[name]
        elif isinstance(value, BaseModel) and isinstance(recorded.get(name), dict):
            out[name] = _fill_unset(value, recorded[name])
        else:
            out[name] = value.model_dump() if isinstance(value, BaseModel) else value
    return out


def _given(model: BaseModel) -> BaseModel:
    """``model`` (a private copy) with every field, nested ones too, marked as given by its caller
    (``model_fields_set``), so ``IndexParams.with_recorded`` adopts none of them."""
    model.model_fields_set.update(type(model).model_fields)
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            _given(value)
    return model


def settings_diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    """``"mv.segments 8 -> 4"`` for every value that differs between two settings dicts (``to_dict()``)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a} -> {b}")
    return out


class TrainParams(Settings):
    """Train the MV net, fusion head, CLIP linear probe and zero-shot text embeddings on an indexed dataset, on
    reviewed labels (``reviewed``), or on both."""

    dataset: str | None = Field(None, description="indexed dataset folder or fsspec URL")
    reviewed: list[str] = Field(default_factory=list, description="label runs whose reviewed videos and time ranges "
                                                                  "are training samples too (moclip review import)")
    model_out: str = Field(description="where the trained-model bundle is written")
    report_out: str | None = Field(None, description="where report.md / report.html go (train-and-evaluate; "
                                                     "default: MODEL_OUT/report)")
    train: TrainConfig = Field(default_factory=TrainConfig, description="how the models are trained")

    @model_validator(mode="after")
    def _something(self) -> TrainParams:
        if self.dataset is None and not self.reviewed:
            raise ValueError("nothing to train on: give a dataset, --reviewed LABELS, or both")
        return self


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


Prompts = Literal["short", "clip-ucf101", "plain"]


class LabelParams(Settings):
    """Label an archive with a trained bundle (``model``), or with no model by CLIP zero-shot over a vocabulary
    (``classes``); the archive is indexed first, incrementally."""

    corpus: ArchiveSpec = Field(description="the archive and how to read it")
    model: str | None = Field(None, description="trained-model bundle folder (or give --classes instead)")
    classes: list[str] | None = Field(None, description="no model: label by CLIP zero-shot over these class names "
                                                        '("a,b,c", or a file of names, one per line, each optionally '
                                                        '"name: prompt; prompt"); probabilities are not calibrated')
    prompts: Prompts = Field("short", description="with --classes: the prompt ensemble filled with each name")
    features: FeatureSettings = Field(default_factory=FeatureSettings,
                                      description="with --classes: how the archive is indexed (with --model: the "
                                                  "model's settings; time windows: --window)")
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
        """ "a, b,c" or ["a", "b"]: names stripped, empty ones dropped, repeats dropped (CLIP's tokenizer lowercases:
        "Diving" and "diving" are one class; the first spelling is kept)."""
        names = v.split(",") if isinstance(v, str) else v
        if not isinstance(names, list):
            return v
        out, seen = [], set()
        for n in names:
            if isinstance(n, str):
                n = n.strip()
                if not n or n.lower() in seen:
                    continue
                seen.add(n.lower())
            out.append(n)
        return out

    @field_validator("classes", mode="before")
    @classmethod
    def _vocabulary(cls, v: object) -> object:
        """ "a,b,c", a list, or a file of names (one entry naming an existing file): checked by ``Vocabulary.parse``
        (an empty list or a repeated name is refused), stored as entries ``name`` or ``name: prompt; prompt``."""
        if v is None:
            return v
        entries = v.split(",") if isinstance(v, str) else v
        if not isinstance(entries, list):
            return v
        entries = [e.strip() if isinstance(e, str) else e for e in entries]
        entries = [e for e in entries if e != ""]
        if len(entries) == 1 and isinstance(entries[0], str) and Path(entries[0]).expanduser().is_file():
            entries = read_vocabulary_file(Path(entries[0]).expanduser())
        vocab = Vocabulary.parse([str(e) for e in entries])
        return [n + (": " + "; ".join(p) if p else "") for n, p in zip(vocab.names, vocab.prompts)]

    @model_validator(mode="after")
    def _model_or_classes(self) -> LabelParams:
        if (self.model is None) == (self.classes is None):
            raise ValueError("give either model (a trained bundle) or classes (zero-shot class names), not "
                             + ("both" if self.model is not None else "neither"))
        if self.classes is not None and self.extra_classes:
            raise ValueError("extra_classes score names beside a trained model; with classes, add them to classes")
        if self.model is not None and "features" in self.model_fields_set:
            raise ValueError("with a model, the archive is indexed with the model's feature settings: leave out the "
                             "feature options (give them to zero-shot labelling: classes)")
        return self

    @property
    def vocabulary(self) -> Vocabulary | None:
        """The zero-shot vocabulary (None with a model)."""
        return None if self.classes is None else Vocabulary.parse(self.classes)

    def index_params(self, features: FeatureSettings | None = None) -> IndexParams:
        """Index the archive with exactly the feature settings the model was trained on (``features``), or, for
        zero-shot labelling (None), with this job's feature options: those not given come from the dataset's
        manifest when it has one, as ``moclip index`` does (``with_recorded``). A layout the caller did not give
        stays unset (unlabeled, unless the features dataset recorded another)."""
        if features is not None:
            # every feature setting given (the model's, and this job's windows): none may come from the manifest
            features = _given(features.model_copy(update={"window": self.windows}, deep=True))
        else:
            features = self.features.model_copy(deep=True)
            if "windows" in self.model_fields_set:
                features = features.model_copy(update={"window": self.windows})
            else:  # windows or none as the dataset recorded them
                features.model_fields_set.discard("window")
        corpus = CorpusSpec.model_validate({**self.corpus.model_dump(exclude_unset=True), "layout": self.corpus.layout})
        if "layout" not in self.corpus.model_fields_set:
            corpus.model_fields_set.discard("layout")
        return IndexParams(corpus=corpus, features=features, run=self.run,
                           out=self.features_out or f"{self.out.rstrip('/')}/features",
                           storage_options=self.storage_options)


# the demo's motion classes depend on direction (left vs right, clockwise vs counter-clockwise): no flips
DEMO_FLIP = False


class DemoParams(Settings):
    """Generate the synthetic demo corpus and run the whole job on it: index, train, evaluate, report."""

    out: str = Field(description="output folder: corpus/, dataset/, model/, report.html, report.md")
    corpus_seed: int = Field(0, ge=0, description="seed of the generated demo corpus")
    features: FeatureSettings = Field(default_factory=FeatureSettings, description="what the features are")
    run: RunConfig = Field(default_factory=RunConfig, description="how the index job runs; its device trains too")
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(flip=DEMO_FLIP),
                               description="how models are trained")
    random_clip_fallback: bool = Field(True, description="go on with random CLIP weights (and say so) when the "
                                                         "CLIP weights cannot be loaded here")

    @model_validator(mode="before")
    @classmethod
    def _no_flip(cls, data: Any) -> Any:
        """Training options given without ``flip`` keep the demo's (``DEMO_FLIP``)."""
        if isinstance(data, dict) and isinstance(data.get("train"), dict) and "flip" not in data["train"]:
            data = {**data, "train": {**data["train"], "flip": DEMO_FLIP}}
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


class SearchParams(Settings):
    """Search an indexed dataset by text or by example; hits are videos, or time ranges of windowed videos."""

    dataset: str = Field(description="indexed dataset folder or fsspec URL (only read)")
    text: str | None = Field(None, description='what to find, in words ("a person diving"; with random CLIP '
                                               "weights the ranking means nothing)")
    like: str | None = Field(None, description="query by example: a video file, or a moment of one (VIDEO@SECONDS)")
    top_k: int = Field(20, ge=1, le=10000, description="hits to return")
    out: str | None = Field(None, description="folder for results.parquet and results.html (a contact sheet)")
    min_motion: float | None = Field(None, ge=0, description="only items moving at least this much (% of the "
                                                             "frame per second, from the motion vectors)")
    max_motion: float | None = Field(None, ge=0, description="only items moving at most this much (e.g. 0.5: "
                                                             "still shots)")
    dedup: bool = Field(True, description="collapse near-duplicates (the same clip re-encoded or re-uploaded) "
                                          "into one hit with a count")
    ranges_per_video: int = Field(3, ge=1, le=1000, description="windowed datasets: the best time ranges kept "
                                                                "per video")
    range_tolerance: float = Field(0.02, ge=0, le=2, description="windowed datasets: a range takes in neighbouring "
                                                                 "windows scoring within this (cosine) of its best "
                                                                 "one")
    index_dir: str | None = Field(None, description="where the search catalog is kept (default: DATASET/_search, "
                                                    "or the user cache for remote datasets)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the query is embedded")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `dataset` (JSON)")

    @model_validator(mode="after")
    def _one_query(self) -> SearchParams:
        if (self.text is None) == (self.like is None):
            raise ValueError("give either --text or --like, not " + ("both" if self.text is not None else "neither"))
        if self.text is not None and not self.text.strip():
            raise ValueError("the text query is empty")
        if self.min_motion is not None and self.max_motion is not None and self.min_motion > self.max_motion:
            raise ValueError(f"min_motion {self.min_motion:g} is above max_motion {self.max_motion:g}: nothing "
                             "could match")
        return self


class ReviewSelectParams(Settings):
    """Pick what people should check next in a label run: the items the model is least sure of, diverse."""

    labels: str = Field(description="a label run's output folder (moclip label --out)")
    n: int = Field(200, ge=1, le=1_000_000, validation_alias=AliasChoices("n", "count"),
                   description="items to pick (-n or --count)")
    out: str = Field(description="the batch folder: items.parquet, batch.json")
    strategy: Literal["margin", "entropy", "random"] = Field(
        "margin", description="margin: smallest top-1 minus top-2 probability first; entropy: most spread first; "
                              "random: the baseline")
    pool_factor: float = Field(5.0, ge=1, le=1000, description="the most uncertain N x this are the pool the "
                                                                "diverse picks come from")
    per_class: int | None = Field(None, ge=0, description="each predicted class's most uncertain items picked "
                                                          "first (default: N / (4 x the classes in the pool))")
    diverse: bool = Field(True, description="pick diverse items by their CLIP embeddings (k-center greedy)")
    seed: int = Field(0, ge=0, description="seed of the random strategy")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `labels` (JSON)")


class ReviewExportParams(Settings):
    """Hand a review batch to Label Studio: a project (created or updated) and its tasks, moclip's predictions as
    pre-annotations; without --url, BATCH/tasks.json and BATCH/config.xml to import by hand."""

    batch: str = Field(description="a review batch folder (moclip review select --out)")
    to: Literal["label-studio"] = Field("label-studio", description="the labelling tool")
    url: str | None = Field(None, description="Label Studio's address, e.g. http://localhost:8080 (without it: "
                                              "files only)")
    token: str | None = Field(None, description="a Label Studio access token (default: the environment's "
                                                "MOCLIP_LABEL_STUDIO_TOKEN)")
    project: str | None = Field(None, description="the project's title (default: 'moclip: <label run folder> "
                                                   "<hash of its path>')")
    media_url: str | None = Field(None, description="the archive as the browser reaches it: PREFIX/<video_id> "
                                                    "(default: Label Studio's local files)")
    document_root: str | None = Field(None, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (local-files "
                                                        "URLs are relative to it; default /)")


class ReviewImportParams(Settings):
    """Read reviewers' answers (Label Studio's JSON export, a file or from the server) into
    LABELS/_review/reviewed.parquet."""

    labels: str = Field(description="the label run's output folder the batch came from")
    export: str | None = Field(None, description="Label Studio's JSON export of the project (Export -> JSON)")
    from_label_studio: bool = Field(False, description="read the export from the server (--url, --token, --project)")
    url: str | None = Field(None, description="Label Studio's address")
    token: str | None = Field(None, description="a Label Studio access token (default: MOCLIP_LABEL_STUDIO_TOKEN)")
    project: str | None = Field(None, description="the project's title (default: 'moclip: <label run folder> "
                                                   "<hash of its path>')")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `labels` (JSON)")

    @model_validator(mode="after")
    def _one_source(self) -> ReviewImportParams:
        if (self.export is None) == (not self.from_label_studio):
            raise ValueError("give either an export file (--export) or --from-label-studio, not "
                             + ("both" if self.export is not None else "neither"))
        if self.from_label_studio and not self.url:
            raise ValueError("--from-label-studio needs --url")
        return self


class ReviewRoundParams(Settings):
    """One review round after labelling: pick what people should check and put it in the Label Studio project."""

    labels: str = Field(description="a label run's output folder")
    n: int = Field(200, ge=1, le=1_000_000, description="items to pick")
    strategy: Literal["margin", "entropy", "random"] = Field("margin", description="how uncertainty is measured")
    batch_out: str | None = Field(None, description="the batch folder (default: LABELS/_review/batches/<UTC time>)")
    url: str = Field(description="Label Studio's address (the token: the worker's MOCLIP_LABEL_STUDIO_TOKEN, never "
                                 "a flow parameter, which the Prefect server stores in clear)")
    project: str | None = Field(None, description="the project's title (default: 'moclip: <label run folder> "
                                                   "<hash of its path>')")
    media_url: str | None = Field(None, description="the archive as the browser reaches it: PREFIX/<video_id>")
    document_root: str | None = Field(None, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT")


class RetrainParams(Settings):
    """Learn from the reviews: import them, train on them (and a training dataset), evaluate, label the archive again
    with the new model (its features are reused: only the model changed, so every prediction is made again)."""

    labels: str = Field(description="the label run whose reviews to learn from, and to label again")
    dataset: str | None = Field(None, description="a training dataset trained on too (and evaluated on)")
    model_out: str = Field(description="where the new model bundle is written")
    url: str | None = Field(None, description="Label Studio's address: import the project's answers first (the "
                                              "token: the worker's MOCLIP_LABEL_STUDIO_TOKEN)")
    project: str | None = Field(None, description="the project's title (default: 'moclip: <label run folder> "
                                                   "<hash of its path>')")
    train: TrainConfig = Field(default_factory=TrainConfig, description="how the models are trained")
    relabel: bool = Field(True, description="label the archive again with the new model")
    storage_options: dict = Field(default_factory=dict, description="fsspec options for `labels` (JSON)")
