"""Dataset bookkeeping without Prefect: shard rows, failures, incremental plans, duplicate repair, settings hash."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from helpers.videos import make_video

from moclip.config import ClipConfig, FeatureSettings, MVConfig, RunConfig
from moclip.corpus import load_folder
from moclip.dataset import (
    MANIFEST_NAME,
    Store,
    fingerprint,
    load_features,
    plan_index,
    read_manifest,
    read_metadata,
    rewrite_old_shards,
    rows_to_table,
    write_manifest,
)
from moclip.indexing.shard import ShardTarget, index_shard

SETTINGS = FeatureSettings(clip=ClipConfig(weights="none", frames=2, precision="fp32"))
RUN = RunConfig()
HASH = SETTINGS.settings_hash("random-init")


@pytest.fixture()
def corpus(tmp_path):
    root = tmp_path / "corpus"
    make_video(root / "a" / "one.mp4", n_frames=20, dx=2)
    make_video(root / "a" / "two.avi", codec="mpeg4", n_frames=20, dx=-2)
    (root / "b").mkdir()
    (root / "b" / "empty.mp4").write_bytes(b"")
    (root / "b" / "text.mkv").write_text("not a video")
    return root


def index_all(corpus, out, name="part-x-00000.parquet"):
    table = load_folder(corpus)
    plan = plan_index(table, Store(str(out)), HASH)
    res = index_shard(plan.to_index, name,
                      ShardTarget(features=SETTINGS, run=RUN,
                                  out=str(out), settings_hash=HASH)) if plan.to_index else None
    rewrite_old_shards(Store(str(out)), plan)
    return plan, res


def test_every_video_gets_a_row_with_a_reason(corpus, tmp_path):
    out = tmp_path / "ds"
    _, res = index_all(corpus, out)
    assert (res.n_ok, res.n_failed) == (2, 2)
    meta = read_metadata(str(out)).set_index("video_id")
    assert meta.loc["b/empty.mp4", "error"] == "empty file (0 bytes)"
    assert "not a readable video" in meta.loc["b/text.mkv", "error"] or "cannot open" in meta.loc["b/text.mkv", "error"]
    assert meta.loc["a/one.mp4", "codec"] == "h264" and meta.loc["a/two.avi", "codec"] == "mpeg4"
    assert meta.loc["a/one.mp4", "fingerprint"] == fingerprint(str(corpus / "a" / "one.mp4"))
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]
    feats = load_features(str(out))
    assert feats.clip.shape == (2, 2, 512) and feats.mv.shape == (2, 8, 2, 15, 20)


def test_rerun_plans_nothing_and_touch_is_not_a_change(corpus, tmp_path):
    out = tmp_path / "ds"
    index_all(corpus, out)
    plan, res = index_all(corpus, out, "part-y-00000.parquet")
    assert res is None and plan.unchanged == 4 and not plan.to_index
    os.utime(corpus / "a" / "one.mp4", ns=(1, 1))  # new mtime, same bytes: hashed again, not re-decoded
    plan, res = index_all(corpus, out, "part-y-00000.parquet")
    assert res is None and plan.unchanged == 4


def test_settings_change_reindexes_and_replaces_rows(corpus, tmp_path):
    out = tmp_path / "ds"
    index_all(corpus, out)
    other = FeatureSettings(mv=MVConfig(segments=4), clip=SETTINGS.clip)
    h2 = other.settings_hash("random-init")
    assert h2 != HASH
    plan = plan_index(load_folder(corpus), Store(str(out)), h2)
    assert len(plan.to_index) == 4 and len(plan.reindexed) == 4
    index_shard(plan.to_index, "part-z-00000.parquet",
                ShardTarget(features=other, run=RUN, out=str(out), settings_hash=h2))
    rewrite_old_shards(Store(str(out)), plan)
    meta = read_metadata(str(out))
    assert len(meta) == 4 and set(meta["settings_hash"]) == {h2}
    assert load_features(str(out)).mv.shape[1] == 4


def test_killed_run_duplicates_are_repaired(corpus, tmp_path):
    # Simulate a run killed after writing its new shard but before retiring the old rows.
    out = tmp_path / "ds"
    index_all(corpus, out)
    table = load_folder(corpus)
    index_shard(table.to_dict("records")[:2], "part-later-00000.parquet",
                ShardTarget(features=SETTINGS, run=RUN, out=str(out), settings_hash=HASH))
    assert len(pd.read_parquet(out)) == 6  # 2 duplicates on disk
    plan = plan_index(table, Store(str(out)), HASH)
    assert not plan.to_index and sum(len(v) for v in plan.drop.values()) == 2
    rewrite_old_shards(Store(str(out)), plan)
    meta = read_metadata(str(out))
    assert len(meta) == 4 and meta["video_id"].is_unique


def test_settings_hash_ignores_run_only_fields():
    fp32 = ClipConfig(precision="fp32")
    a = FeatureSettings(mv=MVConfig(max_frames=10), clip=fp32)
    b = FeatureSettings(mv=MVConfig(max_frames=99), clip=fp32)
    assert a.settings_hash("x") == b.settings_hash("x")
    assert a.settings_hash("x") != a.settings_hash("y")
    assert a.settings_hash("x") != FeatureSettings(clip=ClipConfig(frames=4, precision="fp32")).settings_hash("x")


def test_settings_hash_values_are_stable_and_need_a_resolved_precision():
    """Hashes of feature schema 2 (schema 1's were 04dc3ff99aef80be and 525316b05faccfe5, unchanged from the
    dataclass settings up to f9bd05f to the schema bump): an upgrade that keeps the schema must not re-index
    existing datasets. An unresolved precision ("auto") names no feature bytes and is refused."""
    assert SETTINGS.settings_hash("random-init") == "545d8573a15c2b47"
    other = FeatureSettings(mv=MVConfig(segments=4, grid="3x4", backend="mvextractor", max_frames=7),
                            clip=ClipConfig(weights="x.pt", frames=3, precision="bf16", activation="quickgelu"))
    assert other.settings_hash("sha:abc") == "8a4c4be509ab5041"
    # auto re-encodes interlaced H.264 where native does not: another source is other features
    native = FeatureSettings(mv=MVConfig(source="native"), clip=ClipConfig(precision="fp32"))
    assert native.settings_hash("x") != FeatureSettings(clip=ClipConfig(precision="fp32")).settings_hash("x")
    assert FeatureSettings.model_validate(json.loads(json.dumps(other.model_dump()))) == other  # manifest round trip
    with pytest.raises(ValueError, match="resolve the CLIP precision first"):
        FeatureSettings().settings_hash("x")
    assert FeatureSettings().resolved("cpu").clip.precision in ("fp32", "bf16")


def test_a_file_that_comes_back_or_is_retried_keeps_one_row(corpus, tmp_path):
    out = tmp_path / "ds"
    index_all(corpus, out)
    moved = tmp_path / "one.mp4"
    (corpus / "a" / "one.mp4").rename(moved)
    index_all(corpus, out, "part-y-00000.parquet")
    assert read_metadata(str(out)).set_index("video_id").loc["a/one.mp4", "status"] == "deleted"
    moved.rename(corpus / "a" / "one.mp4")
    index_all(corpus, out, "part-z-00000.parquet")
    meta = read_metadata(str(out))
    assert meta["video_id"].is_unique and len(meta) == 4
    assert meta.set_index("video_id").loc["a/one.mp4", "status"] == "ok"
    plan = plan_index(load_folder(corpus), Store(str(out)), HASH, retry_failed=True)
    assert len(plan.to_index) == 2  # the two failed files
    index_shard(plan.to_index, "part-w-00000.parquet",
                ShardTarget(features=SETTINGS, run=RUN, out=str(out), settings_hash=HASH))
    rewrite_old_shards(Store(str(out)), plan)
    assert read_metadata(str(out))["video_id"].is_unique


def test_rerun_trusts_size_and_mtime_even_beside_rows_without_them(corpus, tmp_path):
    # A row whose file vanished before it was decoded has no size or mtime. Those nulls must not turn the mtime
    # column into floats (a nanosecond mtime then no longer matches the file's, and every rerun re-hashes every file).
    out = tmp_path / "ds"
    mtime = 1_700_000_000_123_456_789  # not representable as a float64
    for f in corpus.rglob("*.*"):
        os.utime(f, ns=(mtime, mtime))
    table = load_folder(corpus)
    gone = {"video_id": "a/gone.mp4", "path": str(corpus / "a" / "gone.mp4"), "label": "a"}
    plan = plan_index(table, Store(str(out)), HASH)
    res = index_shard([*plan.to_index, gone], "part-x-00000.parquet",
                      ShardTarget(features=SETTINGS, run=RUN, out=str(out), settings_hash=HASH))
    assert res.n_failed == 3 and read_metadata(str(out))["mtime_ns"].isna().sum() == 1
    # Same size and mtime, other bytes: by design a rerun reads no video bytes, so this counts as unchanged. Had the
    # mtime lost precision, the file would have been hashed and found changed.
    f = corpus / "a" / "one.mp4"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    os.utime(f, ns=(mtime, mtime))
    plan = plan_index(load_folder(corpus), Store(str(out)), HASH)
    assert plan.unchanged == 4 and not plan.to_index and plan.deleted == ["a/gone.mp4"]


def test_the_manifest_stays_bounded_as_runs_accumulate(tmp_path):
    """A year of nightly runs over a big corpus: the manifest keeps counts of the last 50 runs, each run's id lists
    go to its own file under _runs/ (the last 50 kept), and readers of the dataset never see those files."""
    from moclip.dataset import read_run_details
    from moclip.dataset.commit import KEEP_RUNS

    out = tmp_path / "ds"
    store = Store(str(out))
    store.write_table("part-r-00000.parquet", rows_to_table([{"video_id": "a.mp4", "status": "failed", "error": "x"}]))
    sizes = []
    for run in range(KEEP_RUNS + 15):
        ids = [f"v{run}-{i}" for i in range(2000)]  # 2,000 new videos a night
        write_manifest(store, settings=SETTINGS, settings_hash=HASH, clip_weights_id="random-init", clip_random=True,
                       run_summary={"new": len(ids)}, run_details={"changes": {"new": ids}}, run_id=f"r{run:03d}")
        sizes.append((out / MANIFEST_NAME).stat().st_size)
    manifest = read_manifest(str(out))
    assert len(manifest["runs"]) == KEEP_RUNS and manifest["runs"][-1]["run_id"] == f"r{KEEP_RUNS + 14:03d}"
    assert max(sizes[KEEP_RUNS:]) - min(sizes[KEEP_RUNS:]) < 100  # flat once the history is full
    assert sizes[-1] < 20_000  # counts, not 2,000 ids x 50 runs
    files = sorted(p.name for p in (out / "_runs").iterdir())
    assert files == [f"r{r:03d}.json" for r in range(15, KEEP_RUNS + 15)]
    assert read_run_details(str(out), manifest["runs"][-1])["changes"]["new"][:2] == [f"v{KEEP_RUNS + 14}-0",
                                                                                      f"v{KEEP_RUNS + 14}-1"]
    assert len(pd.read_parquet(out)) == len(read_metadata(str(out))) == 1  # _runs/ is invisible to Parquet readers
