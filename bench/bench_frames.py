"""Fusion with fewer CLIP frames than it was trained on: a model trained on the mean of K = 8 frame embeddings per
clip, scored on the test clips with the mean of k = 1, 2, 4 or 8 of them (time windows embed 2 per window by
default). Top-1 and calibrated ECE of the fusion head, per k, on each given demo output.

    .venv/bin/python bench/bench_frames.py DEMO_OUT [--models model ...] [--out bench/results/frames.md]

DEMO_OUT holds ``dataset/`` (indexed with K = 8) and the models (``moclip demo --out DEMO_OUT`` makes
``model/``; others from ``moclip train DEMO_OUT/dataset --out DEMO_OUT/NAME``, e.g. other seeds, or
``--no-clip-subsets``). The k frames
are the stored ones nearest to where indexing with K = k would have taken them (the centres of k equal shares).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench")]

from common import write_table  # noqa: E402

from moclip import zeroshot  # noqa: E402
from moclip.inference.predictor import Predictor  # noqa: E402
from moclip.train import calibrate  # noqa: E402
from moclip.train.pipeline import prepare  # noqa: E402
from moclip.video.frames import sample_indices  # noqa: E402

KS = (1, 2, 4, 8)


def nearest_frames(frames: pd.DataFrame, clip: np.ndarray, k: int) -> np.ndarray:
    """[N, k, D]: per clip, the stored embeddings nearest to ``sample_indices(n_frames, k)``."""
    out = np.empty((len(clip), k, clip.shape[2]), dtype=clip.dtype)
    for row, (n, stored) in enumerate(zip(frames["n_frames"], frames["frame_indices"])):
        stored = np.asarray(stored)
        for j, want in enumerate(sample_indices(int(n), k)):
            out[row, j] = clip[row, int(np.abs(stored - want).argmin())]
    return out


def measure(demo: Path, model: str) -> dict[int, tuple[float, float]]:
    predictor = Predictor.load(demo / model, "cpu")
    p = prepare(str(demo / "dataset"), predictor.meta.train_config, predictor.device, classes=predictor.classes)
    test = p.splits.test
    frames = pd.read_parquet(demo / "dataset", columns=["video_id", "n_frames", "frame_indices"])
    frames = frames.set_index("video_id").loc[p.fs.meta["video_id"]]  # the feature set's order
    out = {}
    for k in KS:
        clip = torch.from_numpy(zeroshot.video_embedding(nearest_frames(frames, p.fs.clip, k))).float()
        probs = predictor.fusion_probs(dataclasses.replace(p, clip=clip))[test]
        y = p.y[test]
        out[k] = (float((probs.argmax(1) == y).mean()), float(calibrate.ece(probs, y)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo", type=Path)
    ap.add_argument("--models", nargs="+", default=["model"], help="model folders in DEMO_OUT")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "frames.md"))
    args = ap.parse_args()
    lines = ["Fusion head trained on 8-frame means, scored with k frames per test clip (top-1 %, calibrated ECE %).",
             "", "| model | " + " | ".join(f"k = {k}" for k in KS) + " |", "|---|" + "---|" * len(KS)]
    mean = {k: np.zeros(2) for k in KS}
    for model in args.models:
        res = measure(args.demo, model)
        lines.append(f"| {model} | " + " | ".join(f"{100 * a:.1f}, {100 * e:.1f}" for a, e in res.values()) + " |")
        for k, v in res.items():
            mean[k] += np.array(v) / len(args.models)
    if len(args.models) > 1:
        lines.append("| mean | " + " | ".join(f"{100 * a:.1f}, {100 * e:.1f}" for a, e in mean.values()) + " |")
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
