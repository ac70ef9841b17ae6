"""A long video decoded in keyframe-aligned ranges (moclip.video.ranges) gives what a whole decode gives: the same
bins and windows, bit-identical MVs, the same CLIP frames; real encoded videos of every path the decoder takes."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.videos import make_scenes

from moclip.config import MVConfig, WindowConfig
from moclip.video.ranges import assemble, decode_range, decode_split, plan_ranges
from moclip.video.windows import CLOCK_PTS, RangeMismatch, extract_windows

WINDOW = WindowConfig(seconds=2.0, stride=1.0, frames=2)
SIZE = (48, 36)  # CLIP frames at a small size: the comparison is of pixels, not of what CLIP sees


def _rgb_size(w: int, h: int) -> tuple[int, int]:
    return SIZE


def _same(whole, split) -> None:
    assert np.array_equal(whole.motion.values, split.motion.values)
    assert whole.motion.values.tobytes() == split.motion.values.tobytes()  # bit for bit, signs of zeros too
    assert np.array_equal(whole.motion.valid, split.motion.valid)
    assert (whole.motion.n_frames, whole.motion.n_mv_frames) == (split.motion.n_frames, split.motion.n_mv_frames)
    assert whole.windows == split.windows
    assert whole.frame_indices == split.frame_indices
    assert len(whole.frames) == len(split.frames) and all(np.array_equal(a, b) for a, b in zip(whole.frames,
                                                                                               split.frames))
    assert whole.mv_source == split.mv_source and whole.info == split.info


CASES = {  # name: (file, make_scenes options, MV source)
    "h264-x264-defaults": ("v.mp4", {}, "auto"),  # B-pyramid, 3 references: blocks matched to their reference
    "h264-open-gop": ("v.mp4", {"open-gop": "1", "keyint": "60"}, "auto"),  # leading B-frames refer back
    "h264-vfr": ("v.mp4", {"vfr": True}, "auto"),
    "mpeg4-bframes-avi": ("v.avi", {"codec": "mpeg4", "bf": 2, "g": 50, "fmt": "avi"}, "auto"),
    "h264-reencoded": ("v.mp4", {}, "reencode"),
    "vp9-reencoded": ("v.webm", {"codec": "libvpx-vp9", "g": 60, "deadline": "realtime", "cpu-used": "8"}, "auto"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_video_decoded_in_ranges_is_the_whole_decode_bit_for_bit(tmp_path, case):
    name, options, source = CASES[case]
    path = str(make_scenes(tmp_path / name, 20.0, **options))
    mv = MVConfig(segments=4, source=source)
    plan = plan_ranges(path, mv, range_s=5.0)
    assert plan is not None and len(plan) >= 3, plan  # keyframes found near 5, 10, 15 s
    parts = [decode_range(plan, i, mv, WINDOW, _rgb_size) for i in range(len(plan))]
    assert [p.own_from for p in parts[1:]] == [p.own_to for p in parts[:-1]]  # each bin is one range's
    assert all(p.own_to > p.own_from for p in parts[:-1])
    whole = extract_windows(path, mv, WINDOW, _rgb_size)
    assert whole.windows.clock == CLOCK_PTS
    _same(whole, assemble(parts, mv, WINDOW))
    # the ranges in any order (as Dask finishes them) assemble the same once put back in order
    _same(whole, assemble([decode_range(plan, i, mv, WINDOW, _rgb_size) for i in range(len(plan))], mv, WINDOW))


def test_embeddings_of_a_split_decode_are_the_whole_decode_s(tmp_path):
    path = str(make_scenes(tmp_path / "v.mp4", 16.0))

    def embed(frames: list[np.ndarray]) -> np.ndarray:  # a stand-in encoder: each frame's mean colour
        return np.stack([f.reshape(-1, 3).mean(axis=0) for f in frames]).astype(np.float32)

    mv = MVConfig(segments=4)
    whole = extract_windows(path, mv, WINDOW, _rgb_size, embed=embed)
    split = decode_split(path, mv, WINDOW, 4.0, _rgb_size, embed=embed)
    assert whole.embeddings.shape == split.embeddings.shape == (len(whole.frame_indices), 3)
    assert np.array_equal(whole.embeddings, split.embeddings) and not split.frames


def test_ranges_that_disagree_are_refused_and_the_video_decoded_whole(tmp_path):
    path = str(make_scenes(tmp_path / "v.mp4", 16.0))
    mv = MVConfig(segments=4)
    plan = plan_ranges(path, mv, range_s=4.0)
    parts = [decode_range(plan, i, mv, WINDOW, _rgb_size) for i in range(len(plan))]
    with pytest.raises(RangeMismatch, match="disagree"):  # a range missing: the next one does not follow
        assemble([parts[0], *parts[2:]], mv, WINDOW)
    parts[1].head[3] = (0.0, "P", 0, 0, 0)  # a frame the two neighbours saw differently
    with pytest.raises(RangeMismatch, match="ranges 0 and 1 disagree"):
        assemble(parts, mv, WINDOW)


def test_short_videos_and_other_backends_are_not_split(tmp_path):
    path = str(make_scenes(tmp_path / "v.mp4", 6.0))
    assert plan_ranges(path, MVConfig(), range_s=4.0) is None  # under two ranges' worth
    assert plan_ranges(path, MVConfig(backend="mvextractor"), range_s=1.0) is None


def test_a_bin_s_float64_sums_do_not_depend_on_where_pooling_began_or_how_it_was_chunked(tmp_path):
    """The float64 sums behind each bin, before the cast to float32 hides most rounding: every bin is pooled in one
    pass in display order, so chunk sizes and a start in the middle (a range) change no bit."""
    from moclip.video.extract import motion_accumulator, open_frames

    path = str(make_scenes(tmp_path / "v.mp4", 12.0, noise=True))  # each block its own motion: sums that round
    mv = MVConfig(segments=4)
    info, frames = open_frames(path, mv, lambda i, t: False, None, None)
    frames = list(frames)
    keys = [int((f.time_s - frames[0].time_s) / 0.5 + 1e-6) for f in frames]

    def pooled(chunk: int, start: int = 0, first_key: int = 0):
        acc = motion_accumulator(info, mv, max_bins=1 << 62)
        acc.chunk_frames, acc.first_key = chunk, first_key
        for f, k in zip(frames[start:], keys[start:]):
            acc.add(f, k, pool=k >= first_key)
        acc.finish_bins(keys[-1] + 1 - first_key)
        return acc.sums[:keys[-1] + 1 - first_key]

    whole = pooled(64)
    assert whole.tobytes() == pooled(5).tobytes() == pooled(1).tobytes() == pooled(1000).tobytes()
    start = 100  # a range that starts at frame 100 (frames 100-112 are only references), owns bins 9 on
    assert pooled(7, start, keys[start + 12] + 1).tobytes() == whole[keys[start + 12] + 1:].tobytes()
