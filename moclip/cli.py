"""`moclip` command line: the same jobs as the Prefect deployments, without a server to set up.

The library never imports Prefect; commands that run flows import them when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
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


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


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
    g.add_argument("--max-frames", type=int, default=216_000,
                   help="cap on decoded frames per video (default: 2 h at 30 fps)")
    g.add_argument("--clip-model", default="ViT-B-32")
    g.add_argument("--clip-weights", default="openai",
                   help="open_clip pretrained tag, a local checkpoint file, or 'none' (random init)")
    g.add_argument("--clip-activation", default="auto", choices=["auto", "gelu", "quickgelu"],
                   help="CLIP activation (auto: from the tag, the model config, or the checkpoint where the file "
                        "tells; OpenAI-trained weights need quickgelu)")
    g.add_argument("--frames", type=int, default=8, help="K RGB frames embedded per video (default 8)")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="CLIP precision; auto = fp16 on CUDA, bf16 on CPUs with native bf16, else fp32")
    g = p.add_argument_group("execution")
    g.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core)")
    g.add_argument("--dask-address", help="use an existing Dask scheduler, e.g. tcp://host:8786")
    g.add_argument("--shard-size", type=int, default=16, help="videos per Dask task (default 16)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--batch-size", type=int, default=64, help="CLIP images per forward pass")
    g.add_argument("--decode-timeout", type=float, default=1800.0,
                   help="seconds allowed per video (lower it for archives of short clips)")
    g.add_argument("--decode-hard-timeout", type=float,
                   help="seconds after which a decoder stuck in one video is killed (default: decode timeout + 60)")
    g.add_argument("--retry-failed", action="store_true", help="decode again videos that failed before")
    g.add_argument("--storage-options", type=_json_object, default={},
                   help='fsspec options for --out as JSON, e.g. \'{"client_kwargs": {"endpoint_url": "http://..."}}\'')


def _index_params(args: argparse.Namespace, corpus: str, out: str, clip_weights: str) -> IndexParams:
    return IndexParams(
        corpus=corpus, out=out, layout=args.layout, split_dir=args.split_dir, split=args.split,
        manifest=args.manifest, allow_outside_root=args.allow_outside_root, segments=args.segments, grid=args.grid,
        mv_backend=args.mv_backend, max_frames=args.max_frames, clip_model=args.clip_model,
        clip_weights=clip_weights, clip_activation=args.clip_activation, clip_frames=args.frames,
        clip_precision=args.precision, clip_batch_size=args.batch_size, shard_size=args.shard_size,
        workers=args.workers, dask_address=args.dask_address, device=args.device, decode_timeout_s=args.decode_timeout,
        decode_hard_timeout_s=args.decode_hard_timeout, retry_failed=args.retry_failed,
        storage_options=args.storage_options,
    )


def _workers_clip(params: IndexParams) -> tuple | None:
    """What the local workers' fork server should build for them (CLIP config, device); None on a Dask cluster."""
    run = params.run_config()
    return None if run.dask_address else (params.settings().clip, run.device)


