"""Day one of an archive: labels from a vocabulary by CLIP zero-shot, with no trained model (random-init CLIP here:
the arithmetic and the pipeline are tested, not CLIP's knowledge)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from moclip.params import LabelParams
from moclip.vocabulary import Vocabulary, read_vocabulary_file


def _params(**kw) -> LabelParams:
    return LabelParams(corpus={"root": "archive"}, out="labels", **kw)


def test_a_vocabulary_from_a_list_or_a_file_with_prompts(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_text("# my classes\ndiving\n\nJuggling: a person juggling balls; someone juggling clubs\n  surfing  \n")
    assert read_vocabulary_file(f) == ["diving", "Juggling: a person juggling balls; someone juggling clubs",
                                       "surfing"]
    p = _params(classes=str(f))
    assert p.vocabulary.names == ("diving", "Juggling", "surfing")
    assert p.vocabulary.own_prompts == {"Juggling": ("a person juggling balls", "someone juggling clubs")}
    assert _params(classes="diving, surfing").classes == ["diving", "surfing"]
    assert _params(classes=["diving", "surfing"]).vocabulary.digest("short") == \
        _params(classes="diving,surfing").vocabulary.digest("short")
    two = _params(classes="diving,surfing").vocabulary
    assert two.digest("short") != two.digest("plain")


@pytest.mark.parametrize(("kw", "message"), [
    ({"classes": ""}, "the vocabulary is empty"),
    ({"classes": " , ,"}, "the vocabulary is empty"),
    ({"classes": "diving,Diving"}, "'Diving' is in the vocabulary twice"),
    ({"classes": "BrushHair,brush_hair"}, "'brush_hair' is in the vocabulary twice"),
    ({"classes": "diving"}, "one class ('diving') is no choice"),
    ({"classes": ": a prompt"}, "a class without a name"),
    ({}, "give either model (a trained bundle) or classes (zero-shot class names), not neither"),
    ({"classes": "a,b", "model": "m"}, "not both"),
    ({"classes": "a,b", "extra_classes": "c"}, "with classes, add them to classes"),
    ({"model": "m", "features": {"mv": {"segments": 4}}}, "indexed with the model's feature settings"),
])
def test_bad_vocabularies_are_refused_with_a_message(kw, message):
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _params(**kw)


def test_an_unreadable_class_file_is_named(tmp_path):
    f = tmp_path / "classes.txt"
    f.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValidationError, match="classes.txt: cannot read the class list"):
        _params(classes=str(f))


def test_own_prompts_replace_the_template_set(tmp_path, monkeypatch):
    import open_clip
    import torch

    from moclip import zeroshot
    from moclip.clip import load_clip
    from moclip.config import ClipConfig

    monkeypatch.setenv("MOCLIP_CACHE", str(tmp_path))
    model = load_clip(ClipConfig(precision="fp32", weights="none")).model
    tok = open_clip.get_tokenizer("ViT-B-32")
    v = Vocabulary.parse(["diving", "juggling: a person juggling balls; juggling clubs"])
    emb = zeroshot.text_embeddings(model, tok, list(v.names), "w", "short", own_prompts=v.own_prompts)
    plain = zeroshot.text_embeddings(model, tok, list(v.names), "w", "short")
    assert np.allclose(emb[0], plain[0]) and not np.allclose(emb[1], plain[1])
    with torch.inference_mode():
        e = model.encode_text(tok(["a person juggling balls", "juggling clubs"]), normalize=True).mean(0)
    assert np.allclose(emb[1], (e / e.norm()).numpy(), atol=1e-5)


@pytest.mark.integration
@pytest.mark.slow
def test_zero_shot_labels_an_archive_with_no_model(prefect_api, tmp_path):
    """Whole videos and the windows of a long one labelled from class names alone: each label is the argmax of
    text @ frames computed here by hand, a still stretch gets no label, rows name the zero-shot model, an unchanged
    rerun predicts nothing, and a new class predicts everything again without decoding a video."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import torch
    from helpers.videos import make_untrimmed, make_video

    from flows.label_flow import label_archive
    from moclip import zeroshot
    from moclip.dataset import read_manifest
    from moclip.dataset.windows import window_features
    from moclip.inference.text import class_embeddings

    archive = tmp_path / "archive"
    make_untrimmed(archive / "long.mp4", [(3, 0, 50), (0, 0, 50), (-3, 0, 50)], width=320, height=240, seed=3)
    make_video(archive / "short_red.mp4", dx=2, dy=0, n_frames=15, seed=5)
    make_video(archive / "short_b.mp4", dx=0, dy=2, n_frames=15, seed=6)
    out = tmp_path / "labels"
    vocab = ["diving", "juggling: a person juggling balls", "surfing"]
    params = LabelParams(corpus={"root": str(archive)}, classes=vocab, out=str(out), top_k=2,
                         features={"clip": {"weights": "none", "frames": 2, "precision": "fp32"}},
                         windows={"seconds": 1.0, "stride": 0.5}, run={"workers": 1, "shard_size": 2})
    result = label_archive(params)
    assert (result["n_labelled"], result["predicted"], result["n_failed"]) == (3, 3, 0)

    features = out / "features"
    manifest = read_manifest(str(features))
    v = params.vocabulary
    text = class_embeddings(manifest, list(v.names), "short", torch.device("cpu"), str(features), v.own_prompts)
    table = pq.read_table(features)
    fs = window_features(table.filter(pc.equal(table.column("status"), "ok")))
    unit = zeroshot.normalize(zeroshot.normalize(fs.clip).mean(1))  # each window: its frames' mean direction
    by_hand = np.asarray(v.names)[np.argmax(unit @ text.T, axis=1)]
    windows = pd.read_parquet(out / "windows.parquet").sort_values(["video_id", "window_index"])
    assert windows["top1"].tolist() == by_hand.tolist()
    model_id = f"zero-shot:random-init:{v.digest('short')}"
    assert set(windows["model"]) == {model_id}
    preds = pd.read_parquet(out / "predictions")
    assert set(preds["model"]) == {model_id} and all(len(x) == 2 for x in preds["labels"])
    # stillness from the motion vectors: the long video's middle 2 s get no label, whatever CLIP says
    seg = pd.read_parquet(out / "segments.parquet")
    long = seg[seg["video_id"] == "long.mp4"].sort_values("start_s")
    still = long[(long["start_s"] < 3.5) & (long["end_s"] > 2.5)]
    assert still["label"].isna().all() and long["label"].notna().any(), long
    about = json.loads((out / "_labels.json").read_text())
    assert about["model"] == "zero-shot" and about["calibrated"] is False and about["model_id"] == model_id

    again = label_archive(params)
    assert (again["predicted"], again["kept"]) == (0, 3)
    bigger = params.model_copy(update={"classes": [*vocab, "skiing"]})
    third = label_archive(bigger)
    assert third["predicted"] == 3 and third["index"].new + third["index"].reindexed == 0  # no video decoded
    assert set(pd.read_parquet(out / "predictions")["model"]) == {f"zero-shot:random-init:"
                                                                  f"{bigger.vocabulary.digest('short')}"}


def test_the_label_summary_says_zero_shot_probabilities_are_not_calibrated():
    from moclip.label.counts import LabelCounts
    from moclip.report.label_summary import distribution_markdown

    preds = pd.DataFrame({"video_id": ["a", "b"], "top1": ["diving", "surfing"], "top1_prob": [0.6, 0.4],
                          "mv_missing": [False, False], "mv_source": ["native", "native"],
                          "mv_source_unseen": [False, False]})
    counts = LabelCounts.of(preds, predicted=2)
    md = distribution_markdown(counts, extra=False, zero_shot=True)
    assert "ZERO-SHOT" in md and "NOT calibrated" in md and "mean zero-shot probability (not calibrated)" in md
    assert "calibrated probability" in distribution_markdown(counts, extra=False) and "ZERO-SHOT" not in \
        distribution_markdown(counts, extra=False)
