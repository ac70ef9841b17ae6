"""Messy archives: every bad input ends as a `failed` row with a reason a user understands, or is indexed
correctly, and the rest of the shard is indexed. Every input is generated here with PyAV's encoders.

Frame sampling is by display-order frame index, not by time: a variable-frame-rate video gets its T MV
segments and K CLIP frames at equal shares of its *frames*, and MV velocities are per second, each frame's from its
own timestamps (see the VFR test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.recordings import velocity
from helpers.videos import audio_only, encode, encode_vfr, faststart, make_video

from moclip.config import ClipConfig, FeatureSettings, MVConfig, RunConfig
from moclip.corpus import load_unlabeled
from moclip.dataset import read_metadata
from moclip.indexing.shard import ShardTarget, index_shard
from moclip.video import sample_indices

pytestmark = pytest.mark.slow  # indexes a few dozen real videos in process

SETTINGS = FeatureSettings(clip=ClipConfig(weights="none", frames=2))
MV_SHAPE = [SETTINGS.mv.segments, 2, *SETTINGS.mv.grid]
AV1_ENCODERS = [c for c in ("libaom-av1", "libsvtav1", "librav1e") if c in av.codecs_available]
TRUNCATED_MOOV_LAST = (0.3, 0.6, 0.95)
TRUNCATED_MOOV_FIRST = (0.01, 0.3, 0.6, 0.99)
TRUNCATED_MKV = (0.05, 0.5, 0.99)
NOT_READABLE = "not a readable video file (Invalid data found when processing input)"
VFR_PTS_MS = [0, 40, 80, 400, 420, 440, 1500, 1533, 1566, 1600, 3000, 3010, 3020, 3030, 3040, 3050]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    good = make_video(root / "good.mp4", n_frames=20)
    data = good.read_bytes()
    for frac in TRUNCATED_MOOV_LAST:  # the index (moov) is written last: nothing before it is playable
        (root / f"truncated_{int(frac * 100)}.mp4").write_bytes(data[: int(len(data) * frac)])
    fast = faststart(good, root / "tmp" / "fast.mp4").read_bytes()
    for frac in TRUNCATED_MOOV_FIRST:
        (root / f"truncated_faststart_{int(frac * 100)}.mp4").write_bytes(fast[: int(len(fast) * frac)])
    mkv = make_video(root / "tmp" / "x.mkv", n_frames=20).read_bytes()
    for frac in TRUNCATED_MKV:
        (root / f"truncated_{int(frac * 100)}.mkv").write_bytes(mkv[: int(len(mkv) * frac)])
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
    shutil.rmtree(root / "tmp")
    encode(root / "uhd_4k.mp4", "libx264", n=3, size=(3840, 2160), preset="ultrafast")
    encode(root / "odd_321x241_mpeg4.avi", "mpeg4", size=(321, 241))  # libx264 refuses odd sizes in 4:2:0
    encode(root / "odd_321x241_h264_444.mp4", "libx264", size=(321, 241), pix_fmt="yuv444p")
    encode_vfr(root / "vfr.mp4", VFR_PTS_MS)
    encode(root / "bare_m4v_es.mp4", "mpeg4", fmt="m4v")  # MPEG-4 Part 2 elementary stream, no container
    if AV1_ENCODERS:
        encode(root / "av1.mp4", AV1_ENCODERS[0], n=6)
    (root / "dir_named.mp4").mkdir()
    bad_name = os.fsencode(str(root)) + b"/caf\xe9_latin1.mp4"  # not valid UTF-8
    with open(bad_name, "wb") as f:
        f.write(data)
    table = load_unlabeled(root)
    out = tmp_path_factory.mktemp("ds")
    res = index_shard(table.to_dict("records"), "part-bad-00000.parquet",
                      ShardTarget(features=SETTINGS, run=RunConfig(), out=str(out), settings_hash="h"))
    return table, res, read_metadata(str(out)).set_index("video_id"), out


@pytest.fixture(scope="module")
def features(indexed):
    """The full rows (features included) of the module's shard, by video_id."""
    out = indexed[3]
    return pq.read_table(next(out.glob("part-*.parquet"))).to_pandas().set_index("video_id")


