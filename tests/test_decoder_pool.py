"""The GPU worker's shard path, run on the CPU: videos decoded by a pool of decoder processes (``--decode-workers``)
feeding one CLIP model in shared batches (moclip/indexing/pool.py) give the rows the in-process path gives; a crash
or a hang in a decoder costs its video only, in the same shard, without a retry."""

from __future__ import annotations

import os
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from helpers.videos import make_video

from moclip.config import ClipConfig, FeatureSettings, RunConfig, WindowConfig
from moclip.dataset import load_features, read_metadata, read_table
from moclip.dataset.windows import window_features
from moclip.indexing.decode import FAULT_ENV
from moclip.indexing.pool import DecoderPool, close_pools, index_shard_pooled
from moclip.indexing.shard import ShardTarget, index_shard

SETTINGS = FeatureSettings(clip=ClipConfig(weights="none", frames=3, precision="fp32"))


def corpus(root: Path, names: list[str], n_frames: int = 12) -> list[dict]:
    videos = []
    for i, name in enumerate(names):
        path = make_video(root / f"{name}.mp4", dx=3 if i % 2 else -3, n_frames=n_frames, width=160, height=120,
                          seed=i)
        videos.append({"video_id": f"{name}.mp4", "path": str(path), "label": "right" if i % 2 else "left",
                       "split": None, "group": None})
    return videos


def by_id(folder: Path):
    fs = load_features(str(folder))
    return {v: i for i, v in enumerate(fs.meta["video_id"])}, fs


def test_the_pool_gives_the_rows_of_the_in_process_path(tmp_path):
    videos = corpus(tmp_path / "c", [f"v{i}" for i in range(7)])
    (tmp_path / "c" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(3000))
    videos.append({"video_id": "broken.mp4", "path": str(tmp_path / "c" / "broken.mp4"), "label": "left",
                   "split": None, "group": None})
    ref = index_shard(videos, "part-00000.parquet", ShardTarget(features=SETTINGS, run=RunConfig(),
                                                                out=str(tmp_path / "ref"), settings_hash="h"))
    # batches of 4 images span videos (3 frames each): embeddings cross video boundaries inside one forward
    run = RunConfig(decode_workers=3, clip_batch_size=4)
    got = index_shard(videos, "part-00000.parquet", ShardTarget(features=SETTINGS, run=run,
                                                                out=str(tmp_path / "pool"), settings_hash="h"))
    assert (got.n_ok, got.n_failed) == (ref.n_ok, ref.n_failed) == (7, 1)
    assert got.images_embedded == ref.images_embedded == 21
    assert got.culprits == []  # a file the decoder rejects is an ordinary failed row, not a crash
    assert {"decode", "embed", "write", "load_model", "wall"} <= set(got.seconds)
    meta = read_metadata(str(tmp_path / "pool")).set_index("video_id")
    assert meta.loc["broken.mp4", "status"] == "failed" and meta.loc["broken.mp4", "error"]
    assert list(meta.index) == list(read_metadata(str(tmp_path / "ref"))["video_id"])  # not in decode order
    (ia, a), (ib, b) = by_id(tmp_path / "ref"), by_id(tmp_path / "pool")
    assert set(ia) == set(ib)
    for vid in ia:
        np.testing.assert_array_equal(a.mv[ia[vid]], b.mv[ib[vid]])
        np.testing.assert_allclose(a.clip[ia[vid]], b.clip[ib[vid]], rtol=1e-4, atol=1e-4)


def test_windows_through_the_pool_match_the_direct_path(tmp_path):
    videos = corpus(tmp_path / "c", ["long0", "long1"], n_frames=75)  # 3 s at 25 fps: 2 s windows every 1 s
    settings = FeatureSettings(clip=ClipConfig(weights="none", precision="fp32"),
                               window=WindowConfig(seconds=2, stride=1, frames=2))
    embedded = []
    for out, run in (("ref", RunConfig()), ("pool", RunConfig(decode_workers=2, clip_batch_size=3))):
        result = index_shard(videos, "part-00000.parquet", ShardTarget(features=settings, run=run,
                                                                       out=str(tmp_path / out), settings_hash="h"))
        assert result.n_ok == 2
        embedded.append(result.images_embedded)
    assert embedded[0] == embedded[1] > 0  # the pool's children sent their frames to be embedded as they decoded
    a, b = (window_features(read_table(str(tmp_path / d))) for d in ("ref", "pool"))
    assert len(a.meta) == len(b.meta) >= 4
    np.testing.assert_array_equal(a.mv, b.mv)
    np.testing.assert_allclose(a.clip, b.clip, rtol=1e-4, atol=1e-4)
    assert a.meta["start_s"].tolist() == b.meta["start_s"].tolist()


