"""Every codec gets motion features: H.264, MPEG-4 Part 2 and MPEG-2 natively, HEVC, VP9, AV1, VP8, MJPEG and GIF
through the in-memory MPEG-4 Part 2 re-encode (``moclip.video.reencode``), with the motion's direction and size
right. Every clip is generated here with PyAV: a textured scene panning 2 px left and 1 px up per frame at 10 fps."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from helpers.recordings import velocity
from helpers.videos import encode

from moclip.config import ClipConfig, FeatureSettings, MVConfig, RunConfig
from moclip.corpus import load_unlabeled
from moclip.dataset import read_metadata
from moclip.indexing.shard import ShardTarget, index_shard
from moclip.video.extract import extract_video

SIZE = (160, 120)
FPS = 10  # helpers.videos.encode
PAN = (-2 / SIZE[0] * 100 * FPS, -1 / SIZE[1] * 100 * FPS)  # % of the frame size per second: -12.5 % x, -8.3 % y
AV1 = next((c for c in ("libaom-av1", "libsvtav1", "librav1e") if c in av.codecs_available), None)
# file, encoder, pixel format, MVs FFmpeg exports natively
CODECS = [
    ("h264.mp4", "libx264", "yuv420p", True),
    ("mpeg4.avi", "mpeg4", "yuv420p", True),
    ("mpeg2.mpg", "mpeg2video", "yuv420p", True),
    ("hevc.mp4", "libx265", "yuv420p", False),
    ("vp9.webm", "libvpx-vp9", "yuv420p", False),
    ("vp8.webm", "libvpx", "yuv420p", False),
    ("mjpeg.avi", "mjpeg", "yuvj420p", False),
    ("anim.gif", "gif", "rgb8", False),
    *([("av1.mkv", AV1, "yuv420p", False)] if AV1 else []),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("codecs")
    for name, encoder, pix_fmt, _ in CODECS:
        encode(root / name, encoder, n=24, pix_fmt=pix_fmt, size=SIZE)
    return root


def index(corpus: Path, out: Path, source: str):
    settings = FeatureSettings(mv=MVConfig(source=source), clip=ClipConfig(weights="none", frames=2, precision="fp32"))
    index_shard(load_unlabeled(corpus).to_dict("records"), "part-c-00000.parquet",
                ShardTarget(features=settings, run=RunConfig(), out=str(out), settings_hash="h"))
    return read_metadata(str(out)).set_index("video_id")


def test_codec_list_covers_the_issue():
    names = {c[0].split(".")[0] for c in CODECS}
    assert {"hevc", "vp9", "vp8", "mjpeg", "anim", "mpeg2"} <= names


@pytest.mark.parametrize(("name", "native"), [(c[0], c[3]) for c in CODECS])
def test_every_codec_gets_an_ok_row_with_the_pan_right(corpus, tmp_path, name, native):
    for source in ("auto", "reencode"):
        f = extract_video(str(corpus / name), MVConfig(segments=2, grid=(3, 4), source=source), 2)
        assert f.mv_source == ("native" if native and source == "auto" else "reencoded")
        assert f.motion.valid.sum() >= 20, f.motion.valid  # 24 frames, 2 of them I-frames (GOP 12)
        vx, vy = velocity(f.motion.values, f.motion.valid)
        if f.mv_source == "reencoded":  # the re-encoder's MVs follow the picture closely: within 10 %
            assert abs(vx / PAN[0] - 1) < 0.1 and abs(vy / PAN[1] - 1) < 0.1, (name, vx, vy)
        else:  # native encoders pick their own vectors (and intra blocks at the edges dilute less): the sign
            assert vx < 0.5 * PAN[0] and vy < 0.5 * PAN[1], (name, vx, vy)
        assert len(f.frames) == 2 and f.frames[0].shape[2] == 3  # CLIP frames come from the file itself


def test_sources_in_the_dataset(corpus, tmp_path):
    """Rows record where their motion came from; ``native`` keeps today's refusal for the other codecs, and its
    failed rows still say what the probe found."""
    auto = index(corpus, tmp_path / "auto", "auto")
    assert (auto["status"] == "ok").all(), auto["error"].dropna().to_dict()
    want = {c[0]: "native" if c[3] else "reencoded" for c in CODECS}
    assert auto["mv_source"].to_dict() == want
    native = index(corpus, tmp_path / "native", "native")
    hevc = native.loc["hevc.mp4"]
    assert hevc["status"] == "failed" and "codec 'hevc' has no motion vectors" in hevc["error"]
    assert "--mv-source auto or reencode" in hevc["error"]
    assert (hevc["codec"], hevc["width"], hevc["height"]) == ("hevc", 160, 120) and hevc["fps"] == 10
    assert (native.loc["h264.mp4", "status"], native.loc["h264.mp4", "mv_source"]) == ("ok", "native")


def test_every_mv_source_has_its_own_settings_hash():
    """reencode changes every row's MVs; auto re-encodes interlaced H.264, which native keeps (feature schema 2):
    three sources, three hashes, so a dataset never mixes them."""
    def h(source: str) -> str:
        return FeatureSettings(mv=MVConfig(source=source), clip=ClipConfig(precision="fp32")).settings_hash("x")

    assert len({h("auto"), h("native"), h("reencode")}) == 3


def test_a_still_gif_is_ok_with_no_motion(tmp_path):
    """A one-frame GIF (a still image): decodable, no motion at all. The row is ok with every segment marked as
    having no usable MVs, so labelling takes the CLIP-only path for it."""
    encode(tmp_path / "c" / "still.gif", "gif", n=1, pix_fmt="rgb8", size=SIZE)
    row = index(tmp_path / "c", tmp_path / "ds", "auto").loc["still.gif"]
    assert row["status"] == "ok", row["error"]
    assert row["mv_source"] == "reencoded" and row["n_frames"] == 1 and row["n_mv_frames"] == 0
