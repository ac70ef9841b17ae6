"""The CLI's jobs: each starts (or reuses) a local Prefect server, runs the job's flow, and prints a summary.

Checks that need no server come first (a missing corpus fails in a second, not after a minute of start-up).
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from moclip.corpus import check_corpus
from moclip.params import (
    DemoParams,
    EvaluateParams,
    IndexParams,
    LabelParams,
    ReviewExportParams,
    ReviewImportParams,
    ReviewSelectParams,
    SearchParams,
    TrainParams,
)

if TYPE_CHECKING:
    import pandas as pd

    from moclip.report.index_summary import IndexSummary
    from moclip.train.results import EvaluationResults


class JobFailed(RuntimeError):
    """The job ran but did not finish its work (e.g. shards not written); the message says what to do, and
    ``summary`` is what the job did."""

    def __init__(self, message: str, summary: object = None):
        super().__init__(message)
        self.summary = summary


def run_index(params: IndexParams, server_running: bool = False) -> IndexSummary:
    check_corpus(params.corpus)  # a missing corpus fails now, before the server and the workers start
    from flows.server import prefect_api
    from moclip.dataset import read_manifest
    from moclip.report.index_summary import one_line

    # the workers' CLIP: the one the flow will use, settings left unset taken from the dataset (as the flow does)
    workers_clip = params.with_recorded(read_manifest(params.out, params.storage_options))[0].workers_clip()
    with contextlib.nullcontext() if server_running else prefect_api(("flows.index_flow",), workers_clip):
        from flows.index_flow import index_corpus, outcome

        summary = outcome(index_corpus(params, return_state=True))
    print(one_line(summary))
    for f in summary.failures[:20]:
        print(f"  failed: {f.video_id}: {f.reason}", file=sys.stderr)
    if len(summary.failures) > 20:
        print(f"  ... {len(summary.failures) - 20} more failures (see the index-summary artifact)", file=sys.stderr)
    for c in summary.crashed_shards:  # e.g. the disk filled up: the shard's videos are not in the dataset
        print(f"  shard not written: {c.shard} ({len(c.video_ids)} videos): {c.error}", file=sys.stderr)
    print_index_notes(summary)
    if not summary.complete:  # an incomplete dataset is not a success; a rerun indexes only what is missing
        raise JobFailed(summary.incomplete_message(), summary)
    return summary


def print_index_notes(summary: IndexSummary) -> None:
    """Files under the root that an index run (of ``moclip index`` or of a label job) skipped, by reason, on stderr
    (settings taken from the dataset and unreadable files moved aside are said by the flow as it runs)."""
    from moclip.corpus.table import skipped_line

    if summary.skipped_files:
        print(f"  {skipped_line(summary.skipped_files)}", file=sys.stderr)


def run_train(params: TrainParams) -> str:
    from flows.server import prefect_api

    with prefect_api(preload=("flows.train_flow",)):
        from flows.train_flow import train_model

        return train_model(params)


def print_results(out: dict) -> None:
    r: EvaluationResults = out["results"]
    if r.clip.random_init:
        from moclip.report import RANDOM_CLIP_WARNING

        print(f"WARNING: {RANDOM_CLIP_WARNING}")
    line = ", ".join(f"{k} {v.top1 * 100:.1f}%" for k, v in r.methods.items())
    print(f"test top-1 ({r.dataset.n_test} videos): {line}")
    print(f"report: {out['report_html']} and {out['report_md']}")


def run_evaluate(params: EvaluateParams) -> dict:
    from flows.server import prefect_api

    with prefect_api(preload=("flows.train_flow",)):
        from flows.train_flow import evaluate_model

        out = evaluate_model(params)
    print_results(out)
    return out


def run_label(params: LabelParams) -> dict:
    check_corpus(params.corpus)  # before any server
    from flows.server import prefect_api
    from moclip.inference import read_meta

    workers_clip = None
    with contextlib.suppress(Exception):  # a bad model path is reported by the flow itself
        features = None if params.model is None else read_meta(params.model).features.settings
        workers_clip = params.index_params(features).workers_clip()
    with prefect_api(("flows.label_flow",), workers_clip):
        from flows.index_flow import outcome
        from flows.label_flow import label_archive

        out = outcome(label_archive(params, return_state=True))
    print_index_notes(out["index"])
    top = ", ".join(f"{k} {v}" for k, v in list(out["top1_counts"].items())[:10])
    print(f"{out['n_labelled']} videos labelled ({out['predicted']} predicted in this run, {out['kept']} unchanged; "
          f"{out['n_failed']} failed to index): {top}")  # failed rows in the features, this run's and earlier
    if params.model is None:
        print("zero-shot labels (CLIP over the vocabulary): their probabilities are not calibrated")
    for shard, reason in out["failed"][:20]:
        print(f"  not labelled: shard {shard}: {reason}", file=sys.stderr)
    print(f"predictions: {out['predictions']}/" + (f" and {out['csv']}" if out["csv"] else ""))
    if out.get("windows"):
        print(f"windows: {out['windows']}/, segments: {out['segments']}/, timelines: {out['timelines']}")
    problems = [p for p in (out.get("index_incomplete"), f"{len(out['failed'])} feature shards were not labelled; "
                            "rerun the same command to label them" if out["failed"] else None) if p]
    if problems:
        raise JobFailed("; ".join(problems), out)
    return out


def run_search(params: SearchParams) -> pd.DataFrame:
    """Search without Prefect (an interactive query: no server, no cluster): print the hits and, with ``out``, write
    results.parquet and the contact sheet results.html. A bad query or dataset: JobFailed, nothing written."""
    from pathlib import Path

    from moclip.progress import console
    from moclip.report.contact_sheet import write_contact_sheet
    from moclip.search.catalog import SearchError
    from moclip.search.run import search, write_results

    try:
        result = search(params, log=console)
    except SearchError as e:
        raise JobFailed(str(e), None) from e
    hits = result.hits
    how = "exact" if result.exact else "approximate index"
    print(f"{len(hits)} hits for {result.query} among {result.catalog.items} "
          f"{'items' if result.catalog.items != 1 else 'item'} ({how})")
    for r in hits.itertuples():
        dup = f"  (+{r.duplicates} near-duplicates)" if r.duplicates else ""
        print(f"{r.rank:4d}  {r.score:.3f}  {r.path}  {r.start_s:.1f}-{r.end_s:.1f} s{dup}")
    if params.out:
        write_results(hits, params.out)
        page = write_contact_sheet(hits, Path(params.out), f"moclip search: {result.query}")
        print(f"results: {Path(params.out) / 'results.parquet'}, contact sheet: {page}")
    return hits


def run_review_select(params: ReviewSelectParams) -> pd.DataFrame:
    """Pick a review batch (no Prefect: a quick job on one machine) and say what was picked."""
    from moclip.review.batch import make_batch

    try:
        items = make_batch(params.labels, params.n, params.out, params.strategy, params.pool_factor, params.per_class,
                           params.seed, params.diverse, params.storage_options)
    except ValueError as e:
        raise JobFailed(str(e), None) from e
    counts = ", ".join(f"{k} {v}" for k, v in items["top1"].value_counts().items())
    print(f"{len(items)} items to review ({params.strategy}) -> {params.out}/items.parquet; predicted: {counts}")
    return items


def run_review_export(params: ReviewExportParams) -> None:
    import os

    from moclip.review.batch import export_files, export_to_label_studio
    from moclip.review.client import LabelStudioError

    try:
        tasks, config = export_files(params.batch, params.media_url, params.document_root)
        if params.url:
            done = export_to_label_studio(params.batch, params.url,
                                          params.token or os.environ.get("MOCLIP_LABEL_STUDIO_TOKEN", ""),
                                          params.project, params.media_url, params.document_root)
    except (ValueError, LabelStudioError) as e:
        raise JobFailed(str(e), None) from e
    if params.url:
        print(f"Label Studio project {done.title!r} (id {done.project}{', created' if done.created else ''}): "
              f"{done.imported} tasks imported, {done.already} already there")
    else:
        print(f"Label Studio tasks: {tasks}, labelling config: {config} (import them in the project's settings)")


def run_review_import(params: ReviewImportParams) -> None:
    import json as _json
    import os

    from moclip.review.batch import import_reviews, reviews_from_label_studio
    from moclip.review.client import LabelStudioError

    if params.from_label_studio:
        try:
            reviewed, rep, _ = reviews_from_label_studio(
                params.labels, str(params.url), params.token or os.environ.get("MOCLIP_LABEL_STUDIO_TOKEN", ""),
                params.project, params.storage_options)
        except (ValueError, LabelStudioError) as e:
            raise JobFailed(str(e), None) from e
    else:
        try:
            with open(str(params.export), encoding="utf-8") as f:
                exported = _json.load(f)
        except (OSError, ValueError) as e:
            raise JobFailed(f"{params.export}: not a Label Studio JSON export ({e})", None) from e
        if not isinstance(exported, list):
            raise JobFailed(f"{params.export}: not a Label Studio JSON export (a list of tasks)", None)
        reviewed, rep = import_reviews(params.labels, exported, params.storage_options)
    print(f"{rep.tasks} moclip tasks: {rep.answered} answered, {rep.skipped} skipped, {rep.unanswered} not yet; "
          f"{rep.reviewed} reviewed videos or ranges, the model right on {rep.model_right}; "
          f"{len(reviewed)} reviewed in all -> {params.labels}/_review/reviewed.parquet")
    for line in rep.disagreements[:20]:
        print(f"  {line}", file=sys.stderr)


def demo_clip_weights(params: DemoParams) -> str:
    """The demo's CLIP weights: the requested ones, or random ones (said loudly) when they cannot be loaded here."""
    from moclip.clip import ClipWeightsError, load_clip

    clip = params.features.clip
    if not params.random_clip_fallback or clip.weights == "none":
        return clip.weights
    try:
        load_clip(clip.model_copy(update={"precision": "fp32"}), device="cpu")  # resolves, then loads
    except ClipWeightsError as e:
        from moclip.report import RANDOM_CLIP_WARNING

        print(f"WARNING: {e}\nWARNING: the demo goes on with --clip-weights none. {RANDOM_CLIP_WARNING}",
              file=sys.stderr)
        return "none"
    return clip.weights


def run_demo(params: DemoParams) -> dict:
    from moclip.demo import generate_demo_corpus

    index = params.index_params()
    generate_demo_corpus(index.corpus.root, seed=params.corpus_seed)
    index = params.index_params(demo_clip_weights(params))
    from flows.server import prefect_api

    with prefect_api(("flows.index_flow", "flows.train_flow"), index.workers_clip()):
        from flows.train_flow import train_and_evaluate

        run_index(index, server_running=True)
        result = train_and_evaluate(params.train_params())
    print_results(result)
    return result
