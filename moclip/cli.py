"""`moclip` command line: the same jobs as the Prefect deployments, without a server to set up.

The library never imports Prefect; commands that run flows import them when they run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from moclip.params import IndexParams


def _grid(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"grid must look like 15x20 (H x W), got {text!r}") from e
    return h, w


def _add_index_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus")
    g.add_argument("--layout", default="folder", choices=["folder", "ucf101", "hmdb51", "manifest", "unlabeled"],
                   help="how labels and splits are found (default: folder = one folder per class)")
    g.add_argument("--split-dir", help="folder with the official split files (ucf101, hmdb51)")
    g.add_argument("--split", type=int, default=1, help="official split number (default 1)")
    g.add_argument("--manifest", help="CSV with path,label,split columns (layout=manifest)")
    g.add_argument("--allow-outside-root", action="store_true", help="let manifest paths leave the corpus root")
    g = p.add_argument_group("features")
    g.add_argument("--segments", type=int, default=8, help="T temporal segments of the MV tensor (default 8)")
    g.add_argument("--grid", type=_grid, default=(15, 20), help="H x W cells of the MV tensor (default 15x20)")
    g.add_argument("--mv-backend", default="pyav", choices=["pyav", "mvextractor"])
    g.add_argument("--max-frames", type=int, default=54_000, help="cap on decoded frames per video")
    g.add_argument("--clip-model", default="ViT-B-32")
    g.add_argument("--clip-weights", default="openai",
                   help="open_clip pretrained tag, a local checkpoint file, or 'none' (random init)")
    g.add_argument("--frames", type=int, default=8, help="K RGB frames embedded per video (default 8)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core)")
    g.add_argument("--dask-address", help="use an existing Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--shard-size", type=int, default=16, help="videos per Dask task (default 16)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--batch-size", type=int, default=64, help="CLIP images per forward pass")
    g.add_argument("--decode-timeout", type=float, default=600.0, help="seconds allowed per video")
    g.add_argument("--retry-failed", action="store_true", help="decode again videos that failed before")


def _index_params(args: argparse.Namespace, corpus: str, out: str, clip_weights: str) -> IndexParams:
    return IndexParams(
        corpus=corpus, out=out, layout=args.layout, split_dir=args.split_dir, split=args.split,
        manifest=args.manifest, allow_outside_root=args.allow_outside_root, segments=args.segments, grid=args.grid,
        mv_backend=args.mv_backend, max_frames=args.max_frames, clip_model=args.clip_model,
        clip_weights=clip_weights, clip_frames=args.frames, clip_precision=args.precision,
        clip_batch_size=args.batch_size, shard_size=args.shard_size, workers=args.workers,
        dask_address=args.dask_address, device=args.device, decode_timeout_s=args.decode_timeout,
        retry_failed=args.retry_failed,
    )


def _run_index(params: IndexParams) -> dict:
    from flows.runtime import prefect_api
    from moclip.report.index_summary import one_line

    with prefect_api(preload=("flows.index_flow",)):
        from flows.index_flow import index_corpus

        summary = index_corpus(params)
    print(one_line(summary))
    for f in summary["failures"][:20]:
        print(f"  failed: {f['video_id']}: {f['reason']}", file=sys.stderr)
    if len(summary["failures"]) > 20:
        print(f"  ... {len(summary['failures']) - 20} more failures (see the index-summary artifact)", file=sys.stderr)
    return summary


def cmd_index(args: argparse.Namespace) -> int:
    params = _index_params(args, args.path, args.out, args.clip_weights)
    summary = _run_index(params)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from moclip.clip import ClipWeightsError, resolve_weights
    from moclip.demo import generate_demo_corpus

    out = Path(args.out)
    corpus = out / "corpus"
    generate_demo_corpus(corpus, seed=args.seed)
    weights = args.clip_weights
    if weights == "auto":
        weights = "openai"
        try:
            from moclip.clip import load_clip
            from moclip.config import ClipConfig

            resolve_weights(args.clip_model, weights)
            load_clip(ClipConfig(model=args.clip_model, weights=weights), device="cpu")
        except ClipWeightsError as e:
            print(f"WARNING: {e}\nWARNING: the demo goes on with RANDOM CLIP weights (--clip-weights none); "
                  "its appearance features carry no pretrained knowledge.", file=sys.stderr)
            weights = "none"
    params = _index_params(args, str(corpus), str(out / "dataset"), weights)
    _run_index(params)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moclip", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect and Dask logs")
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", help="index a video corpus into a Parquet feature dataset")
    ix.add_argument("path", help="corpus root folder")
    ix.add_argument("--out", required=True, help="dataset folder or fsspec URL")
    ix.add_argument("--json", action="store_true", help="print the full run summary as JSON")
    _add_index_options(ix)
    ix.set_defaults(func=cmd_index)

    demo = sub.add_parser("demo", help="generate the synthetic demo corpus and run the whole job on it")
    demo.add_argument("--out", required=True, help="output folder (corpus/, dataset/ ...)")
    demo.add_argument("--seed", type=int, default=0)
    _add_index_options(demo)
    demo.set_defaults(func=cmd_demo, clip_weights="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")  # we print our own summary and errors
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # inherited by worker processes
        logging.getLogger("distributed").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except ValidationError as e:
        print(f"moclip: invalid parameters:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moclip: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a job-level error: one clear line, not a traceback
        if args.verbose:
            raise
        print(f"moclip: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
