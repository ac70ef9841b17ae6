"""Re-encoded vs native motion vectors on the same H.264 / MPEG-4 files: cost and agreement.

    .venv/bin/python bench/bench_reencode.py [--out bench/results/reencode.md]

1. Cost: CPU seconds of ``extract_video`` (decode + MVs + K RGB frames, no CLIP) per video with
   ``mv_source="native"`` and ``"reencode"``, on generated 320x240 and 1280x720 pans, the peer's 720p samples and
   the real UCF101 clips (when ../shared is there); the ratio is measured in the same run, video by video.
2. Agreement on a known pan: generated clips whose content moves by (dx, dy) px per frame; per segment the mean
   velocity's direction (angle to the truth) and magnitude (ratio to the truth), native and re-encoded.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "bench")]

from common import cpu_description, write_table  # noqa: E402
from helpers.videos import make_video  # noqa: E402

from moclip.config import MVConfig  # noqa: E402
from moclip.video.extract import extract_video  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
PANS = [(3.0, 0.0), (-2.0, 1.5), (0.0, -4.0)]  # px per frame (content motion)


def cpu_seconds(path: str, source: str, reps: int) -> float:
    best = math.inf
    for _ in range(reps):
        t = time.process_time()
        extract_video(path, MVConfig(source=source), 8)
        best = min(best, time.process_time() - t)
    return best


def segment_agreement(path: Path, dx: float, dy: float, w: int, h: int, source: str) -> tuple[float, float]:
    """(worst angle in degrees to the true pan, median magnitude ratio) over the segments."""
    f = extract_video(str(path), MVConfig(segments=4, grid=(15, 20), source=source), 2)
    truth = np.array([dx / w * 100, dy / h * 100]) * 25  # % of the frame size per second (make_video: 25 fps)
    angles, ratios = [], []
    for seg, n in zip(f.motion.values, f.motion.valid):
        if n == 0:
            continue
        cells = (seg != 0).any(axis=0)
        v = np.array([seg[0][cells].mean(), seg[1][cells].mean()])
        cos = float(v @ truth / (np.linalg.norm(v) * np.linalg.norm(truth)))
        angles.append(math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
        ratios.append(float(np.linalg.norm(v) / np.linalg.norm(truth)))
    return max(angles), float(np.median(ratios))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "reencode.md"))
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    lines = ["Re-encoded (`--mv-source reencode`: decode, scale to 340x256, MPEG-4 Part 2 in memory, its MVs) vs "
             f"native MVs on the same files; {cpu_description()}.", ""]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files: list[tuple[str, Path]] = []
        for codec, name in (("libx264", "H.264"), ("mpeg4", "MPEG-4 Part 2")):
            for w, h in ((320, 240), (1280, 720)):
                ext = "mp4" if codec == "libx264" else "avi"
                p = make_video(tmp / f"{codec}_{w}.{ext}", codec=codec, bframes=0 if codec == "libx264" else 2,
                               dx=3, n_frames=150, width=w, height=h)
                files.append((f"generated {name} {w}x{h}, 150 frames", p))
        peer = sorted((SHARED / "peer" / "mv-extractor").glob("*.mp4"))[:2]
        files += [(f"peer sample {p.name}", p) for p in peer]
        files += [(f"UCF101 {p.name}", p) for p in sorted((SHARED / "real-clips" / "UCF-101").glob("*/*.avi"))[:4]]
        lines += ["| video | native CPU s | re-encode CPU s | re-encode / native |", "|---|---:|---:|---:|"]
        ratios = []
        for label, p in files:
            native = cpu_seconds(str(p), "native", args.reps)
            reenc = cpu_seconds(str(p), "reencode", args.reps)
            ratios.append(reenc / native)
            lines.append(f"| {label} | {native:.3f} | {reenc:.3f} | {reenc / native:.2f}x |")
        lines += ["", f"Re-encoding costs {min(ratios):.2f}x to {max(ratios):.2f}x the native path's CPU time "
                  f"(median {np.median(ratios):.2f}x; best of {args.reps} runs each).", ""]

        lines += ["Agreement with a known pan (content moving dx, dy px per frame; 4 segments, 15x20 cells): the worst "
                  "segment's angle to the true direction, and the median segment's magnitude / true magnitude.", "",
                  "| clip | pan (px/frame) | native: worst angle, magnitude | re-encoded: worst angle, magnitude |",
                  "|---|---|---:|---:|"]
        for codec, name, bf in (("libx264", "H.264", 0), ("mpeg4", "MPEG-4 Part 2 (B-frames)", 2)):
            for dx, dy in PANS:
                w, h = 320, 240
                p = make_video(tmp / f"pan_{codec}_{dx}_{dy}.{'mp4' if bf == 0 else 'avi'}", codec=codec, bframes=bf,
                               dx=dx, dy=dy, n_frames=48, width=w, height=h)
                na, nm = segment_agreement(p, dx, dy, w, h, "native")
                ra, rm = segment_agreement(p, dx, dy, w, h, "reencode")
                lines.append(f"| {name} {w}x{h} | ({dx:g}, {dy:g}) | {na:.1f}°, {nm:.2f} | {ra:.1f}°, {rm:.2f} |")
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
