"""What ``evaluate`` returns and the report reads: ``EvaluationResults``, the test-set results of one model bundle.

``results.json`` is its JSON: ``model_dump(mode="json")`` written as strict JSON (a NaN is written as null, and a
null read back into a number field is NaN again). Keys are checked both ways: a field that is not there is an
``AttributeError`` in the report, a key the model does not know is refused on validation. What may be missing by
design is optional: a method the results do not have (None), a metric there was nothing to compute on (NaN), a
per-class accuracy of a class without test videos and an empty reliability bin (None), a history without
validation (an empty or NaN ``val_top1``); a bundle of format 1 has no fitted temperatures (``calibration.fitted``
False, T = 1).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_serializer


def _nan_if_null(v: Any) -> Any:
    return float("nan") if v is None else v


Number = Annotated[float, BeforeValidator(_nan_if_null)]  # may be NaN: null in results.json


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSummary(_Record):
    url: str
    n_total: int  # videos indexed (ok + failed)
    n_ok: int
    n_failed: int
    n_train: int
    n_val: int
    n_test: int
    classes: list[str]  # the model's classes, in their index order
    split_name: str  # e.g. "ucf101 split 1"
    val_protocol: str


class ClipSummary(_Record):
    model: str
    weights_id: str | None
    frames: int
    random_init: bool


class PaperTop1(_Record):
    fusion: float
    zero_shot: float
    mv_only: float


class Paper(_Record):
    source: str
    top1: PaperTop1


# the published numbers the report sets beside this run's (the only place they are written)
PAPER = Paper(source="MoCLIP-Lite (arXiv 2509.17084), UCF101 split 1, top-1",
              top1=PaperTop1(fusion=0.892, zero_shot=0.650, mv_only=0.665))


class MethodSummary(_Record):
    """``moclip.train.metrics.summary``: top-1 and top-5 accuracy (fractions) on ``n`` videos."""

    top1: Number
    top5: Number
    n: int


class Methods(_Record):
    """Every method's test metrics, in the order of ``moclip.inference.method_scores``."""

    zero_shot_mean: MethodSummary | None = None
    zero_shot_single: MethodSummary | None = None
    mv_only: MethodSummary | None = None
    clip_linear_probe: MethodSummary | None = None
    fusion: MethodSummary | None = None

    def items(self) -> list[tuple[str, MethodSummary]]:
        """(name, metrics) of the methods the results have, in order."""
        return [(k, v) for k in type(self).model_fields if (v := getattr(self, k)) is not None]


class Reliability(_Record):
    """``moclip.train.calibrate.reliability``: per equal-width confidence bin (None: an empty bin)."""

    edges: list[float]
    confidence: list[float | None]
    accuracy: list[float | None]
    count: list[int]


class CalibrationSummary(_Record):
    """``moclip.train.calibrate.calibration_summary`` of one model on the test split."""

    temperature: float
    ece_before: Number
    ece_after: Number
    nll_before: Number
    nll_after: Number
    reliability_before: Reliability
    reliability_after: Reliability


class CalibratedMethods(_Record):
    fusion: CalibrationSummary | None = None
    mv_only: CalibrationSummary | None = None
    clip_linear_probe: CalibrationSummary | None = None


class CalibrationResults(_Record):
    fitted: bool  # False: a bundle of format 1, without temperatures (T = 1)
    methods: CalibratedMethods


class MVMissing(_Record):
    n_test: int  # test videos without usable motion vectors


class PerClass(_Record):
    """Per-class test accuracy of each trained model, in class order (None: the class has no test video)."""

    fusion: list[float | None]
    mv_only: list[float | None]
    clip_linear_probe: list[float | None]


class Confusion(_Record):
    fusion: list[list[int]]  # rows: true class, columns: predicted


class Curve(_Record):
    """``moclip.train.loop.History.to_dict``: per epoch, and the best (0-based) epoch."""

    train_loss: list[Number]
    val_top1: list[Number]
    best_epoch: int
    best_val_top1: Number


class Curves(_Record):
    """Each trained model's history, in ``bundle.json``'s (sorted) key order, as results.json always had them."""

    clip_linear_probe: Curve
    fusion: Curve
    mv_net: Curve


class ModelSize(_Record):
    params: int
    flops_per_video: int
    description: str


class FusionSize(_Record):
    params: int
    description: str


class ModelSizes(_Record):
    mv_net: ModelSize
    paper_mv_net: ModelSize
    fusion: FusionSize


class Provenance(_Record):
    created_at: str
    seeds: dict[str, int]
    versions: dict[str, str]
    time_per_stage_s: dict[str, float]
    device: str
    precision: str
    dataset_settings_hash: str | None
    model_bundle: str
    command: str | None = None  # the command line, where a caller records it (written only then)

    @model_serializer(mode="wrap")
    def _without_unset_command(self, handler: Any) -> Any:
        out = handler(self)
        if out.get("command") is None:
            out.pop("command", None)
        return out


class EvaluationResults(_Record):
    """The test-set results of one model bundle on one dataset (see the module docstring)."""

    title: str = "moclip evaluation"
    dataset: DatasetSummary
    clip: ClipSummary
    paper: Paper = PAPER
    methods: Methods
    calibration: CalibrationResults
    mv_missing: MVMissing
    per_class: PerClass
    confusion: Confusion
    curves: Curves
    models: ModelSizes
    provenance: Provenance
