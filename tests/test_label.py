"""Labelling an unlabeled archive through the real label flow (Prefect + Dask): sharded, incremental predictions,
zero-shot extra classes, and what a rerun does when videos are added, changed or deleted, or the model changes."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from helpers.datasets import MOTIONS
from helpers.training import QUICK
from helpers.videos import make_video

from moclip.config import TimelineConfig, WindowConfig
from moclip.train.pipeline import train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def corpus_ds(motion_dataset):
    return motion_dataset


@pytest.fixture
def bundle(motion_bundle):
    return motion_bundle


def _files(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_label_archive_flow(prefect_api, bundle, corpus_ds, tmp_path):
    from flows.label_flow import label_archive
    from moclip.dataset import read_manifest
    from moclip.params import LabelParams

    archive = tmp_path / "archive"
    for i, (name, (dx, dy)) in enumerate(MOTIONS.items()):
        make_video(archive / "incoming" / f"clip_{name}.mp4", dx=dx, dy=dy, n_frames=20, seed=100 + i)
    (archive / "incoming" / "broken.mp4").write_bytes(b"\x00" * 500)
    out = tmp_path / "labels"
    params = LabelParams(corpus={"root": str(archive)}, model=str(bundle), out=str(out), top_k=3,
                         extra_classes=["juggling balls", "swimming"], run={"workers": 2, "shard_size": 2})
    result = label_archive(params)
    assert result["n_labelled"] == 4 and result["n_failed"] == 1 and result["predicted"] == 4

    # one prediction file per feature shard, read as one table by any Parquet reader
    shards = sorted(p.name.removesuffix(".parquet") for p in (out / "features").glob("part-*.parquet"))
    files = _files(out / "predictions")
    assert sorted(n.split(".")[0] for n in files) == shards and len(shards) >= 2
    preds = pd.read_parquet(out / "predictions").set_index("video_id")
    assert len(preds) == 4
    assert all(len(v) == 3 for v in preds["labels"]) and all(list(p) == sorted(p, reverse=True) for p in preds["probs"])
    assert all(set(z) == {"juggling balls", "swimming"} for z in preds["zero_shot_labels"])
    correct = sum(preds.loc[f"incoming/clip_{name}.mp4", "top1"] == name for name in MOTIONS)
    assert correct >= 3  # the trained motion classes are recognised on new videos
    csv = pd.read_csv(out / "predictions.csv")
    assert len(csv) == 4 and csv["labels"].str.count(r"\|").eq(2).all()

    # a rerun on the unchanged archive decodes nothing and predicts nothing: the prediction files stay as they were
    again = label_archive(params)
    assert (again["n_labelled"], again["predicted"], again["kept"]) == (4, 0, 4)
    assert read_manifest(str(out / "features"))["runs"][-1]["frames_decoded"] == 0
    assert _files(out / "predictions") == files

    # two new videos, one changed, one deleted: only the three new and changed ones are predicted
    make_video(archive / "incoming" / "new_a.mp4", dx=3, dy=0, n_frames=20, seed=7)
    make_video(archive / "incoming" / "new_b.mp4", dx=0, dy=3, n_frames=20, seed=8)
    changed = archive / "incoming" / "clip_left.mp4"
    make_video(changed, dx=-3, dy=0, n_frames=24, seed=9)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    (archive / "incoming" / "clip_up.mp4").unlink()
    before = pd.read_parquet(out / "predictions").set_index("video_id")
    third = label_archive(params)
    assert (third["n_labelled"], third["predicted"], third["kept"]) == (5, 3, 2)
    preds = pd.read_parquet(out / "predictions").set_index("video_id")
    assert sorted(preds.index) == sorted(["incoming/clip_down.mp4", "incoming/clip_right.mp4",
                                          "incoming/clip_left.mp4", "incoming/new_a.mp4", "incoming/new_b.mp4"])
    for vid in ("incoming/clip_down.mp4", "incoming/clip_right.mp4"):  # kept as predicted before
        assert preds.loc[vid, "labeled_at"] == before.loc[vid, "labeled_at"]
    assert preds.loc["incoming/clip_left.mp4", "labeled_at"] > before.loc["incoming/clip_left.mp4", "labeled_at"]
    assert len(pd.read_csv(out / "predictions.csv")) == 5
    assert not preds.index.duplicated().any()

    # another model: every video is predicted again, and every row names the new model
    other = tmp_path / "other-model"
    train(corpus_ds, other, QUICK.model_copy(update={"seed": 1}), log=lambda m: None)
    fourth = label_archive(params.model_copy(update={"model": str(other)}))
    assert (fourth["n_labelled"], fourth["predicted"], fourth["kept"]) == (5, 5, 0)
    preds = pd.read_parquet(out / "predictions")
    assert len(preds) == 5 and preds["model"].nunique() == 1 and preds["model"][0] != before["model"].iloc[0]
    assert len(list((out / "predictions").glob("*.parquet"))) == len(list((out / "features").glob("part-*.parquet")))


HOLD = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.mark.parametrize("lock", ["features", "out"])
def test_a_label_run_waits_for_the_run_that_holds_its_dataset_or_output(prefect_api, bundle, corpus_ds, tmp_path,
                                                                        monkeypatch, capfd, lock):
    """A re-index holding the features (or another label run holding the output folder): prediction waits for it,
    then labels every video once; nothing is predicted from a half-committed dataset."""
    import subprocess
    import sys
    import time

    from flows.label_flow import predict_archive
    from moclip.dataset.lock import LABEL_LOCK, LOCK_NAME
    from moclip.params import LabelParams

    out = tmp_path / "labels"
    out.mkdir()
    path = f"{corpus_ds}/{LOCK_NAME}" if lock == "features" else str(out / LABEL_LOCK)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path, "4"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    monkeypatch.setenv("MOCLIP_CONSOLE", "1")
    t0 = time.monotonic()
    params = LabelParams(corpus={"root": str(tmp_path)}, model=str(bundle), out=str(out), run={"workers": 1})
    result = predict_archive(corpus_ds, params)
    holder.wait()
    assert time.monotonic() - t0 >= 3
    what = "dataset" if lock == "features" else "label output folder"
    assert f"another moclip run is using this {what}; waiting for it to finish" in capfd.readouterr().err
    assert result["n_labelled"] == 32 and result["predicted"] == 32
    assert len(pd.read_parquet(out / "predictions")) == 32


def test_bad_label_parameters_are_rejected():
    from pydantic import ValidationError

    from moclip.params import LabelParams

    with pytest.raises(ValidationError):
        LabelParams(corpus={"root": "a"}, model="m", out="o", top_k=0)
    with pytest.raises(ValidationError):
        LabelParams(corpus={"root": "a"}, model="m", out="o", top_kk=3)


def test_label_windows_of_long_videos_into_a_timeline(prefect_api, bundle, tmp_path):
    """A model trained on short clips labels the windows of long untrimmed videos (right, still, left): windows,
    segments with boundaries within a stride, a timeline page; an unchanged rerun predicts nothing, and changing
    how segments are made predicts again."""
    from helpers.videos import make_untrimmed

    from flows.label_flow import label_archive
    from moclip.params import LabelParams

    archive = tmp_path / "archive"
    make_untrimmed(archive / "long_a.mp4", [(3, 0, 50), (0, 0, 50), (-3, 0, 50)], width=320, height=240, seed=3)
    make_untrimmed(archive / "long_b.mp4", [(0, 3, 75), (0, -3, 75)], width=320, height=240, seed=4, bframes=2)
    make_video(archive / "short.mp4", dx=-3, dy=0, n_frames=15, seed=5)  # shorter than a window: one window
    out = tmp_path / "labels"
    params = LabelParams(corpus={"root": str(archive)}, model=str(bundle), out=str(out), top_k=2,
                         windows={"seconds": 1.0, "stride": 0.5},
                         run={"workers": 2, "shard_size": 2})
    result = label_archive(params)
    assert (result["n_labelled"], result["predicted"], result["n_failed"]) == (3, 3, 0)

    windows = pd.read_parquet(out / "windows.parquet")
    a = windows[windows["video_id"] == "long_a.mp4"].sort_values("window_index")
    assert len(a) == 11 and a["start_s"].tolist()[:3] == [0.0, 0.5, 1.0] and a["end_s"].max() == pytest.approx(6.0)
    assert a["top1"].iloc[0] == "right" and a["top1"].iloc[-1] == "left"
    assert (windows.groupby("video_id").size().to_dict()) == {"long_a.mp4": 11, "long_b.mp4": 11, "short.mp4": 1}

    segments = pd.read_parquet(out / "segments.parquet")
    for vid in ("long_a.mp4", "long_b.mp4"):
        mine = segments[segments["video_id"] == vid].sort_values("segment_index")
        assert mine["start_s"].iloc[0] == 0 and mine["end_s"].iloc[-1] == pytest.approx(6.0)
        assert (mine["start_s"].iloc[1:].to_numpy() == mine["end_s"].iloc[:-1].to_numpy()).all()  # they tile
    # long_a: right for 2 s, still for 2 s (no motion: no label, whatever the model says), left for 2 s
    a = segments[segments["video_id"] == "long_a.mp4"].sort_values("segment_index")
    assert a["label"].fillna("-").tolist() == ["right", "-", "left"], a
    assert abs(a["end_s"].iloc[0] - 2.0) <= 0.5 and abs(a["end_s"].iloc[1] - 4.0) <= 0.5  # within one stride
    # long_b: down for 3 s, then up: two segments, the boundary within one stride (0.5 s) of the truth
    b = segments[segments["video_id"] == "long_b.mp4"]
    assert b["label"].tolist() == ["down", "up"] and abs(b["end_s"].iloc[0] - 3.0) <= 0.5, b
    per_video = pd.read_parquet(out / "predictions").set_index("video_id")
    assert per_video.loc["short.mp4", "top1"] == "left" and len(per_video) == 3
    page = (out / "timelines.html").read_text()
    assert "long_a.mp4" in page and len(list((out / "timelines").glob("*.png"))) == 3

    # unchanged: nothing predicted again, files untouched
    files = {p: p.stat().st_mtime_ns for d in ("predictions", "windows.parquet", "segments.parquet")
             for p in (out / d).glob("*.parquet")}
    again = label_archive(params)
    assert (again["predicted"], again["kept"]) == (0, 3)
    assert {p: p.stat().st_mtime_ns for p in files} == files
    # another segment threshold: segments (and the rest) are made again, nothing is left from the first run
    third = label_archive(params.model_copy(update={"timeline": TimelineConfig(min_score=0.99)}))
    assert third["predicted"] == 3
    segments = pd.read_parquet(out / "segments.parquet")
    assert segments["label"].isna().any()  # stretches below 0.99 have no confident label
    for d in ("predictions", "windows.parquet", "segments.parquet"):
        assert len(list((out / d).glob("*.parquet"))) == len(list((out / "features").glob("part-*.parquet")))
    # the same output without windows: whole videos again, and nothing of the windowed runs is left to mislead
    whole = label_archive(params.model_copy(update={"windows": WindowConfig()}))
    assert whole["predicted"] == 3 and whole["windows"] is None
    assert not list((out / "windows.parquet").glob("*.parquet")) and not list((out / "segments.parquet").glob("*"))
    assert not (out / "timelines.html").exists() and len(pd.read_parquet(out / "predictions")) == 3
