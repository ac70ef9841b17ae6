"""What a label means: calibrated probabilities, the CLIP-only path for videos without motion vectors, and every
refusal of evaluate / label firing on real datasets (indexed in-process, no Prefect)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers.datasets import index_in_process, motion_corpus
from helpers.training import FAST
from helpers.videos import make_video

from moclip import zeroshot
from moclip.bundle import load_bundle
from moclip.dataset import load_features
from moclip.inference import Inputs, Predictor, fused_features
from moclip.label import predict
from moclip.precision import autocast
from moclip.train.pipeline import evaluate, train

pytestmark = pytest.mark.slow



@pytest.fixture
def trained(motion_dataset, motion_bundle):
    return motion_dataset, motion_bundle


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An archive with a normal clip, an all-intra stream (no motion vectors) and a single-frame clip."""
    root = tmp_path_factory.mktemp("archive")
    make_video(root / "x" / "normal.mp4", dx=3, n_frames=20, seed=50)
    make_video(root / "x" / "intra.mp4", dx=3, n_frames=20, gop=1, seed=51)
    make_video(root / "x" / "one.mp4", n_frames=1, seed=52)
    return root


def test_bundle_is_calibrated_on_validation(trained):
    from moclip.train import calibrate

    _, model = trained
    m = load_bundle(model).meta
    assert m["format"] == 2
    for key in ("fusion", "mv_only", "clip_linear_probe"):
        cal = m["calibration"][key]
        assert cal["fitted_on"] == "val" and cal["n"] == m["dataset"]["n_val"]
        assert calibrate.T_MIN <= cal["temperature"] <= calibrate.T_MAX
        assert cal["val_nll_after"] <= cal["val_nll_before"] + 1e-9  # T = 1 was a candidate


def test_video_without_motion_vectors_is_predicted_by_the_clip_only_path(trained, archive, tmp_path):
    ds, model = trained
    feats = index_in_process(archive, tmp_path / "archive-ds")
    preds = predict(feats, model, top_k=4).set_index("video_id")
    assert preds["mv_missing"].to_dict() == {"x/intra.mp4": True, "x/normal.mp4": False, "x/one.mp4": True}
    from moclip.train import calibrate

    models = Predictor.load(model, "cpu")
    fs = load_features(feats)
    mv, valid = torch.from_numpy(fs.mv), torch.from_numpy(fs.mv_valid)
    clip = torch.from_numpy(zeroshot.video_embedding(fs.clip))
    # at the precision labelling runs in (the training one: bf16 on a CPU with native bf16, else fp32)
    with torch.no_grad(), autocast(models.device, models.precision):
        x = fused_features(models.net, mv, valid, clip, models.precision)
        z = models.head.standardise(x)
        z[:, :models.head.mv_dim] = 0  # the MV block at its train mean: what modality dropout trained
        clip_only = models.head.net(z).float().numpy()
        with_mv = models.head(x).float().numpy()
    expected = calibrate.softmax(clip_only, models.temperature["fusion"])
    classes = models.classes
    for i, vid in enumerate(fs.meta["video_id"]):
        row = preds.loc[vid]
        got = dict(zip(row["labels"], row["probs"]))
        ref = expected[i] if row["mv_missing"] else calibrate.softmax(with_mv[i:i + 1],
                                                                       models.temperature["fusion"])[0]
        assert np.allclose([got[c] for c in row["labels"]], [ref[classes.index(c)] for c in row["labels"]],
                           atol=1e-4), vid
        assert abs(sum(got.values()) - 1.0) < 1e-4  # top-4 of 4 classes: the full distribution


def test_a_single_extra_class_is_not_certain_everywhere(trained, archive, tmp_path):
    """``--extra-classes juggling`` used to give every video probability 1.0 (a softmax over one name)."""
    _, model = trained
    feats = index_in_process(archive, tmp_path / "ds")
    preds = predict(feats, model, top_k=3, extra_classes=["juggling"])
    probs = [p[0] for p in preds["zero_shot_probs"]]
    assert all(0 < p < 1 for p in probs), probs
    assert all(len(m) == 1 for m in preds["zero_shot_margin"])


def test_fewer_decodable_frames_than_k_are_padded_and_recorded(archive, tmp_path):
    feats = index_in_process(archive, tmp_path / "ds", frames=4)
    fs = load_features(feats)
    n = fs.meta.set_index("video_id")["n_clip_frames"].to_dict()
    assert n == {"x/intra.mp4": 4, "x/normal.mp4": 4, "x/one.mp4": 1}
    assert fs.clip.shape[:2] == (3, 4)
    one = fs.meta.index[fs.meta["video_id"] == "x/one.mp4"][0]
    assert np.allclose(fs.clip[one], fs.clip[one][0])  # the one real frame, four times