@pytest.mark.integration
def test_a_crash_and_a_hang_in_the_pool_cost_one_video_each(tmp_path, monkeypatch):
    videos = corpus(tmp_path / "c", ["a0", "boom", "a1", "stuck", "a2", "a3"])
    monkeypatch.setenv(FAULT_ENV, "crash:boom;hang:stuck")
    close_pools()  # this process's pool started its children without the faults
    run = RunConfig(decode_workers=2, decode_hard_timeout_s=3)
    result = index_shard_pooled(videos, "part-00000.parquet",
                                ShardTarget(features=SETTINGS, run=run, out=str(tmp_path / "ds"), settings_hash="h"),
                                decoders=2)
    assert (result.n_ok, result.n_failed) == (4, 2)
    assert sorted(result.culprits) == ["boom.mp4", "stuck.mp4"]
    meta = read_metadata(str(tmp_path / "ds")).set_index("video_id")
    assert meta.loc["boom.mp4", "error"] == "decoder crashed (killed by SIGSEGV)"
    assert meta.loc["stuck.mp4", "error"] == "decoder hung: no result within 3 s (hard limit)"
    assert (meta.drop(["boom.mp4", "stuck.mp4"])["status"] == "ok").all()


def test_a_slow_consumer_is_not_mistaken_for_a_hung_decoder(tmp_path):
    # the caller holds each result longer than the hard limit: the children's finished answers wait unread, and are
    # read, not killed as hangs
    import time

    videos = corpus(tmp_path / "c", ["s0", "s1", "s2"])
    pool = DecoderPool(2, lambda w, h: (w, h))
    try:
        done = []
        for d in pool.decode([v["path"] for v in videos], lambda p: (p, SETTINGS.mv, 1, 60.0, None), 0.5):
            time.sleep(0.8)
            done.append(d)
    finally:
        pool.close()
    assert sorted(d.index for d in done) == [0, 1, 2]
    assert [(d.error, d.crashed) for d in done] == [(None, False)] * 3


def test_the_summary_says_what_limited_a_pooled_run():
    from moclip.report.index_summary import bottleneck

    assert bottleneck({"wall": 10.0, "embed": 9.0}).startswith("CLIP forward (CLIP busy 90%")
    assert bottleneck({"wall": 10.0, "embed": 2.0}).startswith("decoding (CLIP busy 20%")
    assert bottleneck({"decode": 5.0, "embed": 1.0}) is None  # in-process decoding: no pool, no verdict


def test_a_shard_that_stops_early_leaves_the_pool_clean_for_the_next(tmp_path):
    # the first shard's caller gives up after one result while the other child is still busy: that child's late
    # answer must not become the next shard's; and a child that died while idle is started again, costing nothing
    videos = corpus(tmp_path / "c", ["f12", "f20", "f28", "f36"], n_frames=12)
    for v, n in zip(videos, (12, 20, 28, 36)):
        make_video(Path(v["path"]), n_frames=n, width=160, height=120)
    pool = DecoderPool(2, lambda w, h: (w, h))
    job = lambda p: (p, SETTINGS.mv, 1, 60.0, None)  # noqa: E731
    try:
        with closing(pool.decode([v["path"] for v in videos[:2]], job, 30.0)) as first:
            next(first)
        idle = pool.children[0]
        if idle.proc is not None:
            idle.proc.kill()
            idle.proc.wait()
        got = {d.index: d for d in pool.decode([v["path"] for v in videos[2:]], job, 30.0)}
    finally:
        pool.close()
    assert [(d.error, d.crashed) for d in got.values()] == [(None, False)] * 2
    assert {i: d.features.motion.n_frames for i, d in got.items()} == {0: 28, 1: 36}
