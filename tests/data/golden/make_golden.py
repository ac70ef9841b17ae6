"""Regenerate the golden MV files of this folder: .venv/bin/python tests/data/golden/make_golden.py (repo root).

The two clips are committed as they are: re-encoding them with another FFmpeg/PyAV build may give other bytes, and
then other motion vectors. Only rerun this on purpose (a change of the MV stage that is meant to change its output),
and say why in the commit. Per clip it stores, for each backend: the raw MVs of every frame (mv-extractor's (N, 10)
layout) and the pooled MV tensor (default MVConfig, T x 2 x H x W) with its per-segment validity.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # tests/: the helpers package

from helpers.videos import make_video  # noqa: E402

from moclip.config import MVConfig  # noqa: E402
from moclip.video import BACKENDS, extract_video  # noqa: E402
from moclip.video.frames import mv_columns  # noqa: E402

CLIPS = {  # name -> make_video arguments: a diagonal pan, 24 frames at 160x120, B-frames on
    "tiny_h264.mp4": {"codec": "libx264", "bframes": 2, "dx": 2.0, "dy": 1.0},
    "tiny_mpeg4.avi": {"codec": "mpeg4", "bframes": 2, "dx": -2.0, "dy": 1.0},
}


def golden(path: Path, backend: str) -> dict[str, np.ndarray]:
    _, frames = BACKENDS[backend](str(path))
    out = {}
    for f in frames:
        out[f"mvs_{f.index:03d}"] = mv_columns(f.mvs).copy()
        out[f"type_{f.index:03d}"] = np.array(f.pict_type)
    feats = extract_video(str(path), MVConfig(backend=backend), 1)
    out["tensor"] = feats.motion.values
    out["valid"] = feats.motion.valid
    return out


def main() -> None:
    for name, kwargs in CLIPS.items():
        path = HERE / name
        if "--reencode" in sys.argv or not path.exists():
            make_video(path, n_frames=24, width=160, height=120, seed=3, **kwargs)
        for backend in sorted(BACKENDS):
            np.savez_compressed(HERE / f"{path.stem}.{backend}.npz", **golden(path, backend))
        print(f"{name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
