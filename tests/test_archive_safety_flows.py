"""Nothing lost when the archive vanishes, a file rots or the disk fills up; every failure seen by cron (exit code)
and by Prefect (the flow run's state). The real CLI, real Prefect flows and Dask workers, real files: an empty
folder, an archive half gone, truncated Parquet, junk files, a tmpfs that fills up."""

from __future__ import annotations

import os
import shutil
import subprocess

import pandas as pd
import pytest
from helpers.cli import run_moclip
from helpers.datasets import MOTIONS
from helpers.videos import make_untrimmed, make_video

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def bundle(motion_bundle):
    return motion_bundle


def snapshot(folder) -> dict:
    """Every file under ``folder`` (but locks) with its bytes: what "nothing was written" compares."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_label_survives_an_unmounted_archive_and_rotten_files(bundle, tmp_path):
    home = tmp_path / "prefect-home"

    def moclip(*args: str) -> subprocess.CompletedProcess:
        return run_moclip(*args, home=home, timeout=600)

    archive = tmp_path / "archive"
    for i, (name, (dx, dy)) in enumerate(MOTIONS.items()):  # root-level videos and a sub-folder: unlabeled layout
        make_video(archive / ("" if i % 2 else "cam1") / f"{name}.mp4", dx=dx, dy=dy, n_frames=16, seed=10 + i)
    (archive / "broken.mp4").write_bytes(b"\0" * 300)
    (archive / "notes.txt").write_text("not a video")
    (archive / "clip-without-extension").write_bytes((archive / "left.mp4").read_bytes())
    (archive / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    out = tmp_path / "labels"
    label = ("label", str(archive), "--model", str(bundle), "--out", str(out), "--workers", "1", "--shard-size", "2",
             "--extra-classes", "juggling,swimming,Juggling")
    r = moclip(*label)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 videos labelled (4 predicted in this run, 0 unchanged; 1 failed to index)" in r.stdout
    assert "3 files skipped: " in r.stderr, r.stderr
    for reason in ("1 not a video extension (.txt) (e.g. notes.txt)", "1 no extension (e.g. clip-without-extension)",
                   "1 broken link or vanished (e.g. dangling.mp4)"):
        assert reason in r.stderr
    preds = pd.read_parquet(out / "predictions")
    assert sorted(preds["video_id"]) == ["cam1/right.mp4", "cam1/up.mp4", "down.mp4", "left.mp4"]
    assert all(list(z) in (["juggling", "swimming"], ["swimming", "juggling"]) for z in preds["zero_shot_labels"])


    before = snapshot(out)
    # 1. the NAS is not mounted: an empty mount point
    empty = tmp_path / "mnt"
    empty.mkdir()
    r = moclip("label", str(empty), "--model", str(bundle), "--out", str(out), "--workers", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"CorpusError: corpus root '{empty}' lists no video file: is the archive mounted" in r.stderr, r.stderr
    assert snapshot(out) == before  # nothing deleted, nothing predicted, the CSV whole
    # ... or mounted with most of it missing: refused before anything is written, naming the count and the flag
    away = tmp_path / "away"
    shutil.move(archive / "cam1", away)
    os.rename(archive / "down.mp4", tmp_path / "down.mp4")
    r = moclip(*label)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "would mark 3 of the dataset's 4 indexed videos deleted (75%)" in r.stderr, r.stderr
    assert "--max-delete 0.75 or --allow-mass-delete" in r.stderr
    assert snapshot(out) == before
    # confirmed with the flag the message names (by the nightly index of the label job's features, with index's
    # defaults: the recorded layout and feature settings are used, and said)
    ref = pd.read_parquet(out / "features").set_index("video_id")
    r = moclip("index", str(archive), "--out", str(out / "features"), "--allow-mass-delete")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 videos: 0 indexed, 0 failed, 2 unchanged, 3 deleted" in r.stdout, r.stdout
    assert "corpus layout unlabeled as the dataset recorded it" in r.stderr
    assert "feature settings as the dataset recorded them" in r.stderr  # the bundle's --frames 2, random CLIP
    # the NAS is back: the tombstones are restored, nothing decoded
    shutil.move(away, archive / "cam1")
    os.rename(tmp_path / "down.mp4", archive / "down.mp4")
    r = moclip("index", str(archive), "--out", str(out / "features"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "5 videos: 0 indexed, 0 failed, 2 unchanged, 0 deleted, 3 restored" in r.stdout, r.stdout
    got = pd.read_parquet(out / "features").set_index("video_id")
    assert got["status"].eq(ref["status"]).all() and all(
        (a == b).all() for a, b in zip(got.loc[ref.index[ref.status == "ok"], "mv"], ref.loc[ref.status == "ok", "mv"]))

    # 2-5. a feature shard and a prediction file truncated, junk in predictions/, the CSV edited by hand
    features = sorted((out / "features").glob("part-*.parquet"))
    rotten = features[0]
    rotten.write_bytes(rotten.read_bytes()[:200])
    rotten_pred = next(p for p in sorted((out / "predictions").glob("part-*.parquet"))
                       if not p.name.startswith(rotten.stem))
    rotten_pred.write_bytes(rotten_pred.read_bytes()[:100])
    shutil.copy(features[-1], out / "predictions" / "part-my-copy.parquet")  # a user's copy of a feature shard
    (out / "predictions" / "part-x (copy).parquet").write_bytes(b"junk")
    with open(out / "predictions.csv", "a") as f:
        f.write("edited,by,hand\n")
    r = moclip(*label)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"{rotten}: unreadable (ArrowInvalid: Parquet magic bytes not found" in r.stderr, r.stderr
    assert f"{rotten_pred}: unreadable (ArrowInvalid" in r.stderr and "moved aside to" in r.stderr
    assert "1 failed to index" in r.stdout  # the broken file's failed row stands, and is counted
    assert len(list((out / "features" / "_quarantine").glob("*"))) == 1  # moved aside, never deleted
    assert len(list((out / "predictions" / "_quarantine").glob("*"))) == 1
    # the data afterwards: every video one row, every ok row one prediction, the CSV exactly the predictions
    meta = pd.read_parquet(out / "features")
    assert meta["video_id"].is_unique and sorted(meta["video_id"]) == ["broken.mp4", *sorted(preds["video_id"])]
    owned = [p for p in (out / "predictions").glob("part-*.parquet") if p.name.count(".") == 3]
    got = pd.concat([pd.read_parquet(p) for p in owned])
    assert got["video_id"].is_unique and sorted(got["video_id"]) == sorted(meta.loc[meta.status == "ok", "video_id"])
    csv = pd.read_csv(out / "predictions.csv")
    assert sorted(csv["video_id"]) == sorted(got["video_id"])  # neither the user's copy nor the hand edit
    assert (out / "predictions" / "part-x (copy).parquet").read_bytes() == b"junk"  # left alone
    assert (out / "predictions" / "part-my-copy.parquet").exists()


def test_a_full_disk_while_labelling_windows_fails_the_run_and_the_rerun_repairs_it(prefect_api, bundle, tmp_path,
                                                                                      small_fs):
    from flows.index_flow import outcome
    from flows.jobs import JobFailed, run_label
    from flows.label_flow import label_archive
    from moclip.params import LabelParams

    archive = tmp_path / "archive"
    for i, parts in enumerate([[(2, 0, 40), (-2, 0, 40)], [(0, 2, 40), (0, 0, 40)], [(-2, 0, 60)],
                               [(0, -2, 30), (2, 0, 30)]]):
        make_untrimmed(archive / f"long{i}.mp4", parts, seed=20 + i)
    out = small_fs / "labels"
    params = LabelParams(corpus={"root": str(archive)}, model=str(bundle), out=str(out),
                         features_out=str(tmp_path / "features"), windows={"seconds": 1.0, "stride": 0.5},
                         run={"workers": 1, "shard_size": 1})
    filler = small_fs / "filler.bin"
    st = os.statvfs(small_fs)
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 7 * 4096))  # room for a few small files only

    state = label_archive(params, return_state=True)
    assert state.is_failed(), state  # what a Prefect automation matches
    assert "No space left on device" in str(outcome_or_error(state, outcome)), state.message
    with pytest.raises((JobFailed, OSError), match="No space left on device|not labelled"):
        run_label(params)  # the CLI's job: `moclip label` exits 1 (flows.cli.main)
    assert_consistent(out)

    make_untrimmed(archive / "long2.mp4", [(2, 0, 30), (0, 0, 30)], seed=99)  # a change in one of the shards
    filler.unlink()
    state = label_archive(params, return_state=True)
    assert state.is_completed(), state.message
    result = outcome(state)
    assert result["failed"] == [] and result["n_labelled"] == 4
    assert_consistent(out)
    windows, segments = pd.read_parquet(out / "windows.parquet"), pd.read_parquet(out / "segments.parquet")
    assert not windows.duplicated(["video_id", "window_index"]).any()
    assert not segments.duplicated(["video_id", "segment_index"]).any()
    assert set(windows["video_id"]) == set(segments["video_id"]) == {f"long{i}.mp4" for i in range(4)}
    csv = pd.read_csv(out / "predictions.csv")
    assert sorted(csv["video_id"]) == sorted(pd.read_parquet(out / "predictions")["video_id"])


def outcome_or_error(state, outcome) -> object:
    """The failed run's summary (its message lists what was not done) or the error that stopped it."""
    try:
        result = outcome(state)
    except OSError as e:
        return e
    return f"{state.message} {result['failed']}"


def assert_consistent(out) -> None:
    """Windows and segments files exist exactly for the prediction files there are: none without the other."""
    names = {d: {p.name for p in (out / d).glob("part-*.parquet")} for d in
             ("predictions", "windows.parquet", "segments.parquet")}
    assert names["windows.parquet"] <= names["predictions"] and names["segments.parquet"] <= names["predictions"]
    assert not list(out.rglob(".tmp-*"))
