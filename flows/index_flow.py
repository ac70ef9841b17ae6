"""Index flow: corpus -> plan (incremental) -> shards on Dask -> commit -> summary.

    list-corpus ──> plan-index ──> extract-features (subflow on Dask: one index-shard task per shard;
                                        │                a failed shard: one index-shard-isolated retry)
                                        └──> commit-index ──> manifest + summary artifact
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.states import Failed, State

from flows.runtime import (
    check_resources,
    dask_runner,
    local_decoders,
    local_workers,
    needs,
    preload_clip_in_workers,
    start_worker_forkserver,
    without_heartbeats,
)
from moclip.clip import load_clip, resolve_weights
from moclip.config import ClipConfig, RunConfig
from moclip.dataset import Store, read_manifest, write_manifest
from moclip.dataset.incremental import IndexPlan
from moclip.dataset.lock import dataset_lock
from moclip.indexing.shard import ShardResult, ShardTarget
from moclip.params import IndexParams
from moclip.precision import device_type
from moclip.progress import Progress, console
from moclip.report.index_summary import IndexSummary, one_line, summarize, to_markdown
from moclip.sharding import Shard, load_shards, make_shards, new_run_id, save_shards
from tasks.index_tasks import commit, index_shard_isolated_task, index_shard_task, list_corpus, plan


@flow(name="extract-features")
def extract_features(shard_plan: str, target: ShardTarget) -> tuple[list[ShardResult], list[dict]]:
    """Fan out one task per shard of the plan (a JSON file: see ``moclip.sharding.save_shards``). A shard whose
    task fails (e.g. a decoder crashed or hung and took its worker down) is retried once with each video decoded in
    its own process; only if that fails too is it reported as crashed, never fatal."""
    logger = get_run_logger()
    shards = load_shards(shard_plan)
    with needs(target.run.resources):  # e.g. GPU=1: only GPU workers take them
        futures = {index_shard_task.submit(s.videos, s.name, target): s for s in shards}
    n_videos = sum(len(s.videos) for s in shards)
    progress_id = create_progress_artifact(0.0, description=f"Indexing {n_videos} videos in {len(shards)} shards")
    results: list[ShardResult] = []
    crashed: list[dict] = []
    retries: dict = {}
    with Progress(n_videos, "index") as bar:  # a bar in a terminal, a line every few seconds otherwise
        def finished(shard: Shard) -> None:
            bar.update(len(shard.videos))
            update_progress_artifact(progress_id, 100.0 * bar.done / max(n_videos, 1))

        for fut in as_completed(list(futures)):
            shard = futures[fut]
            try:
                results.append(fut.result())
                finished(shard)
            except Exception as exc:  # noqa: BLE001 - any failure of a shard gets one isolated retry
                error = f"{type(exc).__name__}: {exc}"[:500]
                logger.warning("shard %s failed (%s); retrying its videos one by one in isolation", shard.name, error)
                with needs(target.run.resources):
                    retries[index_shard_isolated_task.submit(shard.videos, shard.name, target, error)] = shard
        for fut in as_completed(list(retries)):
            shard = retries[fut]
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - reported; the next run indexes the shard's videos again
                crashed.append({"shard": shard.name, "video_ids": [v["video_id"] for v in shard.videos],
                                "error": f"{type(exc).__name__}: {exc}"[:500]})
                logger.error("shard %s crashed, in isolation too: %s", shard.name, exc)
            finished(shard)
    return results, crashed


def outcome(state: State) -> object:
    """What a flow run (called with ``return_state=True``) returned, even when it ended Failed because part of its
    work was not done (its data is the summary); the exception of a run that failed by raising is raised."""
    value = state.result(raise_on_failure=False)
    if isinstance(value, BaseException):
        raise value
    return value


def warn(message: str) -> None:
    """A warning in the flow run's log and, for the CLI (which quiets Prefect's logs), on its stderr too."""
    get_run_logger().warning(message)
    console(message)


def shard_size_for(run: RunConfig, n_videos: int) -> int:
    """The run's shard size; on local workers fed by decoder pools (GPU workers: few, each fast), small enough that
    each gets a shard (the CUDA default of 128 would leave 3 of 4 GPUs idle on 100 videos)."""
    workers = local_workers(run)
    if workers and workers > 1 and run.decode_workers:
        return max(1, min(run.shard_size, -(-n_videos // workers)))
    return run.shard_size


def check_clip_weights(clip: ClipConfig, device: str) -> None:
    """Load the CLIP weights the workers will load (cached for this process), so a missing or broken checkpoint
    fails the run before any shard starts. On a machine without the GPU the workers have (the flow of a Dask
    cluster with GPU workers), they are loaded on the CPU at fp32: the same file, checked the same way."""
    if device_type(device) == "cuda" and not torch.cuda.is_available():
        load_clip(clip.model_copy(update={"precision": "fp32"}), device="cpu")
    else:
        load_clip(clip, device=device)


def report_plan(the_plan: IndexPlan, settings_hash: str) -> None:
    """Say what the plan found that a person should know before the work starts."""
    for q in the_plan.quarantined:
        warn(f"{q['file']}: unreadable ({q['reason']}); moved aside to {q['moved_to']}, its videos are indexed "
             "again by this run")
    if the_plan.settings_changed:
        warn(f"{the_plan.settings_changed} videos were indexed with other feature settings: re-indexing them with "
             f"these (settings hash {settings_hash})")
    if the_plan.restored:
        get_run_logger().info("%d deleted videos are back unchanged: restored from their kept features",
                              len(the_plan.restored))


@flow(name="index-corpus")
def index_corpus(params: IndexParams) -> IndexSummary | State:
    """Index a video corpus into a Parquet feature dataset (MV tensors + CLIP embeddings). Ends Failed (its data:
    the summary) when part of the work was not done (shards not written); a rerun does what is missing."""
    t0 = time.perf_counter()
    params, notes = params.with_recorded(read_manifest(params.out, params.storage_options))
    for note in notes:  # what the caller left unset is what the dataset recorded: said, so no surprise
        warn(f"{params.out}: {note}")
    settings = params.settings()
    # shard size, CLIP batch, resources for the device; a local GPU cluster's decoder processes
    run = local_decoders(params.run.for_device(device_type(params.run.device)))
    weights = resolve_weights(settings.clip.model, settings.clip.weights, settings.clip.activation)
    settings_hash = settings.settings_hash(weights.weights_id)

    store = Store(params.out, params.storage_options)
    with dataset_lock(store, run.lock_timeout_s, on_wait=warn):  # one writer at a time (moclip.dataset.lock)
        run_id = new_run_id()  # names this run's shards and its details file
        videos = list_corpus(params)
        the_plan = plan(videos, params, settings_hash)
        report_plan(the_plan, settings_hash)
        results: list[ShardResult] = []
        crashed: list[dict] = []
        if the_plan.to_index:
            if local_workers(run):  # local workers' fork server (unless the CLI started it): boots while we check
                preload_clip_in_workers(settings.clip, run.device)
                start_worker_forkserver()
            check_clip_weights(settings.clip, run.device)  # fail fast on missing weights, before Dask
            if run.dask_address:
                check_resources(run.dask_address, run.resources)
            shards = make_shards(the_plan.to_index, shard_size_for(run, len(the_plan.to_index)), run_id,
                                 local_workers(run))
            with tempfile.TemporaryDirectory(prefix="moclip-plan-") as tmp, without_heartbeats():
                save_shards(shards, Path(tmp) / "shards.json")
                target = ShardTarget(features=settings, run=run, out=params.out, settings_hash=settings_hash,
                                     storage_options=params.storage_options)
                results, crashed = extract_features.with_options(task_runner=dask_runner(run))(
                    str(Path(tmp) / "shards.json"), target)
        commit(the_plan, params)

        summary = summarize(n_corpus=len(videos), plan=the_plan, results=results, crashed=crashed,
                            wall_s=time.perf_counter() - t0, out=params.out, settings_hash=settings_hash,
                            clip_weights_id=weights.weights_id, clip_random=weights.kind == "none",
                            skipped_files=videos.attrs.get("skipped_files"), notes=notes)
        write_manifest(store, settings=settings, settings_hash=settings_hash,
                       clip_weights_id=weights.weights_id, clip_random=weights.kind == "none",
                       run_summary=summary.for_manifest(), run_details=summary.details(), run_id=run_id,
                       corpus=params.corpus.model_dump())
    create_markdown_artifact(to_markdown(summary), key="index-summary", description=one_line(summary))
    get_run_logger().info(one_line(summary))
    if not summary.complete:  # a state a Prefect automation (or `prefect deployment run --watch`) sees
        return Failed(message=summary.incomplete_message(), data=summary)
    return summary
