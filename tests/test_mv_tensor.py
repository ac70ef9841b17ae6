"""MV tensors: shape, units, reference-distance normalisation, skipped frames, determinism, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.videos import make_video

from moclip.config import MVConfig
from moclip.video import MotionAccumulator, extract_video
from moclip.video.frames import DecodedFrame


def inner_mean(values: np.ndarray) -> np.ndarray:
    """Mean (vx, vy) over all segments, away from the border cells (where content enters the frame)."""
    return values[:, :, 2:-2, 2:-2].mean(axis=(0, 2, 3))


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
@pytest.mark.parametrize("bframes", [0, 2])
def test_velocity_in_percent_of_frame_per_second(tmp_path, codec, bframes):
    # An IBBP GOP makes P-frame MVs span 3 frames; the tensor must still report the speed (25 fps: 1/25 s a frame).
    path = make_video(tmp_path / f"pan.{ 'mp4' if codec == 'libx264' else 'avi'}", codec=codec, bframes=bframes,
                      dx=3, dy=-2)
    feats = extract_video(str(path), MVConfig(), n_rgb=4)
    assert feats.motion.values.shape == (8, 2, 15, 20)
    vx, vy = inner_mean(feats.motion.values)
    assert vx == pytest.approx(3 / 320 * 100 * 25, rel=0.05)
    assert vy == pytest.approx(-2 / 240 * 100 * 25, rel=0.05)
    assert (feats.motion.valid > 0).all()


def test_mpeg4_b_frames_do_not_dilute(tmp_path):
    # FFmpeg exports all-zero MVs for MPEG-4 Part 2 B-frames: they must be skipped, not averaged in as "no motion".
    with_b = extract_video(str(make_video(tmp_path / "b.avi", codec="mpeg4", bframes=2, dx=4)), MVConfig(), 2)
    without_b = extract_video(str(make_video(tmp_path / "p.avi", codec="mpeg4", bframes=0, dx=4)), MVConfig(), 2)
    assert with_b.motion.n_mv_frames < without_b.motion.n_mv_frames / 2
    assert inner_mean(with_b.motion.values)[0] == pytest.approx(inner_mean(without_b.motion.values)[0], rel=0.05)


def test_any_resolution_gives_same_shape_and_scale(tmp_path):
    small = extract_video(str(make_video(tmp_path / "s.mp4", dx=2, width=320, height=240)), MVConfig(), 2)
    # same relative motion (2 px of 320 == 4 px of 640) at twice the size and another aspect ratio
    big = extract_video(str(make_video(tmp_path / "b.mp4", dx=4, width=640, height=360)), MVConfig(), 2)
    assert small.motion.values.shape == big.motion.values.shape == (8, 2, 15, 20)
    assert inner_mean(big.motion.values)[0] == pytest.approx(inner_mean(small.motion.values)[0], rel=0.05)


def test_config_shapes(tmp_path):
    path = make_video(tmp_path / "v.mp4", n_frames=40)
    feats = extract_video(str(path), MVConfig(segments=4, grid=(6, 8)), n_rgb=3)
    assert feats.motion.values.shape == (4, 2, 6, 8)
    assert len(feats.frames) == 3 and feats.frame_indices == [6, 20, 33]


def test_same_file_same_bytes(tmp_path):
    path = make_video(tmp_path / "v.mp4", bframes=2, dx=2, dy=1)
    a = extract_video(str(path), MVConfig(), 8)
    b = extract_video(str(path), MVConfig(), 8)
    assert a.motion.values.tobytes() == b.motion.values.tobytes()
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.frames, b.frames))


def test_rgb_frames_are_the_sampled_ones(tmp_path):
    path = make_video(tmp_path / "v.mp4", n_frames=48)
    size = lambda w, h: (299, 224)  # noqa: E731
    feats = extract_video(str(path), MVConfig(), n_rgb=8, rgb_size=size)
    assert feats.frame_indices == [3, 9, 15, 21, 27, 33, 39, 45]
    assert all(f.shape == (224, 299, 3) and f.dtype == np.uint8 for f in feats.frames)


def test_bins_merge_for_long_videos():
    # 5000 synthetic P-frames with constant motion through an accumulator holding only 64 bins.
    mvs = np.array([[-1, 16, 16, 8 - 4, 8, 8, 8, -4 * 4, 0, 4]], dtype=np.int32)  # moved +4 px in x
    acc = MotionAccumulator(8, (1, 1), 320, 240, max_bins=64)
    for i in range(5000):
        acc.add(DecodedFrame(index=i, pict_type="I" if i == 0 else "P", mvs=mvs))
    out = acc.finish()
    assert out.n_frames == 5000 and out.n_mv_frames == 4999
    assert acc.bin_width > 1
    np.testing.assert_allclose(out.values[:, 0, 0, 0], 4 / 320 * 100 * 25)  # no timestamps: the fallback 25 fps
    assert abs(int(out.valid.sum()) - 4999) == 0
    # segments stay balanced to within one (merged) bin
    assert np.abs(out.valid - 5000 / 8).max() <= acc.bin_width


@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_frame_count_hint_and_columns_layout_do_not_change_the_tensor(tmp_path, codec):
    # The accumulator is sized from the container's frame count, a hint that may be wrong either way, and takes both
    # FFmpeg's MV records (PyAV) and mv-extractor's (N, 10) columns: the tensor must be the same bytes in every case.
    from moclip.video import pyav_reader
    from moclip.video.frames import mv_columns

    path = make_video(tmp_path / f"v.{'mp4' if codec == 'libx264' else 'avi'}", codec=codec, bframes=2, dx=3, dy=1,
                      n_frames=90)
    _, frames = pyav_reader.iter_frames(str(path))
    frames = list(frames)
    assert any(f.pict_type == "B" for f in frames)

    def tensor(expected: int, columns: bool = False, max_bins: int = 1024):
        acc = MotionAccumulator(8, (15, 20), 320, 240, max_bins=max_bins, expected_frames=expected)
        for f in frames:
            acc.add(DecodedFrame(f.index, f.pict_type, mv_columns(f.mvs) if columns else f.mvs))
        out = acc.finish()
        return out.values.tobytes() + out.valid.tobytes() + bytes([out.n_mv_frames])

    ref = tensor(0)
    assert all(tensor(n) == ref for n in (1, 89, 90, 91, 500, 10**9))
    assert tensor(90, columns=True) == ref
    assert tensor(0, max_bins=16) == tensor(10**9, max_bins=16, columns=True)  # merged bins too


def test_a_nudged_duplicate_timestamp_is_not_a_burst_of_speed():
    """Muxers nudge a repeated timestamp forward by one tick: a 1 ms gap is no real frame time (MIN_GAP_S), so that
    frame's motion is per frame distance / fps, not 40x too fast; real gaps (a dropped frame) still count (and a
    10 ms step of a variable-frame-rate burst: tests/test_bad_inputs.py)."""
    mvs = np.array([[-1, 16, 16, 8 - 4, 8, 8, 8, -4 * 4, 0, 4]], dtype=np.int32)  # moved +4 px in x
    times = [i / 25 for i in range(10)]
    times[5] = times[4] + 0.001  # nudged
    times[8:] = [t + 1 / 25 for t in times[8:]]  # a dropped frame before frame 8: 2 frame times
    acc = MotionAccumulator(10, (1, 1), 320, 240, fps=25)
    for i, t in enumerate(times):
        acc.add(DecodedFrame(index=i, pict_type="I" if i == 0 else "P", mvs=mvs, time_s=t))
    v = acc.finish().values[:, 0, 0, 0]
    per_second = 4 / 320 * 100 * 25
    np.testing.assert_allclose(v[[1, 2, 3, 4, 7]], per_second, rtol=1e-6)
    np.testing.assert_allclose(v[5], per_second, rtol=1e-6)  # the nudged frame: by frame distance, not 40x
    np.testing.assert_allclose(v[6], per_second * (1 / 25) / (times[6] - times[5]), rtol=1e-6)  # the gap it left
    np.testing.assert_allclose(v[8], per_second / 2, rtol=1e-6)  # 4 px over 2 frame times
    np.testing.assert_allclose(v[9], per_second, rtol=1e-6)


def test_references_forget_frames_of_another_size_and_look_as_deep_as_the_sps_says():
    from moclip.video.mv_tensor import MAX_REF_DEPTH, REF_DEPTH, References

    refs = References()
    refs.keep(DecodedFrame(index=0, pict_type="I", mvs=np.zeros((0, 10), np.int32), luma=np.zeros((8, 8), np.uint8)))
    refs.keep(DecodedFrame(index=1, pict_type="P", mvs=np.zeros((0, 10), np.int32), luma=np.zeros((4, 8), np.uint8)))
    assert list(refs.frames) == [1]  # the size changed: frame 0 is no candidate for frame 1's blocks
    assert References.depth_for(None) == REF_DEPTH and References.depth_for(1) == 4
    assert References.depth_for(4) == 16 and References.depth_for(16) == MAX_REF_DEPTH
