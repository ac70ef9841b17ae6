"""End-to-end index flow benchmarks (real Prefect server, real Dask LocalCluster, real Parquet), one run.

  workers      demo corpus, 1 vs 2 Dask workers at the default shard size (goal >= 1.8x)
  overhead     share of worker time not spent in the shard work itself, by shard size (goal <= 10 %)
  scaling      100 / 1,000 / 10,000 small synthetic videos (K=1 CLIP frame): cost per video should stay flat;
               an incremental rerun on the unchanged corpus should cost well under 1 % of the first run

Usage: .venv/bin/python bench/bench_flow.py [--sizes 100,1000,10000] [--out bench/results/flow.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import write_table  # noqa: E402

from moclip.params import IndexParams  # noqa: E402
from moclip.sharding import make_shards  # noqa: E402


def run_index(corpus: Path, out: Path, **kw) -> tuple[dict, float]:
    from flows.index_flow import index_corpus

    params = IndexParams(corpus=str(corpus), out=str(out), clip_weights="none", **kw)
    t = time.perf_counter()
    summary = index_corpus(params)
    return summary, time.perf_counter() - t


def overhead_share(summary: dict, wall: float, workers: int) -> tuple[float, float]:
    """(share of worker time outside shard work, share spent loading CLIP in the workers) for one run."""
    secs = summary["worker_seconds"]
    work = sum(v for k, v in secs.items() if k != "load_model")
    capacity = wall * workers
    return max(0.0, 1 - work / capacity), secs.get("load_model", 0.0) / capacity


def make_scaling_corpus(src: Path, dst: Path, n: int) -> None:
    """``n`` videos: copies of the small demo clips under new names (each file is indexed on its own)."""
    files = sorted(p for p in src.rglob("*") if p.suffix in (".mp4", ".avi"))
    dst.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = files[i % len(files)]
        shutil.copyfile(f, dst / f"v{i:06d}{f.suffix}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--shard-sizes", default="4,16,64")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "flow.md"))
    args = ap.parse_args()

    from flows.runtime import prefect_api
    from moclip.demo import generate_demo_corpus

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="moclip-bench-flow-"))
    demo = tmp / "demo"
    generate_demo_corpus(demo)
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; demo corpus (200 clips, K=8 CLIP "
             "frames, random-init ViT-B-32 at the default precision), real Prefect server on loopback, Dask "
             "LocalCluster of single-threaded worker processes. Wall = the whole flow run (listing, planning, "
             "cluster "
             "start, shards, commit). Overhead = 1 - (time in shard work) / (wall x workers): cluster start, task "
             "dispatch, Prefect state updates, idle tail; CLIP model loading in the workers is shown apart.", ""]
    with prefect_api(preload=("flows.index_flow",)):
        run_index(demo, tmp / "warm", workers=1, shard_size=200, clip_frames=1)  # imports, caches, server warm

        lines += ["### 1 vs 2 Dask workers (demo corpus, default shard size 16)", "",
                  "| workers | wall s | videos/s | speed-up (goal >= 1.8x) | overhead | CLIP load |",
                  "|---|---|---|---|---|---|"]
        base = None
        for workers in (1, 2):
            summary, wall = run_index(demo, tmp / f"w{workers}", workers=workers)
            base = base or wall
            over, load = overhead_share(summary, wall, workers)
            lines.append(f"| {workers} | {wall:.1f} | {summary['indexed_ok'] / wall:.1f} | **{base / wall:.2f}x** "
                         f"| {over:.1%} | {load:.1%} |")
            print(lines[-1], flush=True)

        lines += ["", "### Overhead by shard size (demo corpus, 2 workers)", "",
                  "| shard size | shards | wall s | overhead (goal <= 10 %) | CLIP load |", "|---|---|---|---|---|"]
        for size in (int(s) for s in args.shard_sizes.split(",")):
            summary, wall = run_index(demo, tmp / f"s{size}", workers=2, shard_size=size)
            over, load = overhead_share(summary, wall, 2)
            n_shards = len(make_shards([{}] * summary["indexed_ok"], size, "x", 2))
            lines.append(f"| {size} | {n_shards} | {wall:.1f} | **{over:.1%}** | {load:.1%} |")
            print(lines[-1], flush=True)

        lines += ["", "### Scaling with corpus size (copies of the demo clips, K=1 CLIP frame, 2 workers, shard 16)",
                  "", "| videos | first run s | ms per video | rerun, unchanged corpus s "
                  "| rerun / first run (goal << 1 %) |",
                  "|---|---|---|---|---|"]
        for n in (int(s) for s in args.sizes.split(",")):
            corpus = tmp / f"scale{n}"
            make_scaling_corpus(demo, corpus, n)
            summary, first = run_index(corpus, tmp / f"scale{n}-ds", workers=2, clip_frames=1, layout="unlabeled")
            assert summary["indexed_ok"] == n, summary
            again, rerun = run_index(corpus, tmp / f"scale{n}-ds", workers=2, clip_frames=1, layout="unlabeled")
            assert again["unchanged"] == n and again["indexed_ok"] == 0, again
            lines.append(f"| {n:,} | {first:.1f} | {1000 * first / n:.1f} | {rerun:.2f} | **{rerun / first:.2%}** |")
            print(lines[-1], flush=True)
            shutil.rmtree(corpus)
    shutil.rmtree(tmp, ignore_errors=True)
    write_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
