"""Index flow: corpus -> plan (incremental) -> shards on Dask -> commit -> summary.

    list-corpus ──> plan-index ──> extract-features (subflow on Dask: one index-shard task per shard;
                                        │                a failed shard: one index-shard-isolated retry;
                                        │                a long video: one index-range task per range, then
                                        │                commit-ranges for its row)
                                        └──> commit-index ──> manifest + summary artifact
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from flows.cluster import check_resources, dask_runner, local_plan
from flows.fanout import FanOut, error_text
from flows.processes import preload_clip_in_workers, start_worker_forkserver
from flows.server import without_heartbeats
from moclip.clip import load_clip, resolve_weights
from moclip.clip.pretrained import WeightsSpec
from moclip.config import ClipConfig, FeatureSettings, RunConfig
from moclip.dataset import Store, read_manifest, write_manifest
from moclip.dataset.incremental import IndexPlan
from moclip.dataset.lock import dataset_lock
from moclip.indexing.ranges import RangeOutcome, plan_long_videos
from moclip.indexing.shard import ShardResult, ShardTarget
from moclip.params import IndexParams
from moclip.precision import device_type
from moclip.progress import console
from moclip.report.index_summary import IndexSummary, one_line, summarize, to_markdown
from moclip.runplan import RunPlan
from moclip.sharding import (
    LongVideo,
    Shard,
    load_long_videos,
    load_shards,
    long_video_shards,
    make_shards,
    new_run_id,
    save_long_videos,
    save_shards,
)
from tasks.index_tasks import (
    commit,
    commit_ranges_task,
    index_range_task,
    index_shard_isolated_task,
    index_shard_task,
    list_corpus,
    plan_index_task,
)


@flow(name="extract-features")
def extract_features(shard_plan: str, target: ShardTarget,
                     long_plan: str | None = None) -> tuple[list[ShardResult], list[dict]]:
    """Fan out one task per shard of the plan (a JSON file: see ``moclip.sharding.save_shards``), and one per range
    of each long video (``long_plan``, ``moclip.sharding.save_long_videos``; submitted first: they are the long
    poles), then one that assembles each long video's row when its ranges are in. A shard whose task fails (e.g. a
    decoder crashed or hung and took its worker down) is retried once with each video decoded in its own process, a
    range once on any worker; only if that fails too is it reported (a shard as crashed, a range as its video's
    reason), never fatal."""
    shards = {s.name: s for s in load_shards(shard_plan)}
    long = {lv.name: lv for lv in (load_long_videos(long_plan) if long_plan else [])}
    n = sum(len(s.videos) for s in shards.values()) + len(long)
    results: list[ShardResult] = []
    crashed: list[dict] = []
    ranges = RangeTasks(long, target)
    with FanOut(n, "index", "video", f"Indexing {n} videos in {len(shards) + len(long)} shards",
                target.run.resources) as fan:
        ranges.submit_all(fan)
        for s in shards.values():
            fan.submit(s.name, index_shard_task, s.videos, s.name, target)
        for item, value in fan.outcomes():
            if isinstance(item, tuple):  # a long video's range, or its commit
                done = ranges.outcome(fan, item, value)
            else:
                done = shard_outcome(fan, shards[item], value, target)
            if done is None:
                continue
            if isinstance(done, ShardResult):
                results.append(done)
            else:
                crashed.append(done)
            fan.advance(len(shards[item].videos) if item in shards else 1)
    return results, crashed


def shard_outcome(fan: FanOut, shard: Shard, value: object, target: ShardTarget) -> ShardResult | dict | None:
    """A shard's task ended: its result; or its one isolated retry submitted (None); or, the retry failed too, what
    the summary reports as crashed (the next run indexes its videos again)."""
    if isinstance(value, BaseException) and shard.name not in fan.retried:
        warn(f"shard {shard.name} failed ({error_text(value)}); retrying its videos one by one in isolation")
        fan.retried.add(shard.name)
        fan.submit(shard.name, index_shard_isolated_task, shard.videos, shard.name, target, error_text(value))
        return None
    if isinstance(value, BaseException):
        get_run_logger().error("shard %s crashed, in isolation too: %s", shard.name, value)
        return {"shard": shard.name, "video_ids": [v["video_id"] for v in shard.videos], "error": error_text(value)}
    return value


class RangeTasks:
    """The long videos' ranges in flight: a crashed range is tried once more on any worker (then its video fails,
    naming it), and a video's row is committed by one more task once all its ranges are in."""

    def __init__(self, long: dict[str, LongVideo], target: ShardTarget) -> None:
        self.long, self.target = long, target
        self.got: dict[str, dict[int, RangeOutcome]] = {name: {} for name in long}

    def submit_all(self, fan: FanOut) -> None:
        for name, lv in self.long.items():
            for i in range(len(lv.ranges)):
                fan.submit(("range", name, i), index_range_task, lv.ranges, i, self.target)

    def outcome(self, fan: FanOut, item: tuple, value: object) -> ShardResult | dict | None:
        kind, name, *rest = item
        lv = self.long[name]
        if kind == "commit":
            if isinstance(value, BaseException):
                get_run_logger().error("%s: committing its ranges failed: %s", lv.video["path"], value)
                return {"shard": name, "video_ids": [lv.video["video_id"]], "error": error_text(value)}
            return value
        i = rest[0]
        if isinstance(value, BaseException):
            if item not in fan.retried:
                warn(f"{lv.video['path']}: {lv.ranges.describe(i)} failed ({error_text(value)}); trying it again")
                fan.retried.add(item)
                fan.submit(item, index_range_task, lv.ranges, i, self.target)
                return None
            value = RangeOutcome(index=i, error=f"{lv.ranges.describe(i)}: {error_text(value)} (twice)")
        self.got[name][i] = value
        if len(self.got[name]) == len(lv.ranges):
            outcomes = [self.got[name][k] for k in range(len(lv.ranges))]
            fan.submit(("commit", name), commit_ranges_task, lv.video, lv.ranges, outcomes, name, self.target)
        return None


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


