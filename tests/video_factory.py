"""Real encoded test videos made with PyAV (H.264 / MPEG-4 Part 2, with or without B-frames)."""

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
