"""Nothing lost when the archive vanishes or a file rots (library level, real videos and Parquet, no Prefect):
an empty root is an error, a mass deletion is refused before anything is written, deleted rows are tombstones that
come back without decoding, unreadable shards and prediction files are moved aside and redone, windows/segments
live and die with their prediction file, the CSV reads only the files the plan owns, settings the caller did not
give come from the dataset, skipped files are counted. The same through the CLI and the flows:
tests/test_archive_safety_flows.py."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers.videos import make_video

from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.corpus import CorpusError, load_folder, load_unlabeled
from moclip.corpus.table import list_videos, require_videos, skipped_line
from moclip.dataset import (
    Store,
    load_features,
    plan_index,
    read_metadata,
    rewrite_old_shards,
)
from moclip.dataset.incremental import MassDeleteRefused, check_deletions, quarantine_unreadable
from moclip.dataset.storage import QUARANTINE_DIR, UnreadableFile, unreadable
from moclip.indexing.shard import ShardTarget, index_shard
from moclip.label.export import csv_stamp, export_csv
from moclip.label.plan import file_identity, plan_labels, prediction_name
from moclip.label.worker import remove_orphan_siblings
from moclip.params import IndexParams, LabelParams

SETTINGS = FeatureSettings(clip=ClipConfig(weights="none", frames=2, precision="fp32"))
HASH = SETTINGS.settings_hash("random-init")
KEY = "abcdef0123"  # a label key (10 hex digits)


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "corpus"
    for i, (cls, dx) in enumerate([("a", 2), ("a", 3), ("b", -2), ("b", -3)]):
        make_video(root / cls / f"v{i}.mp4", n_frames=12, dx=dx, seed=i)
    return root


def index(corpus, out, name, table=None, **plan_kw):
    """One run as the index flow does it: plan, move unreadable shards aside, index what the plan says into shard
    ``name``, commit. ``table``: the corpus table (default: the folder's). Returns the plan."""
    plan = plan_index(load_folder(corpus) if table is None else table, Store(str(out)), HASH, **plan_kw)
    quarantine_unreadable(Store(str(out)), plan)
    if plan.to_index:
        index_shard(plan.to_index, name, ShardTarget(features=SETTINGS, run=RunConfig(), out=str(out),
                                                     settings_hash=HASH))
    rewrite_old_shards(Store(str(out)), plan)
    return plan


def truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


# --- 1. an empty or unmounted archive ----------------------------------------------------------------------------


def test_a_root_that_lists_no_video_is_an_error_naming_what_it_saw(tmp_path):
    root = tmp_path / "mnt"
    root.mkdir()
    (root / "README.txt").write_text("mount point")
    with pytest.raises(CorpusError, match=r"lists no video file \(1 file skipped: 1 not a video extension"
                                          r" \(\.txt\).*is the archive mounted"):
        require_videos(load_unlabeled(root), str(root))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="lists no video file: is the archive mounted"):
        require_videos(load_folder(tmp_path / "empty"), "empty")


