"""One scene recorded many ways (tests/helpers/recordings.py): the mean motion each recording gives, against the
upright 25 fps H.264 recording and against the true speed.

    .venv/bin/python bench/bench_recordings.py [--before GIT_REV] [--out bench/results/recordings.md]

``--before REV`` also measures moclip as it was at REV (a git worktree of it, the same recordings), so the table
shows what a change did. Every figure is a ratio measured in one run: the machine does not change it. A second
table gives what finding H.264 blocks' references (``mv_tensor.References``) costs: CPU seconds of
``extract_video`` (8 CLIP frames, no CLIP) with and without it, best of 3, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "bench")]

from common import write_table  # noqa: E402
from helpers.recordings import RECORDINGS, TRUTH, disagreement, mean_motion, record  # noqa: E402


def measure(folder: Path) -> dict[str, list[float]]:
    """Each recording's mean (x, y) motion, by the moclip this process imports."""
    from moclip.config import MVConfig
    from moclip.video.extract import extract_video

    out = {}
    for r in RECORDINGS:
        f = extract_video(str(record(r, folder)), MVConfig(source=r.mv_source), 4)
        out[r.name] = mean_motion(f.motion.values, f.motion.valid).tolist()
    return out


def matching_cost(folder: Path) -> list[str]:
    """Markdown rows: clip, CPU s without matching, with, ratio."""
    import time

    import av
    import cv2
    from helpers.recordings import displayed

    from moclip.config import MVConfig
    from moclip.video import pyav_reader
    from moclip.video.extract import extract_video

    def clip(name: str, w: int, h: int, options: dict) -> str:
        path = folder / f"{name}.mp4"
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"threads": "1", **options}
            for i, picture in enumerate(displayed([i / 25 for i in range(50)])):
                frame = av.VideoFrame.from_ndarray(cv2.resize(picture, (w, h)), format="rgb24")
                frame.pts = i
                out.mux(s.encode(frame))
            out.mux(s.encode())
        return str(path)

    rows, codecs = [], pyav_reader.MULTI_REFERENCE_CODECS
    for name, w, h, options in (("x264 defaults 320x240", 320, 240, {}), ("x264 defaults 1280x720", 1280, 720, {}),
                                ("x264 1 reference, no B-frames 320x240", 320, 240, {"refs": "1", "bf": "0"})):
        path, cpu = clip(name.replace(" ", "_"), w, h, options), {}
        for matched in (False, True):
            pyav_reader.MULTI_REFERENCE_CODECS = codecs if matched else frozenset()
            best = float("inf")
            for _ in range(3):
                t = time.process_time()
                extract_video(path, MVConfig(), 8)
                best = min(best, time.process_time() - t)
            cpu[matched] = best
        rows.append(f"| {name} (50 frames) | {cpu[False]:.3f} | {cpu[True]:.3f} | {cpu[True] / cpu[False]:.2f} |")
    pyav_reader.MULTI_REFERENCE_CODECS = codecs
    return rows


def measure_at(rev: str, folder: Path) -> dict[str, list[float]]:
    """``measure`` with moclip as it was at ``rev`` (the recordings come from this checkout's helpers)."""
    tree = folder / "before"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)
    try:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        code = (f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(REPO / 'tests')!r}, {str(REPO / 'bench')!r}];"
                f"from bench_recordings import measure; from pathlib import Path;"
                f"print(json.dumps(measure(Path({str(folder)!r}))))")
        done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", help="a git revision to compare with (e.g. the commit before feature schema 2)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "recordings.md"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        now = measure(Path(tmp))
        before = measure_at(args.before, Path(tmp)) if args.before else None
        cost = matching_cost(Path(tmp))
    ref_name = RECORDINGS[0].name
    truth = np.array(TRUTH)

    def cells(values: dict[str, list[float]], name: str) -> list[str]:
        v, ref = np.array(values[name]), np.array(values[ref_name])
        return [f"{v[0]:.3g}, {v[1]:.3g}", f"{disagreement(v, ref):.1%}"]

    head = ("| recorded as | mean motion now (x, y; % of the frame per second) | off the 25 fps recording "
            "| off the truth |")
    sep = "|---|---|---|---|"
    if before:
        head += " before: mean motion (x, y) | before: off the 25 fps recording |"
        sep += "---|---|"
    lines = [
        f"One camera pan ({TRUTH[0]:g} % of the width and {TRUTH[1]:g} % of the height per second, 320x240 displayed) "
        "recorded many ways (`tests/helpers/recordings.py`); the mean motion over the inner cells of every segment, "
        "and how far it is from the upright 25 fps H.264 recording's (|v - v_ref| / |v_ref|)"
        + (f"; 'before' is moclip at `{args.before}` (its units: % of the frame per frame)" if before else "") + ".",
        "", head, sep,
    ]
    for r in RECORDINGS:
        v = np.array(now[r.name])
        row = [r.name, *cells(now, r.name), f"{disagreement(v, truth):.1%}"]
        if before:
            row += cells(before, r.name)
        lines.append("| " + " | ".join(row) + " |")
    from common import cpu_description

    lines += ["", f"Finding H.264 blocks' references by matching pictures: CPU seconds of `extract_video` (MVs, 8 RGB "
              f"frames, no CLIP), best of 3, {cpu_description()}. A stream whose SPS keeps one reference frame is "
              "not matched (the last row: the same work both ways).", "",
              "| clip | without matching | with | ratio |", "|---|---|---|---|", *cost]
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
