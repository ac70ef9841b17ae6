"""Peak memory of indexing one 1080p video, against its length: the decode streams, so it must stay flat.

Each measurement runs ``moclip.video.extract_video`` (default MVConfig, ClipConfig's K = 8 RGB frames resized to
CLIP's 224 px short side, exactly what a shard worker does per video) in a fresh Python process and reads that
process's peak RSS (``VmHWM`` in /proc/self/status) before and after. "growth" = peak after - peak before = what
extracting the video added on top of the imported libraries.

The videos are real H.264 1080p files made with PyAV/libx264 (preset ultrafast, B-frames on, a slow pan over a
textured scene: quick to encode, MVs on every frame). A true 1-hour 25 fps 1080p file takes too long to encode
here, so length is covered two ways: frame count (250 -> 4,000 frames at 25 fps) and duration (1 hour at 2 fps =
7,200 frames). Note the default ``--max-frames`` (54,000 = 36 min at 25 fps) refuses longer videos with a reason.

Usage: .venv/bin/python bench/bench_memory.py [--frames 250,1000,4000] [--hour-fps 2] [--out bench/results/memory.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(REPO / "tests"))
from helpers.memory import make_1080p_video, measure  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="250,1000,4000", help="frame counts of the 25 fps 1080p videos")
    ap.add_argument("--hour-fps", type=float, default=2.0, help="fps of the 1-hour video (0: skip it)")
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--keep", help="folder for the generated videos (default: a temp folder, removed)")
    args = ap.parse_args()

    cases = [(int(n), 25) for n in args.frames.split(",") if n.strip()]
    if args.hour_fps > 0:
        cases.append((int(round(3600 * args.hour_fps)), args.hour_fps))
    lines = [
        "| video (1080p H.264) | frames | duration | encode s | extract s | RSS before MB | peak RSS MB | growth MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = []
    with tempfile.TemporaryDirectory(prefix="moclip-bench-mem-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for n, fps in cases:
            path = folder / f"v1080-{n}f-{fps:g}fps.mp4"
            t0 = time.perf_counter()
            if not path.exists():
                make_1080p_video(path, n, fps=int(fps) if float(fps).is_integer() else fps)
            enc = time.perf_counter() - t0
            m = measure(path)
            results.append(m)
            dur = n / fps
            dur_s = f"{dur / 60:.0f} min" if dur >= 600 else f"{dur:.0f} s"
            lines.append(f"| {path.stat().st_size / 1e6:.1f} MB file | {m['n_frames']:,} | {dur_s} | {enc:.0f} "
                         f"| {m['seconds']:.0f} | {m['before_mb']:.0f} | {m['peak_mb']:.0f} | {m['growth_mb']:.0f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    growth = [m["growth_mb"] for m in results]
    lines += ["", f"Growth over the imported libraries: {min(growth):.0f}-{max(growth):.0f} MB; spread between the "
              f"shortest and the longest video {max(growth) - min(growth):.0f} MB (flat: the decode streams, MVs are "
              "pooled into at most 1,024 temporal bins, only the K RGB frames are kept)."]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
