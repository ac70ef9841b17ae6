"""Does the review loop pay? Rounds of reviews with a simulated reviewer who answers with the true label.

On an indexed, labelled corpus (default: the demo corpus with ``--clips-per-class`` clips, made and indexed here):
``--test-per-class`` videos of every class are held out as a balanced test set; the rest is the archive to review,
optionally thinned to a long tail (``--imbalance R``: class sizes fall geometrically, the commonest R times the
rarest, as in real archives). Start from ``--start`` labelled videos per class, then each round: train on what is
labelled (``moclip.train.pipeline.train`` on reviewed samples), predict the archive, pick ``--batch`` of the videos
not yet reviewed (``moclip.review.select``, the ledger being what is labelled: margin + per-class quota + k-center
diversity over CLIP directions, margin alone, or random), and label them. After each round: fusion top-1 on the
test set (balanced: every class counts the same). The reference: the same training on the whole archive labelled
(fully supervised).

Goal (issue 28): reach the fully supervised accuracy minus 2 points with at most half the reviews random selection
needs. Writes a Markdown table (and a plot) that names the CPU.

Usage: .venv/bin/python bench/bench_review.py [--dataset DS] [--imbalance 1] [--rounds 8] [--batch 20]
       [--out bench/results/review.md]
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
    """One repetition of the loop: [(reviews so far, test top-1)] after each round."""
    labelled = start.copy()
    unit = zeroshot.video_embedding(fs.clip)[archive]
    ids = fs.meta["video_id"].iloc[archive].astype(str).to_numpy()
    curve = []
    for r in range(rounds + 1):
        acc, probs, classes = fit_and_score(fs, manifest, url, labelled, archive, test, cfg, tmp / f"{strategy}-{r}")
        curve.append((len(labelled) - len(start), acc))
        print(f"  {strategy}: {len(labelled) - len(start)} reviews -> test top-1 {acc:.3f}", flush=True)
        if r == rounds or len(labelled) == len(archive):
            break
        # the whole archive's predictions, the labelled videos as the review ledger (as `moclip review select`)
        picked = select(items_of(fs, archive, probs, classes), batch,
                        "random" if strategy == "random" else "margin",
                        exclude=set(fs.meta["video_id"].iloc[labelled].astype(str)),
                        vectors=unit if strategy == "margin+diversity" else None, seed=seed * 1000 + r)
        labelled = np.union1d(labelled, archive[np.isin(ids, picked["item_id"])])
    return curve


def held_out(truth: np.ndarray, per_class: int, imbalance: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(test rows: ``per_class`` of each class; archive rows: the rest, thinned so class sizes fall geometrically
    from the commonest to the rarest, ``imbalance`` times fewer; 1 keeps them all)."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(truth))
    test, archive = [], []
    for i, c in enumerate(rng.permutation(classes)):  # which classes are common: drawn, not alphabetical
        rows = rng.permutation(np.flatnonzero(truth == c))
        if len(rows) <= per_class + 2:
            raise SystemExit(f"class {c!r} has {len(rows)} videos: too few for {per_class} test + 2 to review")
        rest = rows[per_class:]
        keep = max(3, round(len(rest) * imbalance ** (-i / max(1, len(classes) - 1))))
        test.append(rows[:per_class])
        archive.append(rest[:keep])
    return np.sort(np.concatenate(test)), np.sort(np.concatenate(archive))


def reviews_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((n for n, acc in curve if acc >= target - 1e-9), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="an indexed, labelled dataset (default: the demo corpus, made and indexed here)")
    ap.add_argument("--clips-per-class", type=int, default=60, help="demo corpus size (without --dataset)")
    ap.add_argument("--test-per-class", type=int, default=12)
    ap.add_argument("--imbalance", type=float, default=1.0,
                    help="commonest / rarest class size in the archive to review (1: balanced)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--start", type=int, default=2, help="labelled videos per class to start from")
    ap.add_argument("--seeds", type=int, default=4, help="repetitions (start sets and training seeds)")
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
                            "--clips-per-class", str(args.clips_per_class)], check=True)
            subprocess.run([str(Path(sys.executable).parent / "moclip"), "index", str(corpus), "--out", url,
                            "--clip-weights", "none", "--layout", "folder"], check=True)
        manifest = read_manifest(url)
        fs = load_features(url)
        truth = fs.meta["label"].to_numpy()
        test, archive = held_out(truth, args.test_per_class, args.imbalance, seed=0)
        sizes = pd.Series(truth[archive]).value_counts()
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

    mean = {k: mean_curve(v) for k, v in curves.items()}
    rows = [f"| {n} | " + " | ".join(f"{dict(mean[k]).get(n, np.nan) * 100:.1f}" for k in curves) + " |"
            for n, _ in mean["random"]]
    need = {k: reviews_to_reach(mean[k], target) for k in curves}
    each = {k: ", ".join("-" if v is None else str(v) for v in (reviews_to_reach(c, target) for c in curves[k]))
            for k in curves}
    said = {k: "not within the rounds run" if v is None else f"{v} reviews" for k, v in need.items()}
    md, rnd = need["margin+diversity"], need["random"]
    verdict = ("not decided: random did not reach the target within the rounds run" if not rnd else
               "not met: margin + diversity did not reach the target" if md is None else
               f"{'met' if md <= rnd / 2 else 'not met'}: margin + diversity needs {md / rnd:.2f} of random's reviews")
    kind = "balanced archive" if args.imbalance == 1 else f"long-tailed archive (imbalance {args.imbalance:g})"
    lines = [
        f"## Review loop, {kind}: margin + diversity vs margin vs random (bench/bench_review.py, {cpu_description()})",
        "",
        f"{len(fs.meta)} demo videos, {len(test)} held out as a balanced test set ({args.test_per_class} per class); "
        f"{len(archive)} to review ({sizes.max()} of the commonest class, {sizes.min()} of the rarest). "
        f"{args.start} labelled per class to start, rounds of {args.batch} reviews, a reviewer who answers with the "
        f"true label; {args.seeds} repetitions (start sets and training seeds), MV net {args.mv_epochs} epochs, "
        f"heads {args.head_epochs}; {wall / 60:.1f} minutes. Fully supervised (the {len(archive)} labelled): "
        f"{np.mean(full) * 100:.1f} % fusion top-1 on test (per seed: "
        f"{', '.join(f'{a * 100:.1f}' for a in full)}); target (minus 2 points) {target * 100:.1f} %.",
        "",
        "| reviews | " + " | ".join(f"{k} top-1 % (mean)" for k in curves) + " |",
        "|---|" + "---|" * len(curves),
        *rows,
        "",
        "Reviews until the mean curve reaches the target: " + "; ".join(f"{k} {said[k]}" for k in curves) + ". "
        "Per repetition: " + "; ".join(f"{k} {each[k]}" for k in curves) + f". Goal (half of random's reviews): "
        f"{verdict}.",
    ]
    write_table(lines, args.out)
    plot(curves, full, target, Path(args.plot))


def mean_curve(runs: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    steps = sorted({n for c in runs for n, _ in c})
    return [(n, float(np.nanmean([dict(c).get(n, np.nan) for c in runs]))) for n in steps]


def plot(curves: dict[str, list[list[tuple[int, float]]]], full: list[float], target: float, out: Path) -> None:
    """Test top-1 after each round, mean over repetitions, per strategy; the fully supervised line and the target."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, runs in curves.items():
        steps, acc = zip(*mean_curve(runs))
        ax.plot(steps, [100 * a for a in acc], marker="o", label=name)
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
