"""Generated benchmark videos: H.264 and MPEG-4 Part 2 at 320x240 and 1280x720 (a panning, textured scene)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from moclip.video.writer import write_frames

CODECS = {"H.264": ("libx264", "mp4"), "MPEG-4 Part 2": ("mpeg4", "avi")}
SIZES = {"320x240": (320, 240), "720p": (1280, 720)}


def make_clip(path: Path, codec: str, width: int, height: int, n_frames: int = 150, seed: int = 0) -> Path:
    """A textured scene panning diagonally at a few pixels per frame, IBBP GOP of 12, 25 fps."""
    rng = np.random.default_rng(seed)
    margin = 4 * n_frames + 16
    tex = rng.integers(0, 256, ((height + 2 * margin) // 8 + 1, (width + 2 * margin) // 8 + 1, 3), np.uint8)
    big = np.kron(tex, np.ones((8, 8, 1), np.uint8))
    dx, dy = 2 + seed % 3, 1
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt, s.gop_size, s.max_b_frames = width, height, "yuv420p", 12, 2
        s.codec_context.time_base = Fraction(1, 25)
        s.options = {"bf": "2", "threads": "1"} | ({"preset": "veryfast"} if codec == "libx264" else {})
        if codec == "mpeg4":
            s.bit_rate = 2_000_000 if width > 640 else 600_000
        write_frames(out, s, (big[margin - dy * i:margin - dy * i + height, margin - dx * i:margin - dx * i + width]
                              for i in range(n_frames)))
    return path


def generated_corpora(root: Path, per_set: int = 4) -> dict[str, list[str]]:
    """{"H.264 320x240": [files], ...}: ``per_set`` clips of 150 frames per codec and size (half as many at 720p)."""
    out: dict[str, list[str]] = {}
    for cname, (codec, ext) in CODECS.items():
        for sname, (w, h) in SIZES.items():
            n = per_set if w <= 640 else max(1, per_set // 2)
            d = root / f"{codec}-{sname}"
            d.mkdir(parents=True, exist_ok=True)
            out[f"{cname} {sname}"] = [str(make_clip(d / f"clip{i}.{ext}", codec, w, h, seed=i)) for i in range(n)]
    return out
