"""Timelines of long, untrimmed videos: how right they are, and what windows cost at index time.

Accuracy. A model is trained on the trimmed demo corpus (``data/make_demo_corpus.py --clips-per-class 120``:
1,200 clips of 2-4 s; ``moclip index --clip-weights none`` unless ``--clip-weights`` says otherwise, so the
CLIP-only figures are those of random features, and the report says so; ``moclip train --no-flip``).
``data/make_untrimmed_corpus.py`` makes the untrimmed corpus (6 videos of 60 s: motion-class actions of 4-10 s
and still stretches of 2-8 s, known boundaries, H.264 and MPEG-4 Part 2), and ``moclip label --window 2
--stride 1`` labels its windows (the actions are made of 2-4 s clips: windows no longer than a trained clip).
From the indexed windows, each of MV-only, CLIP-only (linear probe) and fusion gives per-window calibrated
probabilities, turned into segments as the label run does by default (``moclip.label.timeline``). Reported
(``moclip.label.scoring``): frame-level accuracy on the frames of motion-class actions, the share of still
frames left without a label, segment F1 at IoU 0.5, boundary error, boundary precision and recall within one
stride, and the temporal-localisation mAP at tIoU 0.3:0.1:0.7 (THUMOS14) and 0.5:0.05:0.95 (ActivityNet).

Cost. A real 720p H.264 video (25 fps, a textured scene panning in changing directions) of ``--minutes`` minutes
is encoded once and repeated by stream copy to ``--hours`` hours; it is indexed in a fresh process (one shard, no
Dask: decode + MV pooling + CLIP) once without windows (8 CLIP frames) and once with 4 s windows every 2 s (2
CLIP frames per window: 1,800 per hour). Reported: wall time per hour of video, the ratio, and peak RSS.

Usage: .venv/bin/python bench/bench_timeline.py [--hours 1] [--out bench/results/timeline.md] [--skip-cost]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu_description, write_table  # noqa: E402

MOCLIP = str(REPO / ".venv" / "bin" / "moclip")
WINDOW, STRIDE = 2.0, 1.0  # the demo actions are made of 2-4 s clips: windows no longer than a trained clip
CLIPS_PER_CLASS = 120  # the trimmed training corpus: the demo's generator, 6x its default size
CLIP_WEIGHTS = "none"  # --clip-weights: an open_clip tag (e.g. openai) where the weights can be loaded
COST_WINDOW = (4.0, 2.0)  # the cost of an hour: the example windows (2 CLIP frames each: 1,800 an hour)
METHODS = {"mv_only": "MV-only", "clip_linear_probe": "CLIP-only (probe)", "fusion": "fusion"}


def _run(*args: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "MOCLIP_CONSOLE": "0"})
    if r.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t0


def accuracy(root: Path) -> tuple[list[str], dict]:
    from moclip.config import TimelineConfig
    from moclip.dataset import read_table
    from moclip.dataset.windows import window_features
    from moclip.demo.synth import DEMO_CLASSES
    from moclip.demo.untrimmed import generate_untrimmed_corpus, read_ground_truth
    from moclip.inference import Inputs, Predictor
    from moclip.label import scoring
    from moclip.label.timeline import bin_segments, segment_speed
    from moclip.train import calibrate

    trimmed, model = root / f"trimmed-{CLIPS_PER_CLASS}", root / f"model-{CLIPS_PER_CLASS}"
    train_s = 0.0
    if not (model / "bundle.json").exists():  # --keep: trained by an earlier run
        t0 = time.perf_counter()
        _run(sys.executable, str(REPO / "data" / "make_demo_corpus.py"), str(trimmed / "corpus"), "--clips-per-class",
             str(CLIPS_PER_CLASS))
        _run(MOCLIP, "index", str(trimmed / "corpus"), "--out", str(trimmed / "dataset"), "--clip-weights",
             CLIP_WEIGHTS)
        _run(MOCLIP, "train", str(trimmed / "dataset"), "--out", str(model), "--no-flip")  # direction is the class
        train_s = time.perf_counter() - t0
    generate_untrimmed_corpus(root / "untrimmed")
    labels = root / f"labels-{CLIPS_PER_CLASS}-{WINDOW:g}-{STRIDE:g}"
    label_s = _run(MOCLIP, "label", str(root / "untrimmed"), "--model", str(model), "--out",
                   str(labels), "--window", str(WINDOW), "--stride", str(STRIDE))
    truth = read_ground_truth(root / "untrimmed")
    predictor = Predictor.load(model, "cpu")
    fs = window_features(read_table(str(labels / "features")))
    x = Inputs.of(fs, predictor.device)
    scores = predictor.method_scores(x, np.arange(len(fs.meta)))
    motion = {c.name for c in DEMO_CLASSES if c.stream == "motion"}
    meta = fs.meta.reset_index(drop=True)
    rows, n_windows, cfg, speed = [], len(meta), TimelineConfig(), segment_speed(fs.mv)
    for method, name in METHODS.items():
        probs = calibrate.softmax(scores[method], predictor.temperature[method])
        right = counted = still_right = still_n = hits = n_pred = n_true = 0
        b_hits = b_pred = b_true = 0
        errors: list[float] = []
        truths, dets = {}, {}
        for vid, idx in meta.groupby("video_id").indices.items():
            idx = idx[np.argsort(meta["start_s"].to_numpy()[idx])]
            segs = bin_segments(meta["start_s"].to_numpy()[idx], meta["end_s"].to_numpy()[idx], probs[idx],
                                speed[idx], fs.mv_valid[idx], float(meta["window_bin_s"].iloc[idx[0]]),
                                list(predictor.classes), cfg)
            pred = [(s["start_s"], s["end_s"], s["label"]) for s in segs]
            true = [(s.start_s, s.end_s, s.label) for s in truth[vid]]
            a, n = scoring.frame_counts(true, pred, 25, motion)
            b, m = scoring.frame_counts(true, pred, 25, {None})
            h, p, t = scoring.segment_hits(true, pred, 0.5)
            right, counted, still_right, still_n = right + a, counted + n, still_right + b, still_n + m
            hits, n_pred, n_true = hits + h, n_pred + p, n_true + t
            errors += scoring.boundary_errors(true, pred)
            bh, bp, bt = scoring.boundary_precision_recall(true, pred, STRIDE)
            b_hits, b_pred, b_true = b_hits + bh, b_pred + bp, b_true + bt
            truths[vid], dets[vid] = true, scoring.detections(segs)
        thumos = scoring.mean_ap(truths, dets, scoring.THUMOS14_TIOUS)
        anet = scoring.mean_ap(truths, dets, scoring.ACTIVITYNET_TIOUS)
        rows.append({"map_thumos": thumos, "map_thumos_avg": float(np.mean(list(thumos.values()))),
                     "map_anet_avg": float(np.mean(list(anet.values()))),
                     "boundary_precision": b_hits / max(b_pred, 1), "boundary_recall": b_hits / max(b_true, 1),
                     "method": name, "frame_acc": right / counted, "still_acc": still_right / still_n,
                     "f1": scoring.f1(hits, n_pred, n_true), "hits": hits, "n_pred": n_pred, "n_true": n_true,
                     "boundary_mean": float(np.mean(errors)), "boundary_median": float(np.median(errors)),
                     "within_stride": float(np.mean(np.asarray(errors) <= STRIDE))})
    random_clip = predictor.meta.clip.random_init
    info = {"train_s": train_s, "label_s": label_s, "videos": len(truth), "windows": n_windows,
            "random_clip": random_clip, "boundaries": len(errors),
            "hours": sum(s[-1].end_s for s in truth.values()) / 3600}
    clip_note = ("random-init CLIP weights: the CLIP-only figures are those of random features" if random_clip
                 else "pretrained CLIP")
    lines = [
        f"### Untrimmed demo corpus: {info['videos']} videos x 60 s, {n_windows} windows of {WINDOW:g} s every "
        f"{STRIDE:g} s, {info['boundaries']} true boundaries",
        "",
        f"Model: trained on the trimmed demo corpus with {CLIPS_PER_CLASS} clips per class "
        f"(`data/make_demo_corpus.py`, `moclip index`, `moclip train --no-flip`; {clip_note}); segments as "
        "`moclip label` makes them by "
        f"default (smoothing {cfg.smooth}, min-score {cfg.min_score:g}, min-motion {cfg.min_motion:g}).",
        "",
        "| method | frame acc. (motion actions) | still frames unlabelled | segment F1@0.5 (hits / pred / true) "
        "| boundary error mean / median | boundaries within one stride | boundary precision / recall (one stride) "
        "| mAP@tIoU 0.3 / 0.5 / 0.7 | mAP avg 0.3:0.7 (THUMOS14) / 0.5:0.95 (ActivityNet) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["map_thumos"]
        lines.append(f"| {r['method']} | {100 * r['frame_acc']:.1f} % | {100 * r['still_acc']:.1f} % | "
                     f"{r['f1']:.2f} ({r['hits']} / {r['n_pred']} / {r['n_true']}) | {r['boundary_mean']:.2f} s / "
                     f"{r['boundary_median']:.2f} s | {100 * r['within_stride']:.0f} % | "
                     f"{100 * r['boundary_precision']:.0f} % / {100 * r['boundary_recall']:.0f} % | "
                     f"{100 * m[0.3]:.1f} / {100 * m[0.5]:.1f} / {100 * m[0.7]:.1f} | "
                     f"{100 * r['map_thumos_avg']:.1f} / {100 * r['map_anet_avg']:.1f} |")
    trained = f"{train_s:.0f} s" if train_s else "reused from --keep"
    lines += ["", f"Corpus, index and training: {trained}; `moclip label --window {WINDOW:g} --stride {STRIDE:g}` "
                  f"(index + label, {60 * info['hours']:.0f} min of video): {label_s:.0f} s.", ""]
    return lines, {"rows": rows, **info}


def make_long_720p(path: Path, minutes: float, hours: float) -> Path:
    """``minutes`` of 720p H.264 encoded once, then repeated by stream copy (no re-encode) to ``hours``."""
    import av

    from moclip.video.writer import write_frames

    part = path.with_name("part.mp4")
    n = int(minutes * 60 * 25)
    rng = np.random.default_rng(0)
    tile = np.kron(rng.integers(0, 256, (256, 256, 3), np.uint8), np.ones((8, 8, 1), np.uint8))  # 2048 x 2048
    ys, xs = np.arange(720), np.arange(1280)

    def frames():
        x = y = 0
        for i in range(n):
            dx, dy = [(3, 0), (0, 2), (-3, 0), (0, -2), (0, 0)][(i // 250) % 5]  # a new direction every 10 s
            x, y = x + dx, y + dy
            yield tile[(ys[:, None] - y) % 2048, (xs[None, :] - x) % 2048]

    with av.open(str(part), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.gop_size, s.max_b_frames = 1280, 720, "yuv420p", 25, 2
        s.codec_context.time_base = Fraction(1, 25)
        s.options = {"preset": "veryfast", "bf": "2", "threads": "2"}
        write_frames(out, s, frames())
    repeats = max(1, round(hours * 60 / minutes))
    with av.open(str(path), "w") as out:
        with av.open(str(part)) as first:
            dst = out.add_stream_from_template(first.streams.video[0])
        shift = 0
        for _ in range(repeats):
            with av.open(str(part)) as inp:
                src = inp.streams.video[0]
                last = 0
                for p in inp.demux(src):
                    if p.dts is None:
                        continue
                    last = max(last, p.pts + p.duration)
                    p.pts, p.dts, p.stream = p.pts + shift, p.dts + shift, dst
                    out.mux(p)
                shift += last
    part.unlink()
    return path


INDEX = """
import json, resource, sys, time
from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.indexing.shard import ShardTarget, index_shard
path, out, window = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
settings = FeatureSettings(clip=ClipConfig(weights="none"), window=window).resolved("cpu")
target = ShardTarget(features=settings, run=RunConfig(decode_timeout_s=86400), out=out, settings_hash="bench")
t0 = time.perf_counter()
r = index_shard([{"video_id": "long.mp4", "path": path}], "part-00000.parquet", target)
wall = time.perf_counter() - t0
assert r.n_ok == 1, r.failures
print("RESULT " + json.dumps({"wall_s": wall, "seconds": r.seconds, "frames": r.frames_decoded,
      "images": r.images_embedded, "bytes": r.bytes_written, "load_s": r.seconds.get("load_model", 0),
      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def cost(root: Path, minutes: float, hours: float) -> tuple[list[str], dict]:
    t0 = time.perf_counter()
    video = make_long_720p(root / "long720.mp4", minutes, hours)
    make_s = time.perf_counter() - t0
    import av

    with av.open(str(video)) as c:
        s = c.streams.video[0]
        duration = float(s.duration * s.time_base) if s.duration else c.duration / 1e6
    res = {}
    for name, window in (("whole video", {}), (f"windows {COST_WINDOW[0]:g} s / {COST_WINDOW[1]:g} s",
                                                {"seconds": COST_WINDOW[0], "stride": COST_WINDOW[1]})):
        r = subprocess.run([sys.executable, "-c", INDEX, str(video), str(root / f"ds-{len(res)}"),
                            json.dumps(window)], capture_output=True, text=True, cwd=REPO)
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"index failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        res[name] = json.loads(line[7:])
    (a, ra), (b, rb) = res.items()
    per_hour = {k: (v["wall_s"] - v["load_s"]) * 3600 / duration for k, v in res.items()}
    lines = [
        f"### Index cost: one {duration / 3600:.2f}-hour 720p H.264 video (25 fps, {ra['frames']:,} frames; "
        f"made in {make_s:.0f} s)",
        "",
        "| features | index time per hour of video | CLIP images | peak RSS | file |",
        "|---|---|---|---|---|",
    ]
    for k, v in res.items():
        lines.append(f"| {k} | {per_hour[k]:.0f} s | {v['images']:,} | {v['rss_mb']:,.0f} MB | "
                     f"{v['bytes'] / 1e6:.1f} MB |")
    ratio = per_hour[b] / per_hour[a]
    lines += ["", f"Windows vs whole video: **{ratio:.2f}x** the index time (model loading excluded; decode "
                  f"{ra['seconds']['decode']:.0f} s vs {rb['seconds']['decode']:.0f} s incl. embedding while "
                  "decoding).", ""]
    return lines, {"per_hour": per_hour, "ratio": ratio, "raw": res, "duration_s": duration}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--minutes", type=float, default=5.0, help="minutes encoded, then repeated to --hours")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "timeline.md"))
    ap.add_argument("--skip-cost", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--clips-per-class", type=int, default=CLIPS_PER_CLASS, help="trimmed training corpus size")
    ap.add_argument("--clip-weights", default=CLIP_WEIGHTS)
    ap.add_argument("--window", type=float, default=WINDOW)
    ap.add_argument("--stride", type=float, default=STRIDE)
    args = ap.parse_args()
    globals().update(WINDOW=args.window, STRIDE=args.stride, CLIPS_PER_CLASS=args.clips_per_class,
                     CLIP_WEIGHTS=args.clip_weights)
    lines = ["## Timelines of long videos (bench/bench_timeline.py)", "", f"Machine: {cpu_description()}.", ""]
    with tempfile.TemporaryDirectory(prefix="moclip-bench-timeline-") as tmp:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            tmp = args.keep
        results = {}
        if not args.skip_accuracy:
            more, results["accuracy"] = accuracy(Path(tmp))
            lines += more
        if not args.skip_cost:
            more, results["cost"] = cost(Path(tmp), args.minutes, args.hours)
            lines += more
    write_table(lines, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