def load_workers_clip(clip: ClipConfig, device: str) -> None:
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


@dataclass
class IndexJob:
    """One index run's fixed inputs: the parameters (with what the dataset recorded filled in), the run's plan for
    this device, the CLIP weights and the settings hash every row carries."""

    params: IndexParams
    notes: list[str]
    settings: FeatureSettings
    plan: RunPlan
    run: RunConfig
    weights: WeightsSpec
    settings_hash: str

    @property
    def store(self) -> Store:
        return Store(self.params.out, self.params.storage_options)


def prepare(params: IndexParams) -> IndexJob:
    """What the caller left unset is what the dataset recorded (said, so no surprise); the device's shard size, CLIP
    batch and resources; a local GPU cluster's decoder processes."""
    params, notes = params.with_recorded(read_manifest(params.out, params.storage_options))
    for note in notes:
        warn(f"{params.out}: {note}")
    settings = params.settings()
    plan = local_plan(params.run)
    weights = resolve_weights(settings.clip.model, settings.clip.weights, settings.clip.activation)
    return IndexJob(params, notes, settings, plan, plan.run(params.run), weights,
                    settings.settings_hash(weights.weights_id))


def extract(job: IndexJob, the_plan: IndexPlan, run_id: str) -> tuple[list[ShardResult], list[dict]]:
    """The plan's videos in shards, one task each on the Dask workers (the ``extract-features`` subflow); the CLIP
    weights and the cluster's resources checked first, so a run that cannot work fails before any shard starts."""
    if not the_plan.to_index:
        return [], []
    run, clip, workers = job.run, job.settings.clip, job.plan.workers
    if workers:  # local workers' fork server (unless the CLI started it): boots while we check
        preload_clip_in_workers(clip, run.device)
        start_worker_forkserver()
    load_workers_clip(clip, run.device)
    if run.dask_address:
        check_resources(run.dask_address, run.resources)
    target = ShardTarget(features=job.settings, run=run, out=job.params.out, settings_hash=job.settings_hash,
                         storage_options=job.params.storage_options)
    long = long_video_shards(the_plan.to_index, plan_long_videos(the_plan.to_index, target), run_id)
    short = [v for v in the_plan.to_index if v["video_id"] not in {lv.video["video_id"] for lv in long}]
    shards = make_shards(short, job.plan.shard_size_for(len(short)), run_id, workers) if short else []
    with tempfile.TemporaryDirectory(prefix="moclip-plan-") as tmp, without_heartbeats():
        save_shards(shards, Path(tmp) / "shards.json")
        save_long_videos(long, Path(tmp) / "long.json")
        return extract_features.with_options(task_runner=dask_runner(run))(
            str(Path(tmp) / "shards.json"), target, str(Path(tmp) / "long.json") if long else None)


def record(job: IndexJob, videos: pd.DataFrame, the_plan: IndexPlan, results: list[ShardResult],
           crashed: list[dict], run_id: str, t0: float) -> IndexSummary:
    """The run's summary, and the dataset's manifest that records it (with the settings and the corpus)."""
    random = job.weights.kind == "none"
    summary = summarize(n_corpus=len(videos), plan=the_plan, results=results, crashed=crashed,
                        wall_s=time.perf_counter() - t0, out=job.params.out, settings_hash=job.settings_hash,
                        clip_weights_id=job.weights.weights_id, clip_random=random,
                        skipped_files=videos.attrs.get("skipped_files"), notes=job.notes,
                        run_plan=job.plan.describe())
    write_manifest(job.store, settings=job.settings, settings_hash=job.settings_hash,
                   clip_weights_id=job.weights.weights_id, clip_random=random, run_summary=summary.for_manifest(),
                   run_details=summary.details(), run_id=run_id, corpus=job.params.corpus.model_dump())
    return summary


def publish(summary: IndexSummary) -> IndexSummary | State:
    """The index-summary artifact and log line; Failed (its data: the summary) when shards were not written."""
    create_markdown_artifact(to_markdown(summary), key="index-summary", description=one_line(summary))
    get_run_logger().info(one_line(summary))
    if not summary.complete:  # a state a Prefect automation (or `prefect deployment run --watch`) sees
        return Failed(message=summary.incomplete_message(), data=summary)
    return summary


@flow(name="index-corpus")
def index_corpus(params: IndexParams) -> IndexSummary | State:
    """Index a video corpus into a Parquet feature dataset (MV tensors + CLIP embeddings). Ends Failed (its data:
    the summary) when part of the work was not done (shards not written); a rerun does what is missing."""
    t0 = time.perf_counter()
    job = prepare(params)
    with dataset_lock(job.store, job.run.lock_timeout_s, on_wait=warn):  # one writer at a time (moclip.dataset.lock)
        run_id = new_run_id()  # names this run's shards and its details file
        videos = list_corpus(job.params)
        the_plan = plan_index_task(videos, job.params, job.settings_hash)
        report_plan(the_plan, job.settings_hash)
        results, crashed = extract(job, the_plan, run_id)
        commit(the_plan, job.params)
        summary = record(job, videos, the_plan, results, crashed, run_id, t0)
    return publish(summary)
