"""Time windows at index time (moclip.video.windows, moclip.dataset.windows): real encoded untrimmed videos."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from helpers.videos import encode_vfr, make_untrimmed, make_video
from pydantic import ValidationError

from moclip.config import ClipConfig, FeatureSettings, MVConfig, RunConfig, WindowConfig
from moclip.dataset import feature_set, read_table
from moclip.dataset.windows import window_features
from moclip.indexing.shard import ShardTarget, index_shard
from moclip.video import extract_video
from moclip.video.windows import CLOCK_INDEX, CLOCK_PTS, WHOLE_VIDEO, extract_windows, window_starts

RIGHT_STILL_LEFT = [(3, 0, 50), (0, 0, 50), (-3, 0, 50)]  # 2 s each at 25 fps


def _vx(bins: np.ndarray) -> np.ndarray:
    return bins[:, 0].mean(axis=(1, 2))


@pytest.mark.parametrize("codec,fmt,bframes", [("libx264", None, 2), ("mpeg4", "avi", 0)])
def test_windows_follow_the_motion_over_time(tmp_path, codec, fmt, bframes):
    path = make_untrimmed(tmp_path / f"v.{fmt or 'mp4'}", RIGHT_STILL_LEFT, codec=codec, bframes=bframes, fmt=fmt)
    feats = extract_windows(str(path), MVConfig(segments=4), WindowConfig(seconds=1.0, stride=0.5))
    w = feats.windows
    assert w.clock == CLOCK_PTS and w.bin_s == 0.25 and w.n_bins == 4 and w.n_frames == 2
    assert feats.motion.values.shape == (24, 2, 15, 20)  # 6 s of 0.25 s bins
    assert len(w.start_s) == 11 and w.start_s[:3] == [0.0, 0.5, 1.0] and w.end_s[-1] == pytest.approx(6.0)
    vx = _vx(feats.motion.values)
    assert (vx[:7] > 0.3).all() and (np.abs(vx[9:15]) < 0.02).all() and (vx[17:] < -0.3).all()
    # one RGB frame per 0.5 s grid point (K=2 per 1 s window), shared by overlapping windows
    assert len(feats.frames) == 12 and feats.frame_indices == sorted(set(feats.frame_indices))
    assert all(0 <= f <= 12 - 2 for f in w.first_frame)


def test_each_grid_frame_is_embedded_once_while_decoding(tmp_path):
    path = make_untrimmed(tmp_path / "v.mp4", RIGHT_STILL_LEFT)
    calls: list[int] = []

    def embed(frames):
        calls.append(len(frames))
        return np.stack([f.astype(np.float32).mean(axis=(0, 1)) for f in frames])

    feats = extract_windows(str(path), MVConfig(), WindowConfig(seconds=2.0, stride=0.5, frames=4), embed=embed)
    assert feats.frames == [] and sum(calls) == len(feats.frame_indices) == feats.embeddings.shape[0] == 12
    assert len(feats.windows.start_s) == 9  # (6 - 2) / 0.5 + 1


def test_window_starts_end_at_the_video_end():
    assert window_starts(24, 8, 4) == [0, 4, 8, 12, 16]
    assert window_starts(25, 8, 4) == [0, 4, 8, 12, 16, 17]  # the last window moved back to end at the end
    assert window_starts(8, 8, 4) == [0] and window_starts(5, 8, 4) == [0]


def test_variable_frame_rate_windows_are_seconds_not_frames(tmp_path):
    # 30 frames 10 ms apart, a 2 s gap, 30 more: by frame index the video would be 60 frames of 1/25 s
    pts = [10 * i for i in range(30)] + [2290 + 10 * i for i in range(30)]
    path = encode_vfr(tmp_path / "vfr.mp4", pts)
    feats = extract_windows(str(path), MVConfig(segments=4), WindowConfig(seconds=1.0, stride=1.0))
    w = feats.windows
    assert w.clock == CLOCK_PTS
    assert w.end_s[-1] == pytest.approx(2.59 + 1 / 25, abs=0.05)  # the real duration, not 60 / 25 = 2.4 s
    assert feats.motion.valid[4:8].sum() == 0  # the gap: no frames, no motion


def test_a_stream_without_timestamps_is_windowed_by_frame_index(tmp_path):
    # a raw H.264 elementary stream has no timestamps at all: windows by index / fps, and the layout says so
    path = make_untrimmed(tmp_path / "raw.h264", RIGHT_STILL_LEFT, fmt="h264")
    feats = extract_windows(str(path), MVConfig(segments=4), WindowConfig(seconds=1.0))
    assert feats.windows.clock == CLOCK_INDEX and feats.motion.n_frames == 150
    assert feats.windows.end_s[-1] == pytest.approx(6.0)
    vx = _vx(feats.motion.values)
    assert vx[2] > 0.3 and abs(vx[12]) < 0.02 and vx[21] < -0.3


def test_timestamps_that_go_back_fall_back_to_the_frame_index(shared_data):
    # XviD AVIs with packed B-frames (UCF101's) give decoded frames timestamps out of order
    clips = sorted((shared_data / "real-clips" / "UCF-101").glob("*/*.avi"))
    if not clips:
        pytest.skip("no real clips in ../shared")
    feats = extract_windows(str(clips[0]), MVConfig(), WindowConfig(seconds=2.0))
    whole = extract_video(str(clips[0]), MVConfig(), 8)
    assert feats.windows.clock == CLOCK_INDEX and feats.motion.n_frames == whole.motion.n_frames
    assert feats.motion.n_mv_frames == whole.motion.n_mv_frames  # decoded again from the start: nothing lost


def test_a_video_shorter_than_the_window_is_one_window(tmp_path):
    path = make_video(tmp_path / "short.mp4", n_frames=30)  # 1.2 s
    feats = extract_windows(str(path), MVConfig(), WindowConfig(seconds=4.0, frames=3))
    whole = extract_video(str(path), MVConfig(), 3)
    w = feats.windows
    assert (w.clock, w.start_s, w.end_s, w.first_bin) == (WHOLE_VIDEO, [0.0], [pytest.approx(1.2)], [0])
    np.testing.assert_array_equal(feats.motion.values, whole.motion.values)  # T segments over the whole video


def test_a_window_shorter_than_one_frame_is_the_videos_error(tmp_path):
    from moclip.video import DecodeError

    path = make_video(tmp_path / "v.mp4", n_frames=10)
    with pytest.raises(DecodeError, match="shorter than one frame"):
        extract_windows(str(path), MVConfig(), WindowConfig(seconds=0.01))


@pytest.mark.parametrize("window,match", [({"seconds": 4, "stride": 0}, "greater than 0"),
                                          ({"seconds": 4, "stride": -1}, "greater than 0"),
                                          ({"seconds": 0}, "greater than 0"),
                                          ({"seconds": 2, "stride": 3}, "longer than the window"),
                                          ({"stride": 1}, "needs a window")])
def test_bad_window_settings_are_refused(window, match):
    with pytest.raises(ValidationError, match=match):
        WindowConfig(**window)


def test_no_window_keeps_todays_settings_hash():
    plain = FeatureSettings(clip=ClipConfig(precision="fp32"))
    # the hash of the same settings without the window field (schema 1's were fb81e7cdcd68aa06 and 4343be7bfa8c574c,
    # the same with and without windows existing): no window changes nothing
    assert plain.settings_hash() == "70399cdb778147d7"
    assert FeatureSettings(clip=ClipConfig(precision="fp32"), mv=MVConfig(source="reencode")).settings_hash("w1") \
        == "ac272ad66ef3e38b"
    windowed = FeatureSettings(clip=ClipConfig(precision="fp32"), window=WindowConfig(seconds=4))
    assert windowed.settings_hash() != plain.settings_hash()
    assert windowed.without_window().settings_hash() == plain.settings_hash()
    # the default stride is half the window: saying so explicitly is the same features
    explicit = FeatureSettings(clip=ClipConfig(precision="fp32"), window=WindowConfig(seconds=4, stride=2))
    assert explicit.settings_hash() == windowed.settings_hash()


def test_a_windowed_shard_reads_back_as_one_input_per_window(tmp_path):
    videos = [make_untrimmed(tmp_path / "c" / "long.mp4", RIGHT_STILL_LEFT),
              make_video(tmp_path / "c" / "short.mp4", n_frames=20)]
    settings = FeatureSettings(mv=MVConfig(segments=4), clip=ClipConfig(weights="none", frames=8, precision="fp32"),
                               window=WindowConfig(seconds=1.0, stride=0.5, frames=2))
    out = tmp_path / "ds"
    rows = [{"video_id": p.name, "path": str(p)} for p in videos]
    result = index_shard(rows, "part-00000.parquet", ShardTarget(features=settings, run=RunConfig(), out=str(out),
                                                                 settings_hash="h"))
    assert result.n_ok == 2 and result.images_embedded == 12 + 2
    table = read_table(str(out))
    with pytest.raises(ValueError, match="indexed with time windows"):
        feature_set(table)  # training never takes a long video's bins for a clip
    fs = window_features(table)
    assert list(fs.meta["video_id"]) == ["long.mp4"] * 11 + ["short.mp4"]
    assert fs.mv.shape == (12, 4, 2, 15, 20) and fs.clip.shape == (12, 2, 512) and fs.mv_valid.shape == (12, 4)
    assert list(fs.meta["window_clock"].unique()) == [CLOCK_PTS, WHOLE_VIDEO]
    # window 4 (2.0-3.0 s) is the still stretch; window 0 moves right, window 10 left
    vx = fs.mv[:, :, 0].mean(axis=(1, 2, 3))
    assert vx[0] > 0.3 and abs(vx[4]) < 0.02 and vx[10] < -0.3
    row = table.filter(pa.compute.equal(table.column("video_id"), "long.mp4")).to_pylist()[0]
    bins = np.asarray(row["mv"], np.float32).reshape(row["mv_shape"])
    np.testing.assert_array_equal(fs.mv[3], bins[6:10])  # window 3 starts at 1.5 s: bins 6-9 of 0.25 s


def test_the_isolated_retry_indexes_windows_too(tmp_path):
    """A shard retried with each video decoded in a child process (after its worker died) gets the same windows."""
    from moclip.indexing.isolated import index_shard_isolated

    path = make_untrimmed(tmp_path / "c" / "long.mp4", RIGHT_STILL_LEFT)
    settings = FeatureSettings(mv=MVConfig(segments=4), clip=ClipConfig(weights="none", frames=8, precision="fp32"),
                               window=WindowConfig(seconds=1.0, stride=0.5, frames=2))
    rows = [{"video_id": "long.mp4", "path": str(path)}]
    direct, isolated = tmp_path / "direct", tmp_path / "isolated"
    for out, run in ((direct, index_shard), (isolated, index_shard_isolated)):
        result = run(rows, "part-00000.parquet", ShardTarget(features=settings, run=RunConfig(), out=str(out),
                                                             settings_hash="h"))
        assert result.n_ok == 1 and result.images_embedded == 12
    a, b = (window_features(read_table(str(d))) for d in (direct, isolated))
    np.testing.assert_array_equal(a.mv, b.mv)
    np.testing.assert_allclose(a.clip, b.clip, rtol=1e-5, atol=1e-6)
    assert a.meta["start_s"].tolist() == b.meta["start_s"].tolist()
