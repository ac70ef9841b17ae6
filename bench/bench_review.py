"""Does the review loop pay? Rounds of reviews with a simulated reviewer who answers with the true label.

On an indexed, labelled corpus (default: the demo corpus, indexed here): its test split is held out; the rest is
the archive to review. Start from ``--start`` labelled videos per class, then each round: train on what is
labelled (``moclip.train.pipeline.train`` on reviewed samples), predict the unreviewed videos, pick ``--batch`` of
them (``moclip.review.select``: margin + per-class quota + k-center diversity over CLIP embeddings, or random), and
label them. After each round: fusion top-1 on the held-out test split. The reference: the same training on every
archive video labelled (fully supervised).

Goal (issue 28): reach the fully supervised accuracy minus 2 points with at most half the reviews random selection
needs. Writes a Markdown table (and a plot) that names the CPU.

Usage: .venv/bin/python bench/bench_review.py [--dataset DS] [--rounds 6] [--batch 20] [--out bench/results/review.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from common import cpu_description, write_table  # noqa: E402

from moclip import zeroshot  # noqa: E402
from moclip.config import TrainConfig  # noqa: E402
from moclip.dataset import FeatureSet, load_features, read_manifest  # noqa: E402
from moclip.inference import Inputs, Predictor  # noqa: E402
from moclip.review.select import select  # noqa: E402
from moclip.train.pipeline import ExtraFeatures, train  # noqa: E402
from moclip.train.splits import make_splits  # noqa: E402


def subset(fs: FeatureSet, rows: np.ndarray, labels: np.ndarray | None = None) -> FeatureSet:
    meta = fs.meta.iloc[rows].reset_index(drop=True)
    if labels is not None:
        meta = meta.assign(label=labels, split="review", group=meta["video_id"].astype(str))
    return FeatureSet(meta, fs.mv[rows], fs.mv_valid[rows], fs.clip[rows])


def fit_and_score(fs: FeatureSet, manifest: dict, url: str, labelled: np.ndarray, pool: np.ndarray,
                  test: np.ndarray, cfg: TrainConfig, out: Path) -> tuple[float, np.ndarray, list[str]]:
    """Train on ``labelled`` rows; (test top-1, the pool's probabilities, the classes)."""
    truth = fs.meta["label"].to_numpy()
    extra = ExtraFeatures(subset(fs, labelled, truth[labelled]), manifest, url)
    bundle = train(None, out, cfg, log=lambda m: None, extra=extra)
    p = Predictor.from_bundle(bundle, cfg.device)
    test_probs = p.fusion_probs(Inputs.of(subset(fs, test), p.device))
    acc = float((np.asarray(p.classes)[test_probs.argmax(1)] == truth[test]).mean())
    pool_probs = p.fusion_probs(Inputs.of(subset(fs, pool), p.device)) if len(pool) else np.zeros((0, len(p.classes)))
    return acc, pool_probs, p.classes


def items_of(fs: FeatureSet, rows: np.ndarray, probs: np.ndarray, classes: list[str], k: int = 5) -> pd.DataFrame:
    order = np.argsort(-probs, axis=1)[:, :k]
    top = np.take_along_axis(probs, order, axis=1)
    names = np.asarray(classes)[order]
    ids = fs.meta["video_id"].iloc[rows].astype(str).to_numpy()
    return pd.DataFrame({"item_id": ids, "video_id": ids, "path": ids, "start_s": np.nan, "end_s": np.nan,
                         "labels": list(names.tolist()), "probs": list(top.tolist()), "top1": names[:, 0],
                         "top1_prob": top[:, 0], "model": "bench"})


def run(strategy: str, fs: FeatureSet, manifest: dict, url: str, start: np.ndarray, archive: np.ndarray,
        test: np.ndarray, rounds: int, batch: int, cfg: TrainConfig, tmp: Path, seed: int) -> list[tuple[int, float]]:
    labelled = start.copy()
    unit = zeroshot.video_embedding(fs.clip)
    curve = []
    for r in range(rounds + 1):
        pool = np.setdiff1d(archive, labelled)
        acc, probs, classes = fit_and_score(fs, manifest, url, labelled, pool, test, cfg, tmp / f"{strategy}-{r}")
        curve.append((len(labelled) - len(start), acc))
        print(f"  {strategy}: {len(labelled) - len(start)} reviews -> test top-1 {acc:.3f}", flush=True)
        if r == rounds or len(pool) == 0:
            break
        items = items_of(fs, pool, probs, classes)
        picked = select(items, batch, "random" if strategy == "random" else "margin",
                        vectors=unit[pool] if strategy == "margin+diversity" else None, seed=seed + r)
        row_of = dict(zip(items["item_id"], pool))
        labelled = np.union1d(labelled, [row_of[i] for i in picked["item_id"]])
    return curve


def reviews_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in curve if acc >= target - 1e-9), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="an indexed, labelled dataset (default: the demo corpus, made and indexed here)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--start", type=int, default=2, help="labelled videos per class to start from")
    ap.add_argument("--seeds", type=int, default=5, help="repetitions (start sets and training seeds)")
    ap.add_argument("--mv-epochs", type=int, default=40)
    ap.add_argument("--head-epochs", type=int, default=100)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "review.md"))
    ap.add_argument("--plot", default=str(REPO / "docs" / "img" / "review_loop.png"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="moclip-bench-review-") as tmp_name:
        tmp = Path(tmp_name)
        url = args.dataset
        if url is None:
            corpus, url = tmp / "corpus", str(tmp / "dataset")
            subprocess.run([sys.executable, str(REPO / "data" / "make_demo_corpus.py"), str(corpus),
                            "--clips-per-class", "20"], check=True)
            subprocess.run([str(Path(sys.executable).parent / "moclip"), "index", str(corpus), "--out", url,
                            "--clip-weights", "none", "--layout", "folder"], check=True)
        manifest = read_manifest(url)
        fs = load_features(url)
        meta = fs.meta
        splits = make_splits(meta, seed=0)
        test = splits.test
        archive = np.union1d(splits.train, splits.val)
        truth = meta["label"].to_numpy()
        cfg = TrainConfig(flip=False, mv_epochs=args.mv_epochs, head_epochs=args.head_epochs, device="cpu")
        t0 = time.perf_counter()
        full = [fit_and_score(fs, manifest, url, archive, np.zeros(0, np.int64), test,
                              cfg.model_copy(update={"seed": s}), tmp / f"full-{s}")[0] for s in range(args.seeds)]
        target = float(np.mean(full)) - 0.02
        print(f"fully supervised ({len(archive)} labelled): {np.mean(full):.3f}; target {target:.3f}", flush=True)
        curves: dict[str, list[list[tuple[int, float]]]] = {"margin+diversity": [], "margin": [], "random": []}
        for s in range(args.seeds):
            rng = np.random.default_rng(s)
            start = np.concatenate([rng.choice(archive[truth[archive] == c], args.start, replace=False)
                                    for c in sorted(set(truth[archive]))])
            for name in curves:
                curves[name].append(run(name, fs, manifest, url, start, archive, test, args.rounds, args.batch,
                                        cfg.model_copy(update={"seed": s}), tmp, s))
        wall = time.perf_counter() - t0

    rows = []
    steps = sorted({n for c in curves["random"] for n, _ in c})
    for n in steps:
        cells = [f"{np.mean([dict(c).get(n, np.nan) for c in curves[k]]) * 100:.1f}" for k in curves]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    need = {k: [reviews_to_reach(c, target) for c in curves[k]] for k in curves}
    said = {k: ", ".join("not reached" if v is None else str(v) for v in need[k]) for k in need}
    lines = [
        f"## Review loop: margin + diversity vs margin vs random (bench/bench_review.py, {cpu_description()})",
        "",
        f"{len(fs.meta)} videos ({len(test)} held out as test, {len(archive)} to review), {args.start} labelled per "
        f"class to start, rounds of {args.batch} reviews, a reviewer who answers with the true label; "
        f"{args.seeds} repetitions (start sets and training seeds), MV net {args.mv_epochs} epochs, heads "
        f"{args.head_epochs}; {wall / 60:.1f} minutes. Fully supervised ({len(archive)} labelled): "
        f"{np.mean(full) * 100:.1f} % fusion top-1 on test; target (minus 2 points) {target * 100:.1f} %.",
        "",
        "| reviews | " + " | ".join(f"{k} top-1 %" for k in curves) + " |",
        "|---|" + "---|" * len(curves),
        *rows,
        "",
        "Reviews to reach the target, per repetition: " + "; ".join(f"{k}: {said[k]}" for k in said) + ".",
    ]
    write_table(lines, args.out)
    plot(curves, full, target, Path(args.plot))


def plot(curves: dict[str, list[list[tuple[int, float]]]], full: list[float], target: float, out: Path) -> None:
    """Test top-1 after each round, mean over repetitions, per strategy; the fully supervised line and the target."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, runs in curves.items():
        steps = sorted({n for c in runs for n, _ in c})
        ax.plot(steps, [100 * np.nanmean([dict(c).get(n, np.nan) for c in runs]) for n in steps], marker="o",
                label=name)
    ax.axhline(100 * float(np.mean(full)), color="grey", linestyle="--", label="fully supervised")
    ax.axhline(100 * target, color="grey", linestyle=":", label="target (-2 points)")
    ax.set_xlabel("reviews")
    ax.set_ylabel("fusion top-1 on test, %")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


if __name__ == "__main__":
    main()