def pan_velocity(row) -> tuple[float, float]:
    """Mean (x, y) velocity in % of the frame size per second over the cells that got MVs."""
    return velocity(np.asarray(row["mv"]).reshape(row["mv_shape"]), np.asarray(row["mv_valid"]))


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
    ("truncated_30.mp4", NOT_READABLE),
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


def test_all_intra_video_has_no_motion_evidence(features):
    row = features.loc["all_intra.mp4"]
    assert row["n_mv_frames"] == 0 and list(row["mv_valid"]) == [0] * SETTINGS.mv.segments
    assert not np.asarray(row["mv"]).any()  # no motion recorded, and no segment claims any


@pytest.mark.parametrize(("name", "valid"), [("single_frame.mp4", [0] * 8),
                                             ("short_clip.mp4", [0, 0, 1, 0, 0, 1, 0, 0])])
def test_segments_without_frames_have_no_usable_mvs(features, name, valid):
    """Fewer frames than T segments: a segment with no P-frame says so (mv_valid 0) and holds zeros."""
    row = features.loc[name]
    assert list(row["mv_valid"]) == valid
    mv = np.asarray(row["mv"]).reshape(row["mv_shape"])
    assert not mv[np.asarray(valid) == 0].any()


def test_non_utf8_file_name_is_indexed_with_a_readable_id(indexed):
    _, _, meta, _ = indexed
    names = [v for v in meta.index if v.startswith("caf")]
    assert len(names) == 1 and meta.loc[names[0], "status"] == "ok"
    names[0].encode("utf-8")  # storable and printable


def test_4k_video_is_indexed_at_the_configured_grid(features):
    row = features.loc["uhd_4k.mp4"]
    assert row["status"] == "ok", row["error"]
    assert (row["width"], row["height"], row["n_frames"]) == (3840, 2160, 3)
    assert list(row["mv_shape"]) == MV_SHAPE and row["mv_valid"].sum() == 2  # two P-frames
    assert list(row["clip_shape"])[0] == 2 and len(row["clip"]) == np.prod(row["clip_shape"])
    vx, vy = pan_velocity(row)  # 2 px left, 1 px up per frame at 10 fps, in % of the frame size per second
    assert vx == pytest.approx(-2 / 3840 * 1000, rel=0.2) and vy == pytest.approx(-1 / 2160 * 1000, rel=0.2)


@pytest.mark.parametrize("name", ["odd_321x241_mpeg4.avi", "odd_321x241_h264_444.mp4"])
def test_odd_frame_sizes_are_indexed(features, name):
    row = features.loc[name]
    assert row["status"] == "ok", row["error"]
    assert (row["width"], row["height"], row["n_frames"]) == (321, 241, 12)
    assert list(row["mv_shape"]) == MV_SHAPE and list(row["clip_shape"])[0] == 2
    vx, vy = pan_velocity(row)
    assert vx == pytest.approx(-2 / 321 * 1000, rel=0.2) and vy == pytest.approx(-1 / 241 * 1000, rel=0.2)


