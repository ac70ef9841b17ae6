"""Labeling an unlabeled archive through the real label flow (Prefect + Dask), with zero-shot extra classes."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.datasets import MOTIONS, index_in_process, motion_corpus
from helpers.videos import make_video

from moclip.config import TrainConfig
from moclip.train.pipeline import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    corpus = motion_corpus(tmp_path_factory.mktemp("train_corpus"), per_class=8)
    ds = index_in_process(corpus, tmp_path_factory.mktemp("ds"))
    model = tmp_path_factory.mktemp("model")
    train(ds, model, TrainConfig(flip=False, mv_epochs=20, head_epochs=20, patience=30), log=lambda m: None)
    return model


def test_label_archive_flow(prefect_api, bundle, tmp_path):
    from flows.label_flow import label_archive
    from moclip.params import LabelParams

    archive = tmp_path / "archive"
    for i, (name, (dx, dy)) in enumerate(MOTIONS.items()):
        make_video(archive / "incoming" / f"clip_{name}.mp4", dx=dx, dy=dy, n_frames=20, seed=100 + i)
    (archive / "incoming" / "broken.mp4").write_bytes(b"\x00" * 500)
    out = tmp_path / "labels"
    params = LabelParams(corpus={"root": str(archive)}, model=str(bundle), out=str(out), top_k=3,
                         extra_classes=["juggling balls", "swimming"], run={"workers": 1})
    result = label_archive(params)
    assert result["n_labelled"] == 4 and result["n_failed"] == 1

    preds = pd.read_parquet(out / "predictions.parquet").set_index("video_id")
    assert len(preds) == 4
    assert all(len(v) == 3 for v in preds["labels"]) and all(list(p) == sorted(p, reverse=True) for p in preds["probs"])
    assert all(set(z) == {"juggling balls", "swimming"} for z in preds["zero_shot_labels"])
    correct = sum(preds.loc[f"incoming/clip_{name}.mp4", "top1"] == name for name in MOTIONS)
    assert correct >= 3  # the trained motion classes are recognised on new videos
    csv = pd.read_csv(out / "predictions.csv")
    assert len(csv) == 4 and csv["labels"].str.count(r"\|").eq(2).all()

    # a second run re-uses the archive's features: nothing is decoded again
    again = label_archive(params)
    assert again["n_labelled"] == 4
    from moclip.dataset import read_manifest

    assert read_manifest(str(out / "features"))["runs"][-1]["frames_decoded"] == 0


def test_bad_label_parameters_are_rejected():
    from pydantic import ValidationError

    from moclip.params import LabelParams

    with pytest.raises(ValidationError):
        LabelParams(corpus={"root": "a"}, model="m", out="o", top_k=0)
    with pytest.raises(ValidationError):
        LabelParams(corpus={"root": "a"}, model="m", out="o", top_kk=3)
