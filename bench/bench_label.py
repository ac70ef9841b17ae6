"""Labelling at archive scale: throughput and peak memory of the label flow's prediction step against archive size.

A real small dataset (16 generated motion clips, indexed in this process with the default feature settings and
random-init CLIP weights: timing and memory do not depend on the weights) is replicated to 1,000 / 10,000 /
100,000 videos (its rows copied under new video ids, 16 per shard as the index writes them), and a small model is
trained on the original. For each size, ``flows.label_flow.predict_archive`` runs in a fresh process (against one
local Prefect server) with 1 and with 2 local Dask workers, then once more on the unchanged archive (the nightly
rerun). Reported: videos/s of the whole prediction step (plan, Dask cluster start-up, prediction, summary; the
CSV export off, it is one sequential pass), the peak RSS of the flow process (``ru_maxrss``) and of the busiest
worker (each worker reports its own), and the rerun's wall time.

Usage: .venv/bin/python bench/bench_label.py [--sizes 1000,10000,100000] [--out bench/results/label.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.common import cpu_description, write_table  # noqa: E402

RUN = """
import json, resource, sys, time
from flows.label_flow import predict_archive
from moclip.params import LabelParams
ds, model, out, workers = sys.argv[1:5]
params = LabelParams(corpus={"root": ds}, model=model, out=out, csv=False, run={"workers": int(workers)})
t0 = time.perf_counter()
r = predict_archive(ds, params)
wall = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps({"wall_s": wall, "videos": r["n_labelled"], "predicted": r["predicted"],
      "worker_rss_mb": r["worker_peak_rss_mb"], "worker_s": r["worker_s"], "predict_s": r["predict_s"],
      "flow_rss_mb": rss}))
"""


def seed_dataset(root: Path) -> tuple[str, str]:
    """16 real videos indexed with the default settings (random CLIP), and a small model trained on them."""
    from helpers.datasets import index_in_process, motion_corpus

    from moclip.config import ClipConfig, TrainConfig
    from moclip.train.pipeline import train

    ds, model = root / "seed", root / "model"
    if (model / "bundle.json").exists():  # made by an earlier run with --keep
        return str(ds), str(model)
    index_in_process(motion_corpus(root / "corpus", per_class=4), ds, frames=ClipConfig().frames)
    train(str(ds), model, TrainConfig(flip=False, mv_epochs=2, head_epochs=2, device="cpu"), log=lambda m: None)
    return str(ds), str(model)


def replicate(seed: str, n: int, dest: Path, per_shard: int = 16) -> None:
    """``n`` videos: the seed's rows under new ids, ``per_shard`` to a shard file (written once, reused)."""
    import pyarrow as pa

    from moclip.dataset import Store

    if (dest / "_manifest.json").exists():
        return
    src = Store(seed)
    table = src.read_table(src.shard_names()[0])
    out = Store(str(dest))
    for s in range(-(-n // per_shard)):
        k = min(per_shard, n - s * per_shard)
        rows = table.take([j % table.num_rows for j in range(k)])
        ids = pa.array([f"archive/v{s * per_shard + j:07d}.mp4" for j in range(k)])
        rows = rows.set_column(rows.schema.get_field_index("video_id"), "video_id", ids)
        rows = rows.set_column(rows.schema.get_field_index("path"), "path", ids)
        out.write_table(f"part-bench-{s:06d}.parquet", rows)
    out.write_bytes("_manifest.json", src.fs.cat(src.path("_manifest.json")))


def run(ds: str, model: str, out: Path, workers: int) -> dict:
    p = subprocess.run([sys.executable, "-c", RUN, ds, model, str(out), str(workers)], capture_output=True,
                       text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        raise RuntimeError(f"label run failed ({p.returncode}): {p.stderr[-3000:]}")
    return json.loads(line[0][7:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", help="folder for the replicated datasets (default: a temp folder, removed)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

    from flows.server import prefect_api

    lines = [f"Label flow's prediction step (`predict_archive`) on {cpu_description()}; each run a fresh process, "
             "one local Prefect server; CSV export off.", "",
             "Prediction videos/s: from the first task submitted to the last result (the cluster is up); whole step: "
             "the flow's wall time, with ~8 s of fixed start-up (model, Prefect subflow, Dask cluster).", "",
             "| videos | shards | prediction, 1 worker: videos/s | 2 workers: videos/s | 2 vs 1 "
             "| whole step videos/s, 1 / 2 w. | flow peak RSS MB (1 / 2 w.) | worker peak RSS MB (1 / 2 w.) "
             "| rerun, unchanged (2 w.) s |",
             "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="moclip-bench-label-") as tmp, prefect_api():
        root = Path(args.keep or tmp)
        seed, model = seed_dataset(root)
        for n in sizes:
            ds = root / f"archive-{n}"
            t0 = time.perf_counter()
            replicate(seed, n, ds)
            print(f"{n} videos replicated in {time.perf_counter() - t0:.0f} s", flush=True)
            res = {}
            for w in (1, 2):
                out = root / f"labels-{n}-{w}"
                shutil.rmtree(out, ignore_errors=True)  # a kept folder of an earlier run
                res[w] = run(str(ds), model, out, w)
                assert res[w]["predicted"] == n == res[w]["videos"], res[w]
                print(n, w, res[w], flush=True)
            again = run(str(ds), model, root / f"labels-{n}-2", 2)
            assert again["predicted"] == 0, again
            v1, v2 = (n / res[w]["predict_s"] for w in (1, 2))
            s1, s2 = (n / res[w]["wall_s"] for w in (1, 2))
            lines.append(f"| {n:,} | {-(-n // 16):,} | {v1:,.0f} | {v2:,.0f} | {v2 / v1:.2f}x "
                         f"| {s1:,.0f} / {s2:,.0f} ({s2 / s1:.2f}x) "
                         f"| {res[1]['flow_rss_mb']:.0f} / {res[2]['flow_rss_mb']:.0f} "
                         f"| {res[1]['worker_rss_mb']:.0f} / {res[2]['worker_rss_mb']:.0f} | {again['wall_s']:.1f} |")
    write_table(lines, args.out or REPO / "bench" / "results" / "label.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