def test_a_dataset_with_short_rows_from_before_padding_still_loads(archive, tmp_path):
    """Rows written before padding existed hold fewer than K embeddings; loading pads them (it used to refuse the
    whole dataset as "mixed settings")."""
    feats = index_in_process(archive, tmp_path / "ds", frames=4)
    shard = next((tmp_path / "ds").glob("part-*.parquet"))
    t = pq.read_table(shard)
    rows = t.to_pylist()
    for r in rows:
        if r["video_id"] == "x/one.mp4":
            r["clip"], r["clip_shape"] = r["clip"][:512], [1, 512]
    legacy = pa.Table.from_pylist(rows, schema=t.schema).drop_columns(["n_clip_frames"])  # and no new column
    pq.write_table(legacy, shard)
    fs = load_features(feats)
    assert fs.clip.shape == (3, 4, 512) and fs.meta["n_clip_frames"].isna().all()
    one = fs.meta.index[fs.meta["video_id"] == "x/one.mp4"][0]
    assert np.allclose(fs.clip[one], fs.clip[one][0])


def test_evaluate_and_label_refuse_other_feature_settings(trained, archive, tmp_path):
    ds, model = trained
    other = index_in_process(archive, tmp_path / "k3", frames=3)  # the model was trained with K = 2
    with pytest.raises(ValueError, match="indexed with feature settings .* trained on"):
        predict(other, model)
    labelled_other = index_in_process(motion_corpus(tmp_path / "c", per_class=3, n_frames=12), tmp_path / "k3b",
                                      frames=3)
    with pytest.raises(ValueError, match="indexed with feature settings .* trained on"):
        evaluate(labelled_other, model)


def test_evaluate_refuses_test_videos_used_in_training(trained, tmp_path):
    ds, model = trained
    leaky = tmp_path / "leaky"
    shutil.copytree(ds, leaky)
    trained_on = set(load_bundle(model).meta["splits"]["train"])
    for shard in leaky.glob("part-*.parquet"):  # an "official" split whose test side is the model's training set
        t = pq.read_table(shard)
        split = pa.array(["test" if v in trained_on else "train" for v in t.column("video_id").to_pylist()])
        pq.write_table(t.set_column(t.schema.get_field_index("split"), "split", split), shard)
    with pytest.raises(ValueError, match=r"test videos were used in training or validation"):
        evaluate(str(leaky), model)


def test_training_refuses_clip_weights_that_changed(trained, tmp_path):
    """The text tower is rebuilt from the dataset's weights setting: if that now resolves to other weights than
    the ones the image embeddings were made with, training stops instead of pairing mismatched towers."""
    ds, _ = trained
    changed = tmp_path / "changed"
    shutil.copytree(ds, changed)
    manifest = json.loads((changed / "_manifest.json").read_text())
    manifest["clip_weights_id"] = "file:0123456789abcdef+gelu"  # what a checkpoint replaced in place looks like
    (changed / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="now resolves to random-init"):
        train(str(changed), tmp_path / "m", FAST, log=lambda m: None)


def test_evaluate_reports_calibration_and_probs_use_the_temperature(trained):
    ds, model = trained
    r = evaluate(ds, model, device="cpu")
    cal = r.calibration
    assert cal.fitted is True
    t = load_bundle(model).meta["calibration"]["fusion"]["temperature"]
    assert cal.methods.fusion.temperature == t
    for key in ("fusion", "mv_only", "clip_linear_probe"):
        c = getattr(cal.methods, key)
        assert 0 <= c.ece_before <= 1 and 0 <= c.ece_after <= 1
        assert sum(c.reliability_after.count) == r.dataset.n_test
    assert r.mv_missing.n_test == 0
    json.dumps(r.model_dump(mode="json"))


def test_one_predictor_labels_and_a_bundle_json_of_before_gives_the_same_results(trained, archive, tmp_path):
    """label.predict from a path or from a loaded Predictor, Predictor.fusion_probs, and a bundle.json without
    ``architecture`` (as written before it existed: rebuilt from the older keys) all agree."""
    ds, model = trained
    feats = index_in_process(archive, tmp_path / "archive-ds")
    p = Predictor.load(model, "cpu")
    by_path = predict(feats, model, top_k=4, device="cpu").drop(columns="labeled_at")
    assert by_path.equals(predict(feats, p, top_k=4).drop(columns="labeled_at"))
    probs = p.fusion_probs(Inputs.of(load_features(feats), p.device))
    for i, row in by_path.iterrows():
        assert row["probs"] == [float(probs[i, p.classes.index(c)]) for c in row["labels"]]

    old = tmp_path / "old-model"
    shutil.copytree(model, old)
    meta = json.loads((old / "bundle.json").read_text())
    del meta["architecture"]  # bundle.json is not hashed: the weights still load
    (old / "bundle.json").write_text(json.dumps(meta))
    assert predict(feats, old, top_k=4, device="cpu").drop(columns="labeled_at").equals(by_path)
    assert evaluate(ds, old, device="cpu").methods == evaluate(ds, model, device="cpu").methods