def test_variable_frame_rate_is_sampled_by_frame_index(features):
    row = features.loc["vfr.mp4"]
    n = len(VFR_PTS_MS)
    assert row["status"] == "ok", row["error"]
    assert row["n_frames"] == n and row["duration_s"] == pytest.approx(VFR_PTS_MS[-1] / 1000, abs=0.1)
    # CLIP frames at the centres of K equal shares of the frames (by time they would be near 0.76 s and 2.29 s)
    assert list(row["frame_indices"]) == sample_indices(n, 2) == [4, 12]
    # MV segments: n / T = 2 frames each, whatever the time gaps; frame 0 is the I-frame
    assert list(row["mv_valid"]) == [1] + [2] * (SETTINGS.mv.segments - 1)
    # per second, frame by frame: the content moves 2 px left each frame, so a 10 ms step is 110x a 1.1 s gap's speed
    mv = np.asarray(row["mv"]).reshape(row["mv_shape"])
    step_s = np.diff(VFR_PTS_MS) / 1000  # frame i + 1 against frame i
    for seg in range(1, SETTINGS.mv.segments):
        frames = [2 * seg, 2 * seg + 1]  # n / T = 2 frames a segment
        want = np.mean([-2 / 160 * 100 / step_s[i - 1] for i in frames])
        cells = (mv[seg] != 0).any(axis=0)
        assert mv[seg, 0][cells].mean() == pytest.approx(want, rel=0.2), (seg, want)


def test_bare_mpeg4_elementary_stream_named_mp4_is_probed(indexed, features):
    path = Path(indexed[0].set_index("video_id").loc["bare_m4v_es.mp4", "path"])
    assert path.read_bytes()[:4] == b"\x00\x00\x01\xb0"  # visual_object_sequence start code, no MP4 box
    row = features.loc["bare_m4v_es.mp4"]
    assert row["status"] == "ok", row["error"]
    assert row["codec"] == "mpeg4" and row["n_frames"] == 12 and row["n_mv_frames"] == 11
    assert list(row["mv_shape"]) == MV_SHAPE and list(row["clip_shape"])[0] == 2


@pytest.mark.parametrize("name", ["vp9.webm", "mjpeg.avi", "anim.gif", "av1.mp4"])
def test_codecs_without_native_motion_vectors_are_reencoded(features, name):
    """The default ``mv_source="auto"``: codecs FFmpeg exports no MVs for get them from a re-encode
    (tests/test_codecs.py checks each codec's motion in detail)."""
    if name == "av1.mp4" and not AV1_ENCODERS:
        pytest.skip("no AV1 encoder (libaom-av1, libsvtav1, librav1e) in this PyAV build")
    row = features.loc[name]
    assert row["status"] == "ok", row["error"]
    assert row["mv_source"] == "reencoded" and row["n_mv_frames"] > 0
    vx, vy = pan_velocity(row)
    assert vx < 0 and vy < 0  # the content moves left and up


# (file, status, reason): the MP4 index (moov) written last makes nothing before it playable; with the index first,
# decoding stops at the packet the cut shortened and keeps the frames before it (docs/RELIABILITY.md)
TRUNCATED = [
    *((f"truncated_{int(f * 100)}.mp4", "failed", NOT_READABLE) for f in TRUNCATED_MOOV_LAST),
    ("truncated_faststart_1.mp4", "failed", "no decodable frames"),
    *((f"truncated_faststart_{int(f * 100)}.mp4", "ok", None) for f in TRUNCATED_MOOV_FIRST[1:]),
    ("truncated_5.mkv", "failed", "no decodable frames"),
    *((f"truncated_{int(f * 100)}.mkv", "ok", None) for f in TRUNCATED_MKV[1:]),
    ("truncated_avi.avi", "ok", None),
]


@pytest.mark.parametrize(("name", "status", "reason"), TRUNCATED)
def test_truncated_files_fail_with_a_reason_or_keep_the_frames_that_decode(features, name, status, reason):
    row = features.loc[name]
    assert row["status"] == status, (name, row["error"])
    if status == "failed":
        assert row["error"] == reason
    else:
        assert 1 <= row["n_frames"] < 20 and pd.isna(row["error"])  # fewer frames than the whole file: cut
        assert list(row["mv_shape"]) == MV_SHAPE and list(row["clip_shape"])[0] == 2


