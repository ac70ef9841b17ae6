"""End-to-end index flow benchmarks (real Prefect server, real Dask LocalCluster, real Parquet), one run.

  workers      demo corpus, 1 vs 2 Dask workers at the default shard size (goal >= 1.8x)
  overhead     share of worker time not spent in the shard work itself, by shard size (goal <= 10 %)
  scaling      100 / 1,000 / 10,000 small synthetic videos (K=1 CLIP frame): cost per video should stay flat;
               an incremental rerun on the unchanged corpus should cost well under 1 % of the first run

Usage: .venv/bin/python bench/bench_flow.py [--sizes 100,1000,10000] [--shard-sizes 4,16,64] [--reps 3]
                                           [--out bench/results/flow.md]
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


def run_index(corpus: Path, out: Path, clip_frames: int = 8, **run: object) -> tuple[dict, float]:
    from flows.index_flow import index_corpus

    params = IndexParams(corpus={"root": str(corpus)}, out=str(out), run=run,
                         features={"clip": {"weights": "none", "frames": clip_frames}})
    t = time.perf_counter()
    summary = index_corpus(params).model_dump()
    summary["bench_started_at"] = time.time() - (time.perf_counter() - t)  # wall clock, as the shard timeline
    return summary, time.perf_counter() - t


def idle_breakdown(summary: dict, wall: float) -> tuple[float, float, float]:
    """Seconds per worker without shard work, split into (before its first shard, between shards, after its last):
    start-up (subflow, cluster, first dispatch), per-task dispatch, and the idle tail plus the flow's ending."""
    t0, end = summary["bench_started_at"], summary["bench_started_at"] + wall
    per_worker: dict[str, list[tuple[float, float]]] = {}
    for worker, start, stop, _ in summary["shard_timeline"]:
        per_worker.setdefault(worker, []).append((start, stop))
    first = gaps = last = 0.0
    for spans in per_worker.values():
        spans.sort()
        first += spans[0][0] - t0
        gaps += sum(b[0] - a[1] for a, b in zip(spans, spans[1:]))
        last += end - spans[-1][1]
    n = max(len(per_worker), 1)
    return first / n, gaps / n, last / n


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
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "flow.md"))
    args = ap.parse_args()

    from flows.processes import preload_clip_in_workers
    from flows.server import prefect_api
    from moclip.config import RunConfig
    from moclip.demo import generate_demo_corpus
    from moclip.runplan import plan_run

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    tmp = Path(tempfile.mkdtemp(prefix="moclip-bench-flow-"))
    demo = tmp / "demo"
    generate_demo_corpus(demo)
    default_size = plan_run(RunConfig(), "cpu").shard_size
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores; demo corpus (200 clips, K=8 CLIP "
             "frames, random-init ViT-B-32 at the default precision), real Prefect server on loopback, Dask "
             "LocalCluster of single-threaded worker processes forked from the warm fork server, which has the CLIP "
             "encoder built (as with `moclip index`). Wall = the whole flow run (listing, planning, cluster start, "
             "shards, commit). Overhead = 1 - (time in shard work) / (wall x workers); per worker, the time without "
             f"shard work splits into start-up (subflow, cluster, first dispatch), gaps between shards (dispatch, "
             f"Prefect state updates) and the tail (idle while the other worker finishes, cluster close, commit, "
             f"manifest). Medians of {args.reps} interleaved runs.", ""]
    # as `moclip index` does: the fork server that workers are forked from builds the CLIP encoder once
    preload_clip_in_workers(IndexParams(corpus={"root": str(demo)}, out=str(tmp),
                                        features={"clip": {"weights": "none"}}).settings().clip, "cpu")
    with prefect_api(preload=("flows.index_flow",)):
        run_index(demo, tmp / "warm", workers=1, shard_size=200, clip_frames=1)  # imports, caches, server warm

        def runs(variants: dict) -> dict:
            """{variant: (summary, wall) of its median run}, variants interleaved A B A B ..."""
            got: dict = {k: [] for k in variants}
            for rep in range(args.reps):
                for key, kw in variants.items():
                    got[key].append(run_index(demo, tmp / f"{key}-{rep}", **kw))
            return {k: sorted(v, key=lambda r: r[1])[len(v) // 2] for k, v in got.items()}

        def breakdown(summary: dict, wall: float, workers: int) -> str:
            over, load = overhead_share(summary, wall, workers)
            first, gaps, last = idle_breakdown(summary, wall)
            return f"**{over:.1%}** | {first:.2f} | {gaps:.2f} | {last:.2f} | {load:.1%}"

        lines += [f"### 1 vs 2 Dask workers (demo corpus, default shard size {default_size})", "",
                  "| workers | wall s | videos/s | speed-up (goal >= 1.8x) | overhead | start-up s | gaps s | tail s "
                  "| CLIP load |", "|---|---|---|---|---|---|---|---|---|"]
        med = runs({1: {"workers": 1}, 2: {"workers": 2}})
        for workers, (summary, wall) in med.items():
            lines.append(f"| {workers} | {wall:.1f} | {summary['indexed_ok'] / wall:.1f} "
                         f"| **{med[1][1] / wall:.2f}x** | {breakdown(summary, wall, workers)} |")
            print(lines[-1], flush=True)

        lines += ["", "### Overhead by shard size (demo corpus, 2 workers)", "",
                  "| shard size | shards | wall s | overhead (goal <= 10 %) | start-up s | gaps s | tail s "
                  "| CLIP load |",
                  "|---|---|---|---|---|---|---|---|"]
        sizes = [int(x) for x in args.shard_sizes.split(",")]
        med = runs({size: {"workers": 2, "shard_size": size} for size in sizes})
        for size, (summary, wall) in med.items():
            n_shards = len(make_shards([{}] * summary["indexed_ok"], size, "x", 2))
            name = f"{size} (default)" if size == default_size else str(size)
            lines.append(f"| {name} | {n_shards} | {wall:.1f} | {breakdown(summary, wall, 2)} |")
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
