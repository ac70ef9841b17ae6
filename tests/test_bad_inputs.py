"""Messy archives: every bad input ends as a `failed` row with a reason a user understands, or is indexed
correctly, and the rest of the shard is indexed. (More cases come with the reliability work.)"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from video_factory import make_video, textured_background, write_frames

from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.corpus import load_unlabeled
from moclip.dataset import read_metadata
from moclip.workers.shard_worker import index_shard

SETTINGS = FeatureSettings(clip=ClipConfig(weights="none", frames=2))


def encode(path: Path, codec: str, n: int = 12, pix_fmt: str = "yuv420p", size=(160, 120), **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bg = textured_background(size[1] + 64, size[0] + 64)
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = size[0], size[1], pix_fmt
        s.codec_context.time_base = Fraction(1, 10)
        if options:
            s.options = {k: str(v) for k, v in options.items()}
        write_frames(out, s, (bg[i:i + size[1], 2 * i:2 * i + size[0]] for i in range(n)))
    return path


def audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    good = make_video(root / "good.mp4", n_frames=20)
    data = good.read_bytes()
    for frac in (0.3, 0.6, 0.95):
        (root / f"truncated_{int(frac * 100)}.mp4").write_bytes(data[: int(len(data) * frac)])
    avi = make_video(root / "good_xvid_like.avi", codec="mpeg4", bframes=2, n_frames=20)
    (root / "truncated_avi.avi").write_bytes(avi.read_bytes()[: len(avi.read_bytes()) // 2])
    (root / "random.mp4").write_bytes(os.urandom(20_000))
    (root / "empty.avi").write_bytes(b"")
    audio_only(root / "audio_only.mp4")
    encode(root / "vp9.webm", "libvpx-vp9")
    encode(root / "mjpeg.avi", "mjpeg", pix_fmt="yuvj420p")
    encode(root / "anim.gif", "gif", pix_fmt="rgb8")
    encode(root / "all_intra.mp4", "libx264", n=12, g=1)
    encode(root / "single_frame.mp4", "libx264", n=1)
    encode(root / "short_clip.mp4", "libx264", n=3)
    (root / "wrong_extension.mkv").write_bytes(make_video(root / "tmp" / "x.mp4", n_frames=12).read_bytes())
    (root / "tmp" / "x.mp4").unlink()
    (root / "tmp").rmdir()
    (root / "dir_named.mp4").mkdir()
    bad_name = os.fsencode(str(root)) + b"/caf\xe9_latin1.mp4"  # not valid UTF-8
    with open(bad_name, "wb") as f:
        f.write(data)
    table = load_unlabeled(root)
    out = tmp_path_factory.mktemp("ds")
    res = index_shard(table.to_dict("records"), SETTINGS, str(out), "part-bad-00000.parquet", RunConfig(), "h")
    return table, res, read_metadata(str(out)).set_index("video_id"), out


def test_every_file_gets_one_row(indexed):
    table, res, meta, out = indexed
    assert len(meta) == len(table) == res.n_ok + res.n_failed
    assert meta.index.is_unique
    assert "dir_named.mp4" not in meta.index  # a directory is not a video
    pq.read_table(next(out.glob("part-*.parquet")))  # a valid Parquet file


@pytest.mark.parametrize("name, reason", [
    ("random.mp4", "not a readable video"),
    ("empty.avi", "empty file"),
    ("audio_only.mp4", "no video stream (streams: audio)"),
    ("vp9.webm", "no motion vectors"),
    ("mjpeg.avi", "no motion vectors"),
    ("anim.gif", "no motion vectors"),
    ("truncated_30.mp4", ""),
])
def test_failures_say_why(indexed, name, reason):
    _, _, meta, _ = indexed
    row = meta.loc[name]
    assert row["status"] == "failed", (name, row["error"])
    assert reason in row["error"] and len(row["error"]) > 8


@pytest.mark.parametrize("name", ["good.mp4", "good_xvid_like.avi", "all_intra.mp4", "single_frame.mp4",
                                  "short_clip.mp4", "wrong_extension.mkv"])
def test_odd_but_valid_videos_are_indexed(indexed, name):
    _, _, meta, _ = indexed
    row = meta.loc[name]
    assert row["status"] == "ok", row["error"]
    assert row["n_frames"] >= 1


def test_all_intra_video_has_no_motion_evidence(indexed):
    _, _, meta, _ = indexed
    assert meta.loc["all_intra.mp4", "n_mv_frames"] == 0


def test_non_utf8_file_name_is_indexed_with_a_readable_id(indexed):
    _, _, meta, _ = indexed
    names = [v for v in meta.index if v.startswith("caf")]
    assert len(names) == 1 and meta.loc[names[0], "status"] == "ok"
    names[0].encode("utf-8")  # storable and printable