def _run_index(params: IndexParams, server_running: bool = False) -> dict:
    params.corpus_spec().check()  # a missing corpus fails now, before the server and the workers start
    from flows.runtime import prefect_api
    from moclip.report.index_summary import one_line

    with contextlib.nullcontext() if server_running else prefect_api(("flows.index_flow",), _workers_clip(params)):
        from flows.index_flow import index_corpus

        summary = index_corpus(params)
    print(one_line(summary))
    for f in summary["failures"][:20]:
        print(f"  failed: {f['video_id']}: {f['reason']}", file=sys.stderr)
    if len(summary["failures"]) > 20:
        print(f"  ... {len(summary['failures']) - 20} more failures (see the index-summary artifact)", file=sys.stderr)
    for c in summary["crashed_shards"]:  # e.g. the disk filled up: the shard's videos are not in the dataset
        print(f"  shard not written: {c['shard']} ({len(c['video_ids'])} videos): {c['error']}", file=sys.stderr)
    return summary


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--mvnet", default="mvnet-r21d", help="MV-net architecture (moclip/model_configs) or JSON path")
    g.add_argument("--mv-epochs", type=int, default=40)
    g.add_argument("--head-epochs", type=int, default=100)
    g.add_argument("--batch-size-train", dest="train_batch", type=int, default=64)
    g.add_argument("--patience", type=int, default=10, help="early-stopping patience (epochs)")
    g.add_argument("--no-flip", dest="flip", action="store_false",
                   help="no horizontal-flip augmentation (for classes that depend on left vs right)")
    g.add_argument("--val-fraction", type=float, default=0.15)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--prompts", default="short", choices=["short", "clip-ucf101", "plain"],
                   help="zero-shot prompt ensemble")
    g.add_argument("--train-precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="training forward passes (auto: bf16 where the CPU/GPU has it natively)")


def _train_params(args: argparse.Namespace, dataset: str, model_out: str, report_out: str | None):
    from moclip.params import TrainParams

    return TrainParams(
        dataset=dataset, model_out=model_out, report_out=report_out, mvnet=args.mvnet, mv_epochs=args.mv_epochs,
        head_epochs=args.head_epochs, batch_size=args.train_batch, patience=args.patience, flip=args.flip,
        val_fraction=args.val_fraction, seed=args.seed, device=getattr(args, "device", "auto"), prompts=args.prompts,
        precision=args.train_precision,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from flows.runtime import prefect_api

    params = _train_params(args, args.dataset, args.out, None)
    with prefect_api(preload=("flows.train_flow",)):
        from flows.train_flow import train_model

        train_model(params)
    print(f"model bundle written to {args.out}")
    return 0


def _print_results(out: dict) -> None:
    r = out["results"]
    if r["clip"]["random_init"]:
        print("WARNING: CLIP weights were RANDOM: zero-shot and CLIP-probe numbers measure nothing about CLIP.")
    line = ", ".join(f"{k} {v['top1'] * 100:.1f}%" for k, v in r["methods"].items())
    print(f"test top-1 ({r['dataset']['n_test']} videos): {line}")
    print(f"report: {out['report_html']} and {out['report_md']}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from flows.runtime import prefect_api

    with prefect_api(preload=("flows.train_flow",)):
        from flows.train_flow import evaluate_model

        out = evaluate_model(args.dataset, args.model, args.out, args.device)
    _print_results(out)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from moclip.corpus import CorpusSpec
    from moclip.label import index_settings_of
    from moclip.params import LabelParams

    extra = [c.strip() for c in (args.extra_classes or "").split(",") if c.strip()]
    params = LabelParams(corpus=args.path, model=args.model, out=args.out, layout=args.layout,
                         manifest=args.manifest, top_k=args.top_k, extra_classes=extra, shard_size=args.shard_size,
                         workers=args.workers, dask_address=args.dask_address, device=args.device)
    CorpusSpec(root=params.corpus, layout=params.layout, manifest=params.manifest).check()  # before any server
    from flows.runtime import prefect_api

    workers_clip = None
    with contextlib.suppress(Exception):  # a bad model path is reported by the flow itself
        workers_clip = _workers_clip(params.index_params(index_settings_of(params.model)))
    with prefect_api(("flows.label_flow",), workers_clip):
        from flows.label_flow import label_archive

        out = label_archive(params)
    top = ", ".join(f"{k} {v}" for k, v in list(out["top1_counts"].items())[:10])
    print(f"{out['n_labelled']} videos labelled ({out['n_failed']} failed to index): {top}")
    print(f"predictions: {out['predictions']} and {out['csv']}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    params = _index_params(args, args.path, args.out, args.clip_weights)
    summary = _run_index(params)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    if summary["crashed_shards"]:  # an incomplete dataset is not a success; a rerun indexes only what is missing
        n = sum(len(c["video_ids"]) for c in summary["crashed_shards"])
        print(f"moclip: error: {len(summary['crashed_shards'])} shards ({n} videos) were not written to {args.out}; "
              "rerun the same command to index them", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from moclip.clip import ClipWeightsError
    from moclip.demo import generate_demo_corpus

    out = Path(args.out)
    corpus = out / "corpus"
    generate_demo_corpus(corpus, seed=args.corpus_seed)
    weights = args.clip_weights
    if weights == "auto":
        weights = "openai"
        try:
            from moclip.clip import load_clip
            from moclip.config import ClipConfig

            load_clip(ClipConfig(model=args.clip_model, weights=weights, activation=args.clip_activation),
                      device="cpu")  # resolves, then loads
        except ClipWeightsError as e:
            print(f"WARNING: {e}\nWARNING: the demo goes on with RANDOM CLIP weights (--clip-weights none); "
                  "its appearance features carry no pretrained knowledge.", file=sys.stderr)
            weights = "none"
    params = _index_params(args, str(corpus), str(out / "dataset"), weights)
    # the demo's motion classes depend on direction (left vs right, clockwise vs counter-clockwise): no flips
    args.flip = False
    tp = _train_params(args, str(out / "dataset"), str(out / "model"), str(out))
    from flows.runtime import prefect_api

    with prefect_api(("flows.index_flow", "flows.train_flow"), _workers_clip(params)):
        from flows.train_flow import train_and_evaluate

        _run_index(params, server_running=True)
        result = train_and_evaluate(tp)
    _print_results(result)
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

    tr = sub.add_parser("train", help="train the MV net, fusion head, CLIP probe and zero-shot text on a dataset")
    tr.add_argument("dataset", help="indexed dataset folder or URL")
    tr.add_argument("--out", required=True, help="model bundle folder")
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _add_train_options(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate a model bundle on the dataset's test split and write a report")
    ev.add_argument("dataset", help="indexed dataset folder or URL")
    ev.add_argument("--model", required=True, help="model bundle folder")
    ev.add_argument("--out", required=True, help="report folder (report.md, report.html, plots/)")
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.set_defaults(func=cmd_evaluate)

    lb = sub.add_parser("label", help="label an archive with a trained model (indexes it first, incrementally)")
    lb.add_argument("path", help="archive folder")
    lb.add_argument("--model", required=True, help="model bundle folder")
    lb.add_argument("--out", required=True, help="output folder: predictions.parquet, predictions.csv, features/")
    lb.add_argument("--top-k", type=int, default=5)
    lb.add_argument("--extra-classes", help='comma-separated class names scored zero-shot by CLIP, e.g. "a,b,c"')
    lb.add_argument("--layout", default="unlabeled", choices=["unlabeled", "manifest", "folder"])
    lb.add_argument("--manifest", help="CSV manifest (layout=manifest)")
    lb.add_argument("--workers", type=int)
    lb.add_argument("--dask-address")
    lb.add_argument("--shard-size", type=int, default=16)
    lb.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    lb.set_defaults(func=cmd_label)

    demo = sub.add_parser("demo", help="generate the synthetic demo corpus and run the whole job on it")
    demo.add_argument("--out", required=True, help="output folder: corpus/, dataset/, model/, report.html, report.md")
    demo.add_argument("--corpus-seed", type=int, default=0)
    _add_index_options(demo)
    _add_train_options(demo)
    demo.set_defaults(func=cmd_demo, clip_weights="auto")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MOCLIP_CONSOLE", "1")  # job progress messages on stderr (moclip.progress.console)
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


def entry() -> None:
    """The console script: ``main``, then exit without the interpreter's final garbage collection over every
    object torch, open_clip and Prefect created (3-4 s on 2 cores; objects are still freed and exit hooks run)."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
