"""Real encoded test videos made with PyAV: panning scenes in H.264 / MPEG-4 Part 2 (with or without B-frames),
small clips in any codec or container, and damaged or unusual files (truncated, VFR, audio-only)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from moclip.video.writer import write_frames  # noqa: F401 - re-exported for the tests


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    tex = np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))
    noise = rng.integers(0, 40, tex.shape, dtype=np.uint8)
    return (tex // 2 + noise).astype(np.uint8)


def make_video(
    path: str | Path, *, codec: str = "libx264", bframes: int = 0, dx: float = 3.0, dy: float = 0.0,
    n_frames: int = 50, width: int = 320, height: int = 240, fps: int = 25, gop: int = 12, seed: int = 0,
) -> Path:
    """A textured scene translating by (dx, dy) pixels per frame (whole-frame pan)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    margin = int(abs(dx) * n_frames + abs(dy) * n_frames) + 16
    big = textured_background(height + 2 * margin, width + 2 * margin, seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = gop
        stream.max_b_frames = bframes
        stream.codec_context.time_base = Fraction(1, fps)
        stream.thread_count = 1
        if codec == "libx264":
            tune = "film" if bframes else "zerolatency"
            stream.options = {"bf": str(bframes), "preset": "veryfast", "tune": tune, "threads": "1", "refs": "1",
                              "b-pyramid": "none"}
        else:
            stream.options = {"bf": str(bframes), "threads": "1"}
            stream.bit_rate = 800_000
        # content moves by +dx: the crop window moves by -dx
        write_frames(out, stream, (big[margin - round(dy * i):margin - round(dy * i) + height,
                                       margin - round(dx * i):margin - round(dx * i) + width] for i in range(n_frames)))
    return path


# --- small clips in any codec / container, and damaged or unusual files (tests/test_bad_inputs.py) -----------


def _pan(i: int, size: tuple[int, int], bg: np.ndarray) -> np.ndarray:
    """Frame i of a pan: the content moves 2 px left and 1 px up per frame."""
    return bg[i:i + size[1], 2 * i:2 * i + size[0]]


def encode(path: Path, codec: str, n: int = 12, pix_fmt: str = "yuv420p", size=(160, 120), fmt: str | None = None,
           **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    bg = textured_background(size[1] + n + 8, size[0] + 2 * n + 8)
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = size[0], size[1], pix_fmt
        s.codec_context.time_base = Fraction(1, 10)
        if options:
            s.options = {k: str(v) for k, v in options.items()}
        write_frames(out, s, (_pan(i, size, bg) for i in range(n)))
    return path


def encode_vfr(path: Path, pts_ms: list[int], size=(160, 120)) -> Path:
    """H.264 in MP4 with irregular timestamps (time base 1/1000 s): bursts of 10 ms and gaps of 1 s."""
    bg = textured_background(size[1] + len(pts_ms) + 8, size[0] + 2 * len(pts_ms) + 8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.codec_context.time_base = s.time_base = Fraction(1, 1000)
        s.options = {"preset": "veryfast", "bf": "0"}
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_pan(i, size, bg)), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def faststart(src: Path, dst: Path) -> Path:
    """Remux an MP4 with its index (moov) first, so that a cut file still has the index of every frame."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(src)) as inp, av.open(str(dst), "w", options={"movflags": "faststart"}) as out:
        s = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(video=0):
            if packet.dts is not None:
                packet.stream = s
                out.mux(packet)
    return dst


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


def make_untrimmed(
    path: str | Path, parts: list[tuple[float, float, int]], *, codec: str = "libx264", bframes: int = 0,
    width: int = 160, height: int = 120, fps: int = 25, gop: int = 12, seed: int = 0, fmt: str | None = None,
) -> Path:
    """One continuous shot whose pan changes part by part: ``parts`` = [(dx, dy, frames), ...] (0, 0: still)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = [(0.0, 0.0)]
    for dx, dy, n in parts:
        for _ in range(n):
            x, y = offsets[-1]
            offsets.append((x + dx, y + dy))
    offsets = offsets[1:]
    xs, ys = [round(o[0]) for o in offsets], [round(o[1]) for o in offsets]
    mx, my = max(map(abs, xs)) + 16, max(map(abs, ys)) + 16
    big = textured_background(height + 2 * my, width + 2 * mx, seed)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size, stream.max_b_frames, stream.thread_count = gop, bframes, 1
        stream.codec_context.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"bf": str(bframes), "preset": "veryfast", "threads": "1", "refs": "1",
                              "b-pyramid": "none", "tune": "film" if bframes else "zerolatency"}
        else:
            stream.options = {"bf": str(bframes), "threads": "1"}
            stream.bit_rate = 400_000
        write_frames(out, stream, (big[my - y:my - y + height, mx - x:mx - x + width] for x, y in zip(xs, ys)))
    return path


def make_scenes(
    path: str | Path, seconds: float, *, codec: str = "libx264", fps: int = 25, size: tuple[int, int] = (192, 144),
    scene_s: float = 3.1, fmt: str | None = None, vfr: bool = False, noise: bool = False, **options: object,
) -> Path:
    """A long-ish video of panning shots that cut to a new scene every ``scene_s`` seconds (x264 puts a keyframe on
    most cuts), encoded with the codec's own defaults (x264: B-pyramid, 3 references) unless ``options`` say
    otherwise (e.g. ``bf=2``, ``g=75``, ``open-gop=1``). ``vfr``: frame times step 40, 10, 10, 70, 30 ms; ``noise``:
    every frame's rows wobble sideways by their own random step, so blocks move each their own way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    scenes = [textured_background(h + 300, w + 600, seed=s) for s in range(4)]
    per_scene = round(scene_s * fps)
    rng = np.random.default_rng(0)
    tb = Fraction(1, 1000) if vfr else Fraction(1, fps)
    opts = {k: str(v) for k, v in options.items()}
    with av.open(str(path), "w", format=fmt) as out:
        s = out.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = tb
        if vfr:
            s.time_base = tb
        s.thread_count = 1
        if "g" in opts:
            s.gop_size = int(opts.pop("g"))
        if "bf" in opts and codec != "libx264":
            s.max_b_frames = int(opts.pop("bf"))
        if codec != "libx264":
            s.bit_rate = 600_000
        s.options = {"threads": "1", **opts}
        t = 0
        for i in range(round(seconds * fps)):
            scene, j = divmod(i, per_scene)
            x, y = (2 * j) % 500, j % 250
            picture = scenes[scene % 4][y:y + h, x:x + w + 16]
            if noise:  # bands of 16 rows, each shifted by its own 0-15 px this frame
                shift = rng.integers(0, 16, h // 16 + 1)
                picture = np.concatenate([picture[r:r + 16, s:s + w] for r, s in zip(range(0, h, 16), shift)])
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:, :w]), format="rgb24")
            if vfr:
                t += (40, 10, 10, 70, 30)[i % 5]
                frame.pts, frame.time_base = t, tb
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path
