"""Typed bundle metadata: bundle.json files written before the models' constructor arguments were stored (format 2
as commit 23e8e37's ``train`` wrote it, and format 1) validate, and rebuild the very models that were saved."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from moclip.bundle import BundleError, save_bundle
from moclip.config import FeatureSettings, TrainConfig
from moclip.inference import BundleMeta, Inputs, Predictor, read_meta
from moclip.inference.meta import validate_meta
from moclip.models import FusionHead, LinearProbe, create_mvnet, mvnet_config
from moclip.train import calibrate

# bundle.json exactly as `train` wrote it before `architecture` existed (tests/test_train.py's corpus, K = 2), of
# feature schema 1 (motion per frame)
SCHEMA1 = json.loads((Path(__file__).parent / "data" / "bundle_format2.json").read_text())


def schema2(m: dict) -> dict:
    """The same bundle.json as a model retrained on schema-2 features has it: the schema and its settings hash."""
    m = copy.deepcopy(m)
    m["features"]["settings"]["schema_version"] = 2
    m["features"]["settings_hash"] = FeatureSettings.model_validate(m["features"]["settings"]).settings_hash(
        m["clip"]["weights_id"])
    return m


FORMAT2 = schema2(SCHEMA1)


def test_a_bundle_of_older_features_is_refused_with_what_to_do(tmp_path):
    """A model trained on per-frame motion would read per-second motion 25x too fast: refused, never used."""
    with pytest.raises(BundleError, match=r"trained on feature schema 1 \(motion in % of the frame per frame.*"
                                          r"train it again"):
        validate_meta(SCHEMA1)
    (tmp_path / "bundle.json").write_text(json.dumps(SCHEMA1))
    with pytest.raises(BundleError, match="feature schema 1"):
        read_meta(tmp_path)


def format1(m: dict) -> dict:
    """What a bundle of format 1 (before calibration and modality dropout) held: no temperatures, no MV-missing
    counts, no training precision, an older train config."""
    m = copy.deepcopy(m)
    for key in ("calibration", "mv_missing", "precision"):
        del m[key]
    for key in ("head_batch_size", "precision", "stream_dropout"):
        del m["train_config"][key]
    m["format"] = 1
    return m


def test_todays_bundle_json_validates_and_gets_its_architecture():
    m = BundleMeta.model_validate(FORMAT2)
    a = m.architecture
    assert a.mvnet.config == FORMAT2["mvnet"]["config"] and a.mvnet.num_classes == 4
    assert a.fusion.model_dump() == {"mv_dim": 256, "clip_dim": 512, "num_classes": 4, "hidden": 512, "dropout": 0.5,
                                     "stream_dropout": 0.3}
    assert a.probe.model_dump() == {"dim": 512, "num_classes": 4}
    assert isinstance(m.train_config, TrainConfig) and m.train_config == TrainConfig.model_validate(
        {**FORMAT2["train_config"], "clip_subsets": False})  # trained before frame subsets existed
    assert isinstance(m.features.settings, FeatureSettings) and m.features.settings.clip.frames == 2
    assert m.features.settings.settings_hash("random-init") == FORMAT2["features"]["settings_hash"]
    assert m.clip.random_init is True and m.clip.weights_id == "random-init"
    assert m.clip.settings == m.features.settings.clip
    assert m.calibrated and m.temperature == {k: v["temperature"] for k, v in FORMAT2["calibration"].items()}
    assert m.files == FORMAT2["files"] and m.format == 2


def test_a_new_bundle_json_keeps_every_key_of_todays():
    """The format number is unchanged, so a moclip from before must read a new bundle.json: every key it had is
    still there, with the same value; ``architecture`` is the one addition."""
    dumped = BundleMeta.model_validate(FORMAT2).model_dump(mode="json")
    # a feature setting added since this file was written, at the default that keeps its behaviour (and hash)
    assert dumped["features"]["settings"]["mv"].pop("source") == "auto"
    assert dumped["train_config"].pop("clip_subsets") is False  # trained before k-of-K frame subsets existed
    assert dumped["train_config"].pop("mv_folds") == 0  # and before out-of-fold fusion
    assert dumped["fusion"].pop("mv_input") == "features"
    # a field added since, None when read from this file (the training videos' MV sources were not recorded)
    assert dumped.pop("mv_sources") is None
    assert set(dumped) - set(FORMAT2) == {"architecture"}
    assert {k: v for k, v in dumped.items() if k != "architecture"} == FORMAT2
    again = BundleMeta.model_validate(dumped)
    assert again == BundleMeta.model_validate(FORMAT2)


def test_format1_bundle_json_loads_uncalibrated():
    m = validate_meta(format1(FORMAT2))
    assert not m.calibrated and m.temperature == {"fusion": 1.0, "mv_only": 1.0, "clip_linear_probe": 1.0}
    assert m.mv_missing is None and m.precision is None
    assert m.train_config.precision == "auto" and m.architecture.fusion.stream_dropout == 0.0


def test_unknown_format_and_broken_metadata_are_refused(tmp_path):
    with pytest.raises(BundleError, match="bundle format 3"):
        validate_meta({**FORMAT2, "format": 3})
    broken = {k: v for k, v in FORMAT2.items() if k != "fusion"}
    with pytest.raises(BundleError, match="not valid bundle metadata"):
        validate_meta(broken)
    with pytest.raises(BundleError, match="not a moclip model bundle"):
        read_meta(tmp_path)
    (tmp_path / "bundle.json").write_text(json.dumps(FORMAT2))
    assert read_meta(tmp_path).classes == FORMAT2["classes"]  # bundle.json alone: no weights needed


def _small_bundle(tmp_path: Path, meta: dict, old_heads: bool = False):
    """Small random models saved with ``meta`` (a bundle.json of before ``architecture``) -> (path, models)."""
    torch.manual_seed(0)
    arch = mvnet_config("mvnet-tiny")
    net = create_mvnet(arch, 3).eval()
    head = FusionHead(arch["feature_dim"], 16, 3, hidden=8, dropout=0.2).eval()
    probe = LinearProbe(16, 3).eval()
    for m, d in ((head, arch["feature_dim"] + 16), (probe, 16)):
        m.mean.copy_(torch.randn(d))
        m.std.copy_(torch.rand(d) + 0.5)
    text = torch.nn.functional.normalize(torch.randn(3, 16), dim=1)
    meta = {**copy.deepcopy(meta), "classes": ["a", "b", "c"]}
    meta["mvnet"].update(config=arch, feature_dim=arch["feature_dim"])
    meta["features"].update(clip_dim=16, mv_shape=[8, 2, 15, 20])
    meta["fusion"].update(hidden=8, dropout=0.2)
    heads = {"fusion": head.state_dict(), "probe": probe.state_dict()}
    if old_heads:  # format 1 stored no `active` buffer
        heads = {k: {n: v for n, v in s.items() if n != "active"} for k, s in heads.items()}
    save_bundle(tmp_path, meta, {"mvnet": net.state_dict(), **heads, "text": {"class_embeddings": text}})
    return tmp_path, net, head, probe, text


def _inputs(n: int = 5) -> Inputs:
    g = torch.Generator().manual_seed(1)
    valid = torch.ones(n, 8)
    valid[0] = 0  # a video without motion vectors: the CLIP-only path
    clip_frames = torch.nn.functional.normalize(torch.randn(n, 2, 16, generator=g), dim=2)
    return Inputs(mv=torch.randn(n, 8, 2, 15, 20, generator=g), valid=valid, clip=clip_frames.mean(1),
                  clip_frames=clip_frames.numpy(), mv_missing=(valid > 0).sum(1) == 0)


@pytest.mark.parametrize("fmt", [2, 1])
def test_predictor_rebuilds_an_old_bundle_exactly(tmp_path, fmt):
    meta = {k: v for k, v in FORMAT2.items() if k not in ("files", "format", "saved_at")}
    if fmt == 1:
        meta = format1(meta)
    path, net, head, probe, text = _small_bundle(tmp_path, meta, old_heads=fmt == 1)
    p = Predictor.load(path, "cpu")
    assert p.classes == ["a", "b", "c"] and p.device == torch.device("cpu")
    assert p.precision in ("fp32", "bf16") and not p.head.training
    for rebuilt, saved in ((p.net, net), (p.probe, probe), (p.head, head)):
        assert rebuilt.state_dict().keys() == saved.state_dict().keys()
        same = [torch.equal(v, saved.state_dict()[k]) for k, v in rebuilt.state_dict().items()]
        # format 1: the heads' standardisation is upgraded on load (moclip.models.heads), all else is as saved
        assert all(same) if fmt == 2 or rebuilt is p.net else sum(not s for s in same) <= 2
    assert np.array_equal(p.text, text.numpy())
    x = _inputs()
    scores = p.method_scores(x, np.arange(5))
    assert set(scores) == {"zero_shot_mean", "zero_shot_single", "mv_only", "clip_linear_probe", "fusion"}
    assert all(s.shape == (5, 3) for s in scores.values())
    probs = p.fusion_probs(x)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    t = p.temperature["fusion"]
    assert t == (FORMAT2["calibration"]["fusion"]["temperature"] if fmt == 2 else 1.0)
    # the same head on the same features, calibrated: one pass (labelling) and batched (evaluate) agree
    assert np.allclose(probs, calibrate.softmax(scores["fusion"], t), atol=1e-3)
