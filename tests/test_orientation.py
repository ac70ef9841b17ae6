"""Display orientation (moclip.video.orientation): one scene recorded upright, and recorded the way a phone held
upright or a mirroring camera writes it (coded sideways, with a display matrix), gives the same motion tensor and
upright CLIP frames. Real H.264 files written with PyAV, whose display matrices FFmpeg reads back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from helpers.videos import textured_background, write_frames

from moclip.config import MVConfig
from moclip.video import pyav_reader
from moclip.video.extract import extract_video
from moclip.video.orientation import UPRIGHT, Orientation, from_display_matrix

W, H, N = 320, 240, 24
DX, DY = 3, 1  # the displayed content moves right and a little down


def displayed_frames() -> list[np.ndarray]:
    """The scene as a viewer sees it: a textured pan, 320 x 240."""
    m = 4 * N
    big = textured_background(H + 2 * m, W + 2 * m, seed=3)
    return [big[m - DY * i:m - DY * i + H, m - DX * i:m - DX * i + W] for i in range(N)]


def coded_from_displayed(picture: np.ndarray, degrees: int, hflip: bool) -> np.ndarray:
    """What a camera stores so that turning it by ``degrees`` counter-clockwise and then mirroring it (PyAV's
    ``set_display_rotation``) shows ``picture``: the inverse of that."""
    if hflip:
        picture = picture[:, ::-1]
    return np.ascontiguousarray(np.rot90(picture, -degrees // 90))


def record(path: Path, degrees: int = 0, hflip: bool = False, codec: str = "libx264") -> Path:
    coded = [coded_from_displayed(f, degrees, hflip) for f in displayed_frames()]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.height, stream.width = coded[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"bf": "0", "preset": "veryfast", "tune": "zerolatency", "threads": "1", "refs": "1"}
        if degrees or hflip:
            stream.set_display_rotation(degrees, hflip=hflip)
        write_frames(out, stream, coded)
    return path


CASES = [(90, False, "rotate 90 counter-clockwise"), (-90, False, "rotate 90 clockwise"), (180, False, "rotate 180"),
         (0, True, "mirror left-right"), (90, True, "mirror left-right, then rotate 90 clockwise")]


def test_display_matrices_read_as_ffmpeg_turns_them(tmp_path):
    picture = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    for degrees in (0, 90, 180, 270, -90):
        for hflip, vflip in ((False, False), (True, False), (False, True)):
            with av.open(str(tmp_path / "x.mp4"), "w") as out:
                s = out.add_stream("libx264", rate=25)
                s.width, s.height, s.pix_fmt = W, H, "yuv420p"
                s.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
                write_frames(out, s, [picture])
            with av.open(str(tmp_path / "x.mp4")) as c:
                o = pyav_reader.frame_orientation(next(c.decode(video=0)))
            shown = np.rot90(picture, degrees // 90)  # PyAV: counter-clockwise, then the mirrors
            shown = shown[::-1] if vflip else shown
            shown = shown[:, ::-1] if hflip else shown
            assert np.array_equal(o.image(picture), shown), (degrees, hflip, vflip, o)
            assert o.display_size(W, H) == shown.shape[1::-1]
            assert (o.label is None) == (not (degrees % 360 or hflip or vflip) or (degrees == 180 and hflip and vflip))


def test_odd_matrices_get_the_nearest_quarter_turn_and_a_note():
    def matrix(degrees: float) -> np.ndarray:  # counter-clockwise, FFmpeg's av_display_rotation_set
        r = np.radians(degrees)
        c, s = np.cos(r) * 65536, np.sin(r) * 65536
        return np.array([c, -s, 0, s, c, 0, 0, 0, 1 << 30]).round().astype(np.int32)

    assert from_display_matrix(matrix(0)) == UPRIGHT and from_display_matrix(None) == UPRIGHT
    assert from_display_matrix(matrix(90)).label == "rotate 90 counter-clockwise"
    tilted = from_display_matrix(matrix(80))
    assert tilted.label.startswith("rotate 90 counter-clockwise (display matrix turns by 280 degrees, not a quarter")
    assert from_display_matrix(matrix(37)).ops == () and "not a quarter turn" in from_display_matrix(matrix(37)).label
    broken = from_display_matrix(np.zeros(9, np.int32))
    assert broken.upright and broken.label.startswith("malformed display matrix")
    assert Orientation(("clock",)).linear.tolist() == [[0, -1], [1, 0]]


@pytest.mark.parametrize("degrees,hflip,label", CASES)
def test_a_turned_recording_gives_the_upright_motion_and_frames(tmp_path, degrees, hflip, label):
    mv = MVConfig()
    upright = extract_video(str(record(tmp_path / "upright.mp4")), mv, 4)
    turned = extract_video(str(record(tmp_path / "turned.mp4", degrees, hflip)), mv, 4)
    assert upright.info.orientation.label is None and turned.info.orientation.label == label
    assert (turned.info.width, turned.info.height) == ((H, W) if degrees % 180 else (W, H))  # coded size
    a, b = upright.motion.values, turned.motion.values  # [T, 2, 15, 20] over the displayed picture
    assert a.shape == b.shape
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))  # away from the borders the pan uncovers
    vx, vy = a[inner][:, 0].mean(), a[inner][:, 1].mean()
    assert vx == pytest.approx(100 * DX / W * 25, rel=0.1) and vy == pytest.approx(100 * DY / H * 25, rel=0.2)
    assert b[inner][:, 0].mean() == pytest.approx(vx, rel=0.15)
    assert b[inner][:, 1].mean() == pytest.approx(vy, rel=0.15)
    # cell by cell, not only on average: the same field of motion (a sideways grid would leave cells empty)
    assert np.abs(a[inner] - b[inner])[:, 0].mean() < 0.15 * abs(vx)
    assert np.abs(a[inner] - b[inner])[:, 1].mean() < 0.3 * abs(vy)
    # CLIP sees upright frames: the same pictures, within codec noise
    for x, y in zip(upright.frames, turned.frames):
        assert x.shape == y.shape and np.abs(x.astype(int) - y.astype(int)).mean() < 6


def test_turned_recordings_through_the_reencode_path(tmp_path):
    mv = MVConfig(source="reencode")
    upright = extract_video(str(record(tmp_path / "upright.mp4")), mv, 2)
    turned = extract_video(str(record(tmp_path / "turned.mp4", 90, False)), mv, 2)
    assert turned.mv_source == "reencoded" and turned.info.orientation.label == "rotate 90 counter-clockwise"
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    for axis in (0, 1):
        assert turned.motion.values[inner][:, axis].mean() == pytest.approx(
            upright.motion.values[inner][:, axis].mean(), rel=0.15)


def test_windows_and_the_row_say_the_same_for_a_turned_recording(tmp_path):
    from moclip.config import ClipConfig, FeatureSettings, RunConfig, WindowConfig
    from moclip.dataset import Store, read_metadata
    from moclip.indexing.shard import ShardTarget, index_shard
    from moclip.video.windows import extract_windows

    up, turned = record(tmp_path / "upright.mp4"), record(tmp_path / "turned.mp4", -90, False)
    window = WindowConfig(seconds=0.4, stride=0.2, frames=2)
    a = extract_windows(str(up), MVConfig(segments=2), window)
    b = extract_windows(str(turned), MVConfig(segments=2), window)
    assert a.windows.start_s == b.windows.start_s
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert np.abs(a.motion.values[inner] - b.motion.values[inner]).mean() < 0.15 * np.abs(a.motion.values[inner]).mean()
    assert all(x.shape == y.shape for x, y in zip(a.frames, b.frames))

    settings = FeatureSettings(clip=ClipConfig(weights="none", frames=2, precision="fp32"))
    h = settings.settings_hash("random-init")
    videos = [{"video_id": p.name, "path": str(p), "label": None, "split": None, "group": None} for p in (up, turned)]
    index_shard(videos, "part-x.parquet", ShardTarget(features=settings, run=RunConfig(), out=str(tmp_path / "ds"),
                                                      settings_hash=h))
    meta = read_metadata(str(tmp_path / "ds")).set_index("video_id")
    assert meta.loc["turned.mp4", "orientation"] == "rotate 90 clockwise"
    assert pd.isna(meta.loc["upright.mp4", "orientation"]) and (meta["status"] == "ok").all()
    assert Store(str(tmp_path / "ds")).shard_names() == ["part-x.parquet"]


def test_anamorphic_video_reaches_clip_at_its_displayed_shape(tmp_path):
    """DVD and broadcast store wide pictures squeezed into fewer, wider-than-tall pixels (sample aspect ratio 4:3
    here): the CLIP frames have the displayed shape, and the motion (in % of the picture) is the same."""
    import cv2

    from moclip.clip.encoder import target_size

    # 336 coded pixels: 21 macroblocks across, more than the grid's 20 columns (narrower, some cells get no block:
    # a limit of its own, docs/MOTION_VECTORS.md)
    m, shown_w, coded_w = 8 * N, 448, 336
    big = textured_background(H + 2 * m, shown_w + 2 * m, seed=5)
    shown = [big[m:m + H, m - 4 * i:m - 4 * i + shown_w] for i in range(N)]  # 4 px/frame of 448
    small = cv2.resize(big, (big.shape[1] * 3 // 4, big.shape[0]), interpolation=cv2.INTER_AREA)
    squeezed = [small[m:m + H, 3 * m // 4 - 3 * i:3 * m // 4 - 3 * i + coded_w] for i in range(N)]  # 3 of 336
    paths = {}
    for name, frames, sar in (("upright", shown, None), ("anamorphic", squeezed, Fraction(4, 3))):
        with av.open(str(tmp_path / f"{name}.mp4"), "w") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.height, stream.width = frames[0].shape[:2]
            stream.pix_fmt = "yuv420p"
            if sar:
                stream.codec_context.sample_aspect_ratio = sar
            stream.options = {"bf": "0", "preset": "veryfast", "tune": "zerolatency", "threads": "1", "refs": "1"}
            write_frames(out, stream, frames)
        paths[name] = str(tmp_path / f"{name}.mp4")
    size = lambda w, h: target_size(w, h, 224)  # noqa: E731 - the index's CLIP input size
    upright = extract_video(paths["upright"], MVConfig(), 4, size)
    wide = extract_video(paths["anamorphic"], MVConfig(), 4, size)
    assert wide.info.sar == pytest.approx(4 / 3) and (wide.info.width, wide.info.height) == (coded_w, H)
    for x, y in zip(upright.frames, wide.frames):
        assert x.shape == y.shape == (224, 418, 3)  # as displayed (448 x 240), not as coded (336 x 240)
        assert np.abs(x.astype(int) - y.astype(int)).mean() < 12  # the same picture, less the squeeze's blur
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    assert wide.motion.values[inner][:, 0].mean() == pytest.approx(upright.motion.values[inner][:, 0].mean(), rel=0.1)
