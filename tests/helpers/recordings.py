"""One scene recorded many ways (docs/MOTION_VECTORS.md, "One motion however it was recorded"): a textured camera
pan at a fixed speed in pixels per *second*, written at any frame rate or timestamps, by any encoder, coded
sideways or mirrored with a display matrix, or squeezed anamorphic. Every recording of it should give the same
motion tensor: tests/test_recordings.py asserts it, bench/bench_recordings.py measures it for the README."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

W, H = 320, 240  # the displayed picture
SPEED = (150.0, 75.0)  # the content moves right and down, px per second of the displayed picture
TRUTH = (100 * SPEED[0] / W, 100 * SPEED[1] / H)  # % of the displayed frame per second: 46.875, 31.25
DURATION_S = 2.0  # and half a frame more for the last frame's second field
OVERSAMPLE = 4  # rendered at 4x and averaged down: every frame rate above lands on whole 4x pixels
X264_DEFAULTS = "H.264 x264 defaults (3 B-frames, B-pyramid, 3 refs)"  # what web video is
SIMPLE_X264 = {"bf": "0", "preset": "veryfast", "tune": "zerolatency", "threads": "1", "refs": "1"}


@dataclass(frozen=True)
class Recording:
    """How the scene is written: frame times, encoder and its options, and how the picture is stored."""

    name: str
    fps: int = 25
    drop_every: int = 0  # drop every n-th frame (variable frame rate: the timestamps keep the gaps)
    codec: str = "libx264"
    options: dict = field(default_factory=lambda: dict(SIMPLE_X264))
    ext: str = "mp4"
    degrees: int = 0  # counter-clockwise display rotation of a sideways-coded picture (PyAV's convention)
    hflip: bool = False
    sar: Fraction | None = None  # anamorphic: the picture is stored this many times narrower
    mv_source: str = "auto"
    bit_rate: int | None = None
    fields: bool = False  # interlaced: each frame's bottom field shows the scene half a frame time later


RECORDINGS = [
    Recording("H.264 25 fps"),  # the reference
    Recording("H.264 30 fps", fps=30),
    Recording("H.264 50 fps", fps=50),
    Recording("H.264 60 fps", fps=60),
    Recording("H.264 25 fps, every 3rd frame dropped (VFR)", drop_every=3),
    Recording(X264_DEFAULTS, options={"threads": "1"}),
    Recording("MPEG-4 Part 2, 2 B-frames", codec="mpeg4", options={"bf": "2", "threads": "1"}, ext="avi",
              bit_rate=2_000_000),
    Recording("H.264 30 fps, re-encoded MVs", fps=30, mv_source="reencode"),
    Recording("HEVC 30 fps (re-encoded MVs)", fps=30, codec="libx265", options={"x265-params": "log-level=none"}),
    Recording("VP9 30 fps (re-encoded MVs)", fps=30, codec="libvpx-vp9",
              options={"deadline": "realtime", "cpu-used": "8"}, ext="webm"),
    Recording("rotated 90", degrees=90),
    Recording("rotated 180", degrees=180),
    Recording("rotated 270", degrees=-90),
    Recording("mirrored", hflip=True),
    Recording("anamorphic (stored 240 px wide, SAR 4:3)", sar=Fraction(4, 3)),
    Recording("MPEG-2 interlaced (fields 1/50 s apart)", codec="mpeg2video", ext="mpg", bit_rate=3_000_000,
              options={"bf": "2", "flags": "+ilme+ildct", "top": "1", "threads": "1"}, fields=True),
    Recording("H.264 interlaced (MBAFF, fields 1/50 s apart; re-encoded MVs)", fields=True,
              options={**SIMPLE_X264, "x264-params": "interlaced=1:tff=1"}),
]
REFERENCE = RECORDINGS[0]


def frame_times(r: Recording) -> list[float]:
    n = int(DURATION_S * r.fps)
    return [i / r.fps for i in range(n) if not (r.drop_every and i % r.drop_every == r.drop_every - 1)]


def displayed(times: list[float], seed: int = 7) -> list[np.ndarray]:
    """The scene as a viewer sees it at ``times``: a W x H crop of a textured plane that moves at SPEED."""
    k = OVERSAMPLE
    reach = [int(np.ceil(s * (DURATION_S + 0.05))) + 8 for s in SPEED]
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, ((H + reach[1]) // 8 + 2, (W + reach[0]) // 8 + 2, 3), dtype=np.uint8)
    plane = np.kron(cells, np.ones((8 * k, 8 * k, 1), dtype=np.uint8)) // 2
    plane = plane + rng.integers(0, 40, plane.shape, dtype=np.uint8)  # fine grain for the motion search
    out = []
    for t in times:
        x, y = (round(k * (r - s * t)) for r, s in zip(reach, SPEED))  # the crop moves against the content
        crop = plane[y:y + k * H, x:x + k * W]
        out.append(cv2.resize(crop, (W, H), interpolation=cv2.INTER_AREA))
    return out


def coded_from_displayed(picture: np.ndarray, degrees: int, hflip: bool) -> np.ndarray:
    """What a camera stores so that turning it by ``degrees`` counter-clockwise and then mirroring it (PyAV's
    ``set_display_rotation``) shows ``picture``: the inverse of that."""
    if hflip:
        picture = picture[:, ::-1]
    return np.ascontiguousarray(np.rot90(picture, -degrees // 90))


def record(r: Recording, folder: Path) -> Path:
    """Write the scene as ``r`` says; the file's path."""
    times = frame_times(r)
    frames = displayed(times)
    if r.fields:  # woven: even lines at t, odd lines half a frame time later
        later = displayed([t + 0.5 / r.fps for t in times])
        for f, g in zip(frames, later):
            f[1::2] = g[1::2]
    frames = [coded_from_displayed(f, r.degrees, r.hflip) for f in frames]
    if r.sar:
        frames = [cv2.resize(f, (round(f.shape[1] / r.sar), f.shape[0]), interpolation=cv2.INTER_AREA)
                  for f in frames]
    path = folder / (r.name.split(" (")[0].replace(" ", "_").replace(",", "").replace(".", "") + f".{r.ext}")
    with av.open(str(path), "w") as out:
        stream = out.add_stream(r.codec, rate=r.fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, r.fps)
        stream.options = dict(r.options)
        stream.thread_count = 1
        if r.bit_rate:
            stream.bit_rate = r.bit_rate
        if r.sar:
            stream.codec_context.sample_aspect_ratio = r.sar
        if r.degrees or r.hflip:
            stream.set_display_rotation(r.degrees, hflip=r.hflip)
        for t, picture in zip(times, frames):  # each frame at its own time (dropped frames leave gaps)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = round(t * r.fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def velocity(values: np.ndarray, valid: np.ndarray) -> tuple[float, float]:
    """Mean (x, y) over the cells that got MVs, in the segments that got any (% of the frame per second)."""
    used = values[valid > 0]
    cells = (used != 0).any(axis=1)
    return float(used[:, 0][cells].mean()), float(used[:, 1][cells].mean())


def mean_motion(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The mean (x, y) velocity over the inner cells (the pan uncovers the border ones) of segments with MVs."""
    used = values[valid > 0][:, :, 2:-2, 2:-2]
    return used.mean(axis=(0, 2, 3))


def disagreement(v: np.ndarray, ref: np.ndarray) -> float:
    """|v - ref| / |ref|: 0 when the two motions are the same vector."""
    return float(np.linalg.norm(v - ref) / np.linalg.norm(ref))
