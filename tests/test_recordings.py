"""One motion however it was recorded: the same camera pan (tests/helpers/recordings.py: 150 px/s right, 75 px/s
down, 320x240 displayed) written at 25/30/50/60 fps, with dropped frames, by H.264, MPEG-4, HEVC and VP9, coded
sideways or mirrored with a display matrix, or anamorphic, gives the same motion tensor (within 8 % of the upright
25 fps recording) and, at the same frame times, the same upright CLIP frames. bench/bench_recordings.py writes
the table of these agreements into docs/BENCHMARKS.md."""

from __future__ import annotations

import av
import numpy as np
import pytest
from helpers.recordings import RECORDINGS, REFERENCE, TRUTH, X264_DEFAULTS, disagreement, mean_motion, record
from helpers.videos import make_video

from moclip.config import MVConfig
from moclip.video import pyav_reader
from moclip.video.extract import extract_video
from moclip.video.h264 import max_reference_frames

TOLERANCE = 0.08


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return extract_video(str(record(REFERENCE, tmp_path_factory.mktemp("ref"))), MVConfig(), 4)


@pytest.mark.parametrize("r", [r for r in RECORDINGS[1:] if r.name != X264_DEFAULTS], ids=lambda r: r.name)
def test_every_recording_gives_the_reference_motion(reference, tmp_path, r):
    f = extract_video(str(record(r, tmp_path)), MVConfig(source=r.mv_source), 4)
    ref = mean_motion(reference.motion.values, reference.motion.valid)
    assert disagreement(ref, np.array(TRUTH)) < 0.02  # the reference itself reads the true speed
    v = mean_motion(f.motion.values, f.motion.valid)
    assert disagreement(v, ref) < TOLERANCE, (r.name, v, ref)
    assert f.motion.values.shape == reference.motion.values.shape and (f.motion.valid > 0).all()
    assert f.info.interlaced == r.fields
    if r.fields and r.codec == "libx264":  # field macroblocks' MVs are in field lines: re-encoded under "auto"
        assert f.mv_source == "reencoded"
    if r.fps == REFERENCE.fps and not r.drop_every and not r.fields:  # the same times: the same upright pictures
        for a, b in zip(reference.frames, f.frames):
            assert a.shape == b.shape, r.name
            assert np.abs(a.astype(int) - b.astype(int)).mean() < 12, r.name  # codec noise, the squeeze's blur


def test_native_and_reencoded_motion_agree_within_5_percent(tmp_path):
    r = next(r for r in RECORDINGS if r.fps == 30 and r.codec == "libx264" and r.mv_source == "auto")
    path = str(record(r, tmp_path))
    native = extract_video(path, MVConfig(source="native"), 2)
    again = extract_video(path, MVConfig(source="reencode"), 2)
    assert again.mv_source == "reencoded"
    a, b = mean_motion(native.motion.values, native.motion.valid), mean_motion(again.motion.values, again.motion.valid)
    assert disagreement(b, a) < 0.05, (a, b)


def test_x264_defaults_read_the_true_speed_within_5_percent(tmp_path):
    """x264's defaults (3 references, B-pyramid) let a P-frame refer up to 6 frames back here, and FFmpeg's MVs do
    not say which frame: each block's reference is found by matching pictures (mv_tensor.References). Without it
    (the nearest anchor assumed, as before) the speed read 11 % fast."""
    r = next(r for r in RECORDINGS if r.name == X264_DEFAULTS)
    path = str(record(r, tmp_path))
    with av.open(path) as c:
        assert max_reference_frames(c.streams.video[0].codec_context.extradata) == 4  # the SPS says: look
    f = extract_video(path, MVConfig(), 2)
    assert disagreement(mean_motion(f.motion.values, f.motion.valid), np.array(TRUTH)) < 0.05
    assumed = extract_video(path, MVConfig(backend="mvextractor"), 2)  # no pictures: the nearest anchor assumed
    assert disagreement(mean_motion(assumed.motion.values, assumed.motion.valid), np.array(TRUTH)) > 0.08


def test_one_reference_streams_are_not_matched(tmp_path):
    """A stream whose SPS keeps one reference frame always refers to the previous anchor: no pictures kept."""
    path = str(record(REFERENCE, tmp_path))
    with av.open(path) as c:
        assert max_reference_frames(c.streams.video[0].codec_context.extradata) == 1
    _, frames = pyav_reader.iter_frames(path)
    assert all(f.luma is None for f in frames)
    _, frames = pyav_reader.iter_frames(str(record(RECORDINGS[5], tmp_path)))
    assert all(f.luma is not None and f.luma.shape == (240, 320) for f in frames)


def test_a_portrait_clip_narrower_than_the_grid_has_motion_in_every_cell(tmp_path):
    """A portrait 240 x 320 phone clip is 15 macroblocks across for the grid's 20 columns: each block is spread
    over the cells it overlaps, so no column reads as stillness and the mean is the pan's speed (schema 1 put each
    block in one cell: 5 of 20 columns empty, the mean over all cells 0.75x)."""
    path = make_video(tmp_path / "portrait.mp4", width=240, height=320, dx=3, dy=2)  # px per frame at 25 fps
    f = extract_video(str(path), MVConfig(), 2)
    used = f.motion.values[f.motion.valid > 0][:, :, 2:-2, 2:-2]
    assert (np.abs(used).sum(axis=1) > 0).all()  # every inner cell of every segment
    truth = np.array([3 / 240, 2 / 320]) * 100 * 25
    assert disagreement(used.mean(axis=(0, 2, 3)), truth) < 0.05, used.mean(axis=(0, 2, 3))


def combing(picture: np.ndarray) -> float:
    """How much each line differs from the mean of its neighbours: a woven frame of a moving scene zigzags."""
    p = picture.astype(float).mean(axis=2)
    return float(np.abs(2 * p[1:-1] - p[:-2] - p[2:]).mean())


@pytest.mark.parametrize("r", [r for r in RECORDINGS if r.fields], ids=lambda r: r.name)
def test_interlaced_frames_reach_clip_without_combing(reference, tmp_path, r):
    """Each frame's two fields show the pan 1/50 s apart: where it moves, the woven frame is combed. CLIP gets the
    top field (the frame's own time) scaled to full height: much closer to the progressive frame than the weave."""
    path = str(record(r, tmp_path))
    f = extract_video(path, MVConfig(source=r.mv_source), 4)
    with av.open(path) as c:
        woven = {i: fr.to_ndarray(format="rgb24") for i, fr in enumerate(c.decode(video=0)) if i in f.frame_indices}
    for i, ref, got in zip(f.frame_indices, reference.frames, f.frames):
        assert combing(got) < 1.2 * combing(ref) and combing(woven[i]) > 1.5 * combing(ref), (
            i, combing(got), combing(ref), combing(woven[i]))
    native = extract_video(path, MVConfig(source="native"), 2)
    if r.codec == "libx264":  # what "auto" avoids: FFmpeg exports field macroblocks' vertical MVs in field lines
        y = mean_motion(native.motion.values, native.motion.valid)[1]
        assert y < 0.75 * TRUTH[1], y