def test_a_mass_deletion_is_refused_with_the_count_and_the_flag(corpus, tmp_path):
    out = tmp_path / "ds"
    index(corpus, out, "part-1.parquet")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for i in (0, 1, 2):
        os.rename(corpus / ("a" if i < 2 else "b") / f"v{i}.mp4", tmp_path / f"v{i}.mp4")
    plan = plan_index(load_folder(corpus), Store(str(out)), HASH)
    assert (len(plan.deleted), plan.live_before) == (3, 4)
    with pytest.raises(MassDeleteRefused, match=r"would mark 3 of the dataset's 4 indexed videos deleted \(75%\) "
                                                r"because CORPUS no longer lists them.*Nothing was written.*"
                                                r"--max-delete 0\.75 or --allow-mass-delete"):
        check_deletions(plan, str(out), "CORPUS", max_delete=0.5, allow=False)
    check_deletions(plan, str(out), "CORPUS", max_delete=0.75, allow=False)  # confirmed by the fraction
    check_deletions(plan, str(out), "CORPUS", max_delete=0.5, allow=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # planning wrote nothing

    os.rename(corpus / "b" / "v3.mp4", tmp_path / "v3.mp4")
    make_video(corpus / "c" / "other.mp4", n_frames=12)  # the root lists a video, but none of the dataset's
    plan = plan_index(load_folder(corpus), Store(str(out)), HASH)
    with pytest.raises(MassDeleteRefused, match=r"4 of the dataset's 4 indexed videos deleted \(all\).*rerun "
                                                r"with --allow-mass-delete$"):
        check_deletions(plan, str(out), "CORPUS", max_delete=1.0, allow=False)  # "all" always needs the flag
    check_deletions(plan, str(out), "CORPUS", max_delete=0.5, allow=True)
    # a few deletions in a large dataset need no confirmation
    plan.deleted_ok, plan.live_before = 1, 4
    check_deletions(plan, str(out), "CORPUS", max_delete=0.5, allow=False)


def test_listed_videos_whose_files_are_missing_are_tombstones_not_failures(corpus, tmp_path):
    """A manifest corpus on an unmounted NAS: the CSV still lists every video, no file is there. Their rows must not
    become failed rows without features: they are tombstones, counted by the mass-delete check, restored later."""
    out = tmp_path / "ds"
    table = load_folder(corpus)  # what a manifest would list, whether the files are there or not
    index(corpus, out, "part-1.parquet", table=table)
    ref = load_features(str(out))
    os.rename(corpus, tmp_path / "unmounted")
    plan = plan_index(table, Store(str(out)), HASH)
    assert sorted(plan.missing) == sorted(plan.deleted) == sorted(table["video_id"]) and not plan.to_index
    with pytest.raises(MassDeleteRefused, match="4 of the dataset's 4 indexed videos deleted \\(all\\)"):
        check_deletions(plan, str(out), "manifest.csv", max_delete=0.5, allow=False)
    index(corpus, out, "part-2.parquet", table=table)  # confirmed (--allow-mass-delete)
    meta = read_metadata(str(out))
    assert meta["status"].eq("deleted").all() and meta["error"].str.startswith("file missing").all()
    again = plan_index(table, Store(str(out)), HASH)  # still missing: the tombstones stand, nothing to do
    assert again.unchanged == 4 and not again.to_index and not again.deleted
    os.rename(tmp_path / "unmounted", corpus)
    back = index(corpus, out, "part-3.parquet", table=table)
    assert sorted(back.restored) == sorted(table["video_id"]) and not back.to_index
    got = load_features(str(out))
    assert np.array_equal(got.mv, ref.mv) and list(got.meta["label"]) == list(ref.meta["label"])


# --- tombstones: deleted rows keep their features, and come back without decoding --------------------------------


def test_deleted_videos_that_come_back_unchanged_are_restored_without_decoding(corpus, tmp_path):
    out = tmp_path / "ds"
    index(corpus, out, "part-1.parquet")
    ref = load_features(str(out))
    os.rename(corpus / "a", tmp_path / "a-away")  # a folder unmounted / moved away
    gone = index(corpus, out, "part-2.parquet")
    assert sorted(gone.deleted) == ["a/v0.mp4", "a/v1.mp4"] and not gone.to_index
    meta = read_metadata(str(out)).set_index("video_id")
    assert list(meta.loc[["a/v0.mp4", "a/v1.mp4"], "status"]) == ["deleted"] * 2
    assert len(load_features(str(out)).meta) == 2  # tombstones are not features anyone reads

    os.rename(tmp_path / "a-away", corpus / "a")  # back, unchanged (same size and mtime)
    os.utime(corpus / "a" / "v1.mp4")  # touched (new mtime), same bytes: the fingerprint says so
    back = index(corpus, out, "part-3.parquet")
    assert sorted(back.restored) == ["a/v0.mp4", "a/v1.mp4"] and not back.to_index and not back.deleted
    assert not (out / "part-3.parquet").exists()  # nothing decoded, no new shard
    got = load_features(str(out))
    assert list(got.meta["video_id"]) == list(ref.meta["video_id"])
    assert np.array_equal(got.mv, ref.mv) and np.array_equal(got.clip, ref.clip)
    meta = read_metadata(str(out)).set_index("video_id")
    assert meta["status"].eq("ok").all() and meta.index.is_unique
    assert meta.loc["a/v1.mp4", "mtime_ns"] == os.stat(corpus / "a" / "v1.mp4").st_mtime_ns

    # a video that comes back changed is decoded again, as any changed video
    os.rename(corpus / "b" / "v2.mp4", tmp_path / "v2.mp4")
    index(corpus, out, "part-4.parquet")
    make_video(corpus / "b" / "v2.mp4", n_frames=14, dx=5, seed=9)
    changed = index(corpus, out, "part-5.parquet")
    assert [v["video_id"] for v in changed.to_index] == ["b/v2.mp4"] and not changed.restored
    assert read_metadata(str(out))["video_id"].is_unique


def test_old_tombstones_lose_their_features_but_keep_their_bookkeeping(corpus, tmp_path):
    out = tmp_path / "ds"
    index(corpus, out, "part-1.parquet")
    os.rename(corpus / "b" / "v3.mp4", tmp_path / "v3.mp4")
    index(corpus, out, "part-2.parquet")  # marked deleted now
    kept = index(corpus, out, "part-3.parquet")  # 30 days (the default) have not passed
    assert not kept.expire
    expired = index(corpus, out, "part-4.parquet", keep_deleted_days=0)
    assert expired.expire == {"part-1.parquet": {"b/v3.mp4"}}
    table = pd.read_parquet(out / "part-1.parquet").set_index("video_id")
    row = table.loc["b/v3.mp4"]
    assert row["status"] == "deleted" and row["mv"] is None and row["clip"] is None
    assert row["fingerprint"].startswith("b2:") and row["settings_hash"] == HASH
    assert table.loc["b/v2.mp4", "mv"] is not None  # live rows untouched
    os.rename(tmp_path / "v3.mp4", corpus / "b" / "v3.mp4")  # back after expiry: decoded again
    again = index(corpus, out, "part-5.parquet")
    assert [v["video_id"] for v in again.to_index] == ["b/v3.mp4"] and not again.restored
    assert read_metadata(str(out))["video_id"].is_unique
    # an old tombstone whose video comes back changed in the run that expires it: one row, the new one
    os.rename(corpus / "b" / "v2.mp4", tmp_path / "v2.mp4")
    index(corpus, out, "part-6.parquet")
    make_video(corpus / "b" / "v2.mp4", n_frames=14, dx=5, seed=9)
    both = index(corpus, out, "part-7.parquet", keep_deleted_days=0)
    assert [v["video_id"] for v in both.to_index] == ["b/v2.mp4"] and "b/v2.mp4" in both.expire.get(
        "part-1.parquet", set())
    meta = read_metadata(str(out)).set_index("video_id")
    assert meta.index.is_unique and meta.loc["b/v2.mp4", "status"] == "ok"


# --- 2. an unreadable feature shard ------------------------------------------------------------------------------


def test_an_unreadable_shard_is_moved_aside_and_its_videos_indexed_again(corpus, tmp_path):
    out = tmp_path / "ds"
    index(corpus, out, "part-1.parquet")
    make_video(corpus / "c" / "late.mp4", n_frames=12, seed=7)
    index(corpus, out, "part-2.parquet")
    truncate(out / "part-1.parquet")
    with pytest.raises(UnreadableFile, match=f"{out / 'part-1.parquet'}: unreadable \\(ArrowInvalid: Parquet magic"):
        read_metadata(str(out))  # every reader names the file

    planned = plan_index(load_folder(corpus), Store(str(out)), HASH)
    assert (out / "part-1.parquet").exists()  # planning moves nothing: a refused run leaves the file where it was
    plan = index(corpus, out, "part-3.parquet")
    [q] = plan.quarantined
    assert planned.quarantined[0]["file"] == q["file"]
    assert q["file"] == str(out / "part-1.parquet") and "Parquet magic bytes not found" in q["reason"]
    moved = out / QUARANTINE_DIR / os.path.basename(q["moved_to"])
    assert moved.exists() and moved.name.endswith("-part-1.parquet")  # kept, never deleted
    assert sorted(v["video_id"] for v in plan.to_index) == ["a/v0.mp4", "a/v1.mp4", "b/v2.mp4", "b/v3.mp4"]
    assert not plan.reindexed and not plan.deleted  # its videos are simply indexed again
    meta = pd.read_parquet(out)  # any Parquet reader skips the _quarantine folder
    assert sorted(meta["video_id"]) == ["a/v0.mp4", "a/v1.mp4", "b/v2.mp4", "b/v3.mp4", "c/late.mp4"]
    assert meta["status"].eq("ok").all()


# --- 3-5. prediction files, their windows and segments, the CSV ----------------------------------------------------


def test_windows_and_segments_live_and_die_with_their_prediction_file(tmp_path):
    features, preds = Store(str(tmp_path / "features")), Store(str(tmp_path / "predictions"))
    windows, segments = Store(str(tmp_path / "windows.parquet")), Store(str(tmp_path / "segments.parquet"))
    one = pa.table({"video_id": ["v"]})
    for name in ("part-a.parquet", "part-b.parquet"):
        features.write_table(name, one)
    infos = features.shard_infos()
    targets = {n: prediction_name(n, file_identity(infos[n]), KEY) for n in infos}
    for store in (preds, windows, segments):
        store.write_table(targets["part-a.parquet"], one)
    for store in (windows, segments):  # a run that failed between windows/segments and the prediction file
        store.write_table(targets["part-b.parquet"], one)
    windows.write_table("part-old.0123456789.0123456789.parquet", one)  # an earlier shard's, its prediction gone
    plan = plan_labels(infos, preds.shard_infos(), KEY, [windows.shard_infos(), segments.shard_infos()])
    assert [(w.feature_shard, w.current) for w in plan.shards] == [("part-a.parquet", True), ("part-b.parquet", False)]
    segments.remove(targets["part-a.parquet"])  # a person removed it: the prediction is not current any more
    plan = plan_labels(infos, preds.shard_infos(), KEY, [windows.shard_infos(), segments.shard_infos()])
    assert [w.current for w in plan.shards] == [False, False]
    assert plan_labels(infos, preds.shard_infos(), KEY)  # without windows only the prediction file counts

    assert remove_orphan_siblings(preds, [windows, segments]) == 3
    assert sorted(windows.shard_infos()) == [targets["part-a.parquet"]] and not segments.shard_infos()


def test_the_csv_reads_only_the_files_the_plan_owns_and_knows_when_it_is_stale(tmp_path):
    preds, out = Store(str(tmp_path / "predictions")), Store(str(tmp_path))
    preds.write_table("part-a.0123456789.0123456789.parquet",
                      pa.table({"video_id": ["a.mp4"], "labels": [["x", "y"]], "probs": [[0.75, 0.25]]}))
    preds.write_table("part-features-copy.parquet", pa.table({"video_id": ["copy"], "mv": [[1.0]]}))  # a user's
    (tmp_path / "predictions" / "part-x (copy).parquet").write_bytes(b"junk")
    owned = ["part-a.0123456789.0123456789.parquet"]
    assert export_csv(preds, out, owned) == (str(tmp_path / "predictions.csv"), [])
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines == ["video_id,labels,probs", "a.mp4,x|y,0.7500|0.2500"]
    stamp = csv_stamp(out, owned)
    assert stamp == csv_stamp(out, owned) and stamp != csv_stamp(out, [*owned, "part-b.1.2.parquet"])
    time.sleep(0.01)
    with open(tmp_path / "predictions.csv", "a") as f:
        f.write("edited by hand\n")
    assert csv_stamp(out, owned) != stamp  # so the next run writes it again
    assert csv_stamp(Store(str(tmp_path / "nothing")), owned) is None


# --- 8. settings the caller did not give come from the dataset ------------------------------------------------------


def test_what_the_caller_left_unset_is_what_the_dataset_recorded():
    manifest = {"corpus": {"root": "/old", "layout": "unlabeled"},
                "settings": FeatureSettings(clip=ClipConfig(weights="none", frames=2, precision="fp32"),
                                            mv={"segments": 4}).to_dict()}
    p = IndexParams.model_validate({"corpus": {"root": "/archive"}, "out": "ds"})
    got, notes = p.with_recorded(manifest)
    assert (got.corpus.root, got.corpus.layout) == ("/archive", "unlabeled")
    assert (got.features.mv.segments, got.features.clip.weights, got.features.clip.frames) == (4, "none", 2)
    assert got.settings().settings_hash("random-init") == FeatureSettings.model_validate(
        manifest["settings"]).settings_hash("random-init")  # a nightly run re-indexes nothing
    assert notes[0].startswith("corpus layout unlabeled as the dataset recorded it")
    assert "mv.segments 8 -> 4" in notes[1] and "clip.weights openai -> none" in notes[1]
    # what is given wins, field by field
    p = IndexParams.model_validate({"corpus": {"root": "/a", "layout": "folder"}, "out": "ds",
                                    "features": {"mv": {"segments": 6}}})
    got, notes = p.with_recorded(manifest)
    assert (got.corpus.layout, got.features.mv.segments, got.features.mv.grid) == ("folder", 6, (15, 20))
    assert got.features.clip.frames == 2 and not any("layout" in n for n in notes)
    assert p.with_recorded(None) == (p, [])  # a new dataset keeps the defaults
    # a label job's archive: unlabeled by default, or what its features dataset recorded
    label = LabelParams.model_validate({"corpus": {"root": "/a"}, "model": "m", "out": "o"})
    ip = label.index_params(SETTINGS)
    assert ip.corpus.layout == "unlabeled" and "layout" not in ip.corpus.model_fields_set
    assert ip.with_recorded({"corpus": {"layout": "folder"}})[0].corpus.layout == "folder"
    # a label job's feature settings are the model's and its own --window: none comes from the manifest
    windowed = {"settings": {**SETTINGS.to_dict(), "window": {"seconds": 1.0, "stride": 0.5, "frames": 2}}}
    assert not ip.with_recorded(windowed)[0].features.window.enabled and not ip.with_recorded(windowed)[1]
    given = LabelParams.model_validate({"corpus": {"root": "/a", "layout": "unlabeled"}, "model": "m", "out": "o"})
    assert given.index_params(SETTINGS).with_recorded({"corpus": {"layout": "folder"}})[0].corpus.layout == "unlabeled"


# --- 9. skipped files are counted; class names are not repeated ------------------------------------------------


def test_files_that_are_not_listed_are_counted_by_reason(tmp_path):
    root = tmp_path / "archive"
    make_video(root / "ok.mp4", n_frames=4)
    (root / "renamed.txt").write_bytes((root / "ok.mp4").read_bytes())
    (root / "noext").write_bytes(b"x")
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / "gone.mp4").symlink_to(root / "nowhere.mp4")
    (root / "sub").mkdir()
    os.mkfifo(root / "sub" / "pipe.mkv")
    skipped: dict = {}
    assert list(list_videos(root, skipped)) == ["ok.mp4"]
    assert {k: v["count"] for k, v in skipped.items()} == {
        "not a video extension (.txt)": 1, "no extension": 1, "hidden": 1, "broken link or vanished": 1,
        "not a regular file": 1}
    assert skipped["not a regular file"]["examples"] == ["sub/pipe.mkv"]
    assert skipped_line(skipped).startswith("5 files skipped: ")
    assert load_unlabeled(root).attrs["skipped_files"] == skipped
    folder = load_folder(root)  # a class-folder corpus also says why root-level videos are not in it
    assert folder.attrs["skipped_files"]["directly in the corpus root (no class folder; --layout unlabeled lists "
                                         "it)"]["count"] == 1


def test_extra_class_names_are_deduplicated():
    p = LabelParams(corpus={"root": "/a"}, model="m", out="o", extra_classes="diving, juggling,Diving,, juggling ")
    assert p.extra_classes == ["diving", "juggling"]


def test_only_bad_bytes_count_as_unreadable_never_a_failing_disk_or_network():
    import errno

    assert unreadable(pa.ArrowInvalid("Parquet magic bytes not found in footer"))
    assert unreadable(OSError("ZSTD decompression failed: Data corruption detected"))  # Arrow's own, no errno
    for e in (OSError(errno.EIO, "Input/output error"), TimeoutError("read timed out"), ConnectionResetError(),
              PermissionError("AccessDenied"), FileNotFoundError(2, "gone"), pa.ArrowMemoryError("out of memory"),
              MemoryError()):
        assert not unreadable(e), e
