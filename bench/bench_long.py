"""One long video indexed with windows, on 1 and on 2 local Dask workers: the speed-up of decoding it in ranges
(``moclip.video.ranges``), measured in one run, and the rows compared (MVs bit for bit).

  1 worker, whole     --split-s 0: the video decoded whole, as before ranges
  1 worker, ranges    its ranges one after another on the one worker (the cost of splitting)
  2 workers, ranges   its ranges on both workers (the goal: >= 1.8x the 1-worker whole decode)

The video (made once, cached): ``--minutes`` of 720p H.264 at 25 fps, x264 preset veryfast (B-pyramid, long GOP
with a keyframe at most every 10 s and at scene cuts), panning textured scenes that cut every 37 s.

Usage: .venv/bin/python bench/bench_long.py [--minutes 60] [--out bench/results/long.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from common import cpu_description, write_table  # noqa: E402

CACHE = Path(os.environ.get("MOCLIP_BENCH_CACHE", Path.home() / ".cache" / "moclip-bench"))


def make_long_video(path: Path, minutes: float, size: tuple[int, int] = (1280, 720), fps: int = 25) -> Path:
    """``minutes`` of panning textured scenes (a cut every 37 s), x264 veryfast: made once, then reused."""
    from helpers.videos import textured_background

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    scenes = [textured_background(h + 200, w + 400, seed=s) for s in range(6)]
    tmp = path.with_suffix(".part.mp4")
    t0 = time.perf_counter()
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = Fraction(1, fps)
        s.options = {"preset": "veryfast", "keyint": str(10 * fps)}
        per_scene = 37 * fps
        for i in range(round(minutes * 60 * fps)):
            scene, j = divmod(i, per_scene)
            x, y = (3 * j) % 400, (j // 2) % 200
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(scenes[scene % 6][y:y + h, x:x + w]),
                                               format="rgb24")
            for p in s.encode(frame):
                out.mux(p)
            if i % (fps * 600) == 0:
                print(f"  making {path.name}: {i / fps / 60:.0f} of {minutes:g} min "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        for p in s.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def index(corpus: Path, out: Path, workers: int, split_s: float, range_s: float) -> float:
    """``moclip index`` as a user runs it (its own local Prefect server and Dask cluster); its wall time."""
    cmd = [str(REPO / ".venv" / "bin" / "moclip"), "index", str(corpus), "--out", str(out), "--layout", "unlabeled",
           "--clip-weights", "none", "--frames", "2", "--window", "4", "--workers", str(workers),
           "--split-after", str(split_s), "--range-length", str(range_s)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def simulate(video: Path, range_s: float, workers: tuple[int, ...]) -> list[str]:
    """Each range decoded here, one after another (one process, CLIP frames converted, not embedded), and the
    measured times scheduled on N workers (longest first, each to the first free worker, the commit after the
    last): the speed-up N workers would give, where this machine has too few cores to run them."""
    from moclip.config import MVConfig, WindowConfig
    from moclip.video.ranges import assemble, decode_range, plan_ranges

    mv, window = MVConfig(), WindowConfig(seconds=4.0)
    plan = plan_ranges(str(video), mv, range_s)
    times, parts = [], []
    for i in range(len(plan)):
        t0 = time.process_time()
        parts.append(decode_range(plan, i, mv, window, lambda w, h: (224, 224)))
        times.append(time.process_time() - t0)
    t0 = time.process_time()
    assemble(parts, mv, window)
    commit = time.process_time() - t0
    total = sum(times) + commit
    lines = ["", f"Simulated larger clusters ({len(plan)} ranges of {range_s:g} s, each decoded here in "
             f"{min(times):.1f}-{max(times):.1f} CPU-s, {total:.1f} CPU-s in all with the assembly; scheduled "
             "longest first on N workers, Dask's per-task overhead of ~0.2 s added per range):", "",
             "| workers | makespan s | speed-up vs 1 |", "|---:|---:|---:|"]
    for n in workers:
        free = [0.0] * n
        for t in sorted(times, reverse=True):
            free[free.index(min(free))] += t + 0.2
        span = max(free) + commit
        lines.append(f"| {n} | {span:.1f} | {total / span:.2f}x |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--range-s", type=float, default=120.0)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "long.md"))
    ap.add_argument("--simulate-only", action="store_true", help="only the simulated clusters, added to --out")
    args = ap.parse_args()
    video = make_long_video(CACHE / f"long-720p-{args.minutes:g}min.mp4", args.minutes)
    if args.simulate_only:
        old = Path(args.out).read_text().rstrip("\n").split("\n") if Path(args.out).exists() else []
        write_table(old + simulate(video, args.range_s, (1, 2, 4, 8, 16, 32)), args.out)
        return
    from moclip.dataset import read_table

    runs = [("1 worker, whole", 1, 0.0), ("1 worker, ranges", 1, 1.0), ("2 workers, ranges", 2, 1.0)]
    seconds, tables = {}, {}
    with tempfile.TemporaryDirectory(prefix="moclip-bench-long-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        os.symlink(video, corpus / video.name)
        for name, workers, split in runs:
            out = Path(tmp) / name.replace(" ", "-").replace(",", "")
            seconds[name] = index(corpus, out, workers, split, args.range_s)
            tables[name] = read_table(str(out)).to_pandas().iloc[0]
            assert tables[name]["status"] == "ok", tables[name]["error"]
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
    base = tables[runs[0][0]]
    same = all(np.asarray(t["mv"]).tobytes() == np.asarray(base["mv"]).tobytes()
               and list(t["frame_indices"]) == list(base["frame_indices"]) for t in tables.values())
    whole = seconds[runs[0][0]]
    lines = [f"# One long video in ranges: {args.minutes:g} min of 720p H.264 (x264 veryfast, 25 fps), windows of 4 s",
             "", f"Machine: {cpu_description()}. One run; random-init CLIP (bf16 where native). Ranges of "
             f"{args.range_s:g} s. {int(base['n_frames'])} frames, {len(base['window_start_s'])} windows.", "",
             "| run | wall s | speed-up vs 1 worker, whole |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds[name]:.1f} | {whole / seconds[name]:.2f}x |" for name, _, _ in runs]
    lines += ["", f"Rows identical to the whole decode (MVs bit for bit, the same grid frames): {same}.",
              "Goal: 2 workers >= 1.8x one worker's whole decode."]
    lines += simulate(video, args.range_s, (1, 2, 4, 8, 16, 32))
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
