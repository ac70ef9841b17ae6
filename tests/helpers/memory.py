"""Peak memory of extracting one video in a fresh process, and the long 1080p videos it is measured on.

Shared by ``tests/test_resources.py`` and ``bench/bench_memory.py`` (which documents the method).
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from moclip.video.writer import write_frames

REPO = Path(__file__).resolve().parents[2]

_MEASURE = r"""
import json, sys, time
from moclip.config import ClipConfig, MVConfig
from moclip.video import extract_video

def hwm_kb():  # this process's peak RSS (VmHWM: reset at exec, unlike ru_maxrss, which keeps the parent's peak)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

def size(w, h, s=224):  # moclip.clip.target_size for ViT-B-32 (short side 224), without importing torch
    return (s, int(s * h / w)) if w <= h else (int(s * w / h), s)

before = hwm_kb()
t0 = time.perf_counter()
feats = extract_video(sys.argv[1], MVConfig(), ClipConfig().frames, size)
dt = time.perf_counter() - t0
peak = hwm_kb()
print(json.dumps({"before_kb": before, "peak_kb": peak, "seconds": dt, "n_frames": feats.motion.n_frames,
                  "n_mv_frames": feats.motion.n_mv_frames, "width": feats.info.width, "height": feats.info.height,
                  "rgb": [list(f.shape) for f in feats.frames]}))
"""


def make_1080p_video(path: str | Path, n_frames: int, fps: int = 25, width: int = 1920, height: int = 1080,
               period: int = 16) -> Path:
    """An H.264 video of ``n_frames``: a textured scene panning 2 px/frame back and forth (low motion)."""
    path = Path(path)
    rng = np.random.default_rng(0)
    pad = 2 * period + 16
    small = rng.integers(0, 256, ((height + pad) // 16 + 1, (width + pad) // 16 + 1, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))
    # one cycle of pre-converted frames, reused: encoding, not frame synthesis, is the cost
    cycle = []
    for k in range(period):
        x = 2 * k
        img = np.ascontiguousarray(big[8:8 + height, x:x + width])
        cycle.append(av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p"))
    cycle += cycle[-2:0:-1]  # ping-pong: no jump at the wrap
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        stream.options = {"preset": "ultrafast", "bf": "2", "g": "250", "crf": "30"}
        write_frames(out, stream, (cycle[i % len(cycle)] for i in range(n_frames)))
    return path


def measure(path: str | Path) -> dict:
    """Peak RSS of extracting ``path`` in a fresh process (KB values from VmHWM, plus MB fields)."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True,
                       cwd=REPO)
    m = json.loads(r.stdout.strip().splitlines()[-1])
    m["before_mb"] = m["before_kb"] / 1024
    m["peak_mb"] = m["peak_kb"] / 1024
    m["growth_mb"] = (m["peak_kb"] - m["before_kb"]) / 1024
    return m