CAP = 15


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    """A corpus indexed with a small frame cap (MVConfig.max_frames, the CLI's --max-frames)."""
    root = tmp_path_factory.mktemp("long")
    encode(root / "at_cap.mp4", "libx264", n=CAP)
    encode(root / "over_cap.mp4", "libx264", n=CAP + 1)
    encode(root / "far_over_cap.mp4", "libx264", n=4 * CAP)
    settings = FeatureSettings(mv=MVConfig(max_frames=CAP), clip=SETTINGS.clip)
    out = tmp_path_factory.mktemp("ds_long")
    index_shard(load_unlabeled(root).to_dict("records"), "part-long-00000.parquet",
                ShardTarget(features=settings, run=RunConfig(), out=str(out), settings_hash="h"))
    return read_metadata(str(out)).set_index("video_id")


def test_frame_cap_fails_over_long_videos_only(capped):
    assert capped.loc["at_cap.mp4", "status"] == "ok", capped.loc["at_cap.mp4", "error"]
    assert capped.loc["at_cap.mp4", "n_frames"] == CAP
    for name in ("over_cap.mp4", "far_over_cap.mp4"):
        assert capped.loc[name, "status"] == "failed"
        assert f"more than {CAP} frames" in capped.loc[name, "error"] and "max_frames" in capped.loc[name, "error"]


# Unreadable files and folders, checked in a child process: as root (as in CI) permission bits do not stop reads,
# so there the child drops the capabilities that override them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) before
# it lists and indexes the corpus. It stays root, so it can still read this Python and the test's tmp dirs.
_CHILD = """
import sys
from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.corpus import load_unlabeled
from moclip.indexing.shard import ShardTarget, index_shard
root, out = sys.argv[1:3]
settings = FeatureSettings(clip=ClipConfig(weights="none", frames=2))
index_shard(load_unlabeled(root).to_dict("records"), "part-perm-00000.parquet",
            ShardTarget(features=settings, run=RunConfig(), out=out, settings_hash="h"))
"""


def _drop_dac_override() -> None:
    """preexec_fn: remove CAP_DAC_OVERRIDE (1) and CAP_DAC_READ_SEARCH (2) from the bounding set (PR_CAPBSET_DROP)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _run_unprivileged(args: list[str]) -> subprocess.CompletedProcess:
    kwargs = {"preexec_fn": _drop_dac_override} if os.geteuid() == 0 else {}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def unreadable(tmp_path_factory):
    base = tmp_path_factory.mktemp("perm")
    secret = base / "secret"
    secret.write_bytes(b"x")
    secret.chmod(0)
    try:
        probe = _run_unprivileged(["-c", f"open({str(secret)!r}).read()"])
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot start a process without the permission override here: {e}")
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"permission bits do not stop reads here: {probe.stderr.strip()[-300:]}")
    root, out = base / "corpus", base / "ds"
    make_video(root / "readable.mp4", n_frames=12)
    make_video(root / "secret.mp4", n_frames=12).chmod(0)
    make_video(root / "locked" / "inside.mp4", n_frames=12)
    (root / "locked").chmod(0)
    try:
        child = _run_unprivileged(["-c", _CHILD, str(root), str(out)])
        assert child.returncode == 0, child.stderr[-2000:]
        yield read_metadata(str(out)).set_index("video_id"), child.stderr, root
    finally:
        (root / "locked").chmod(0o755)  # so that pytest can clean up when not root


def test_unreadable_file_fails_with_permission_denied(unreadable):
    meta, _, root = unreadable
    assert meta.loc["readable.mp4", "status"] == "ok", meta.loc["readable.mp4", "error"]
    assert meta.loc["secret.mp4", "status"] == "failed"
    assert meta.loc["secret.mp4", "error"] == f"permission denied: {root / 'secret.mp4'}"


def test_unreadable_folder_is_reported_not_fatal(unreadable):
    meta, stderr, root = unreadable
    assert sorted(meta.index) == ["readable.mp4", "secret.mp4"]  # its videos cannot be listed
    assert f"cannot list {root / 'locked'}" in stderr and "permission denied" in stderr.lower(), stderr[-2000:]
