"""Label an archive: index it (incrementally, with the model's feature settings) -> predict shard by shard on Dask.
With no model, CLIP zero-shot over a vocabulary labels it (indexed with the job's feature options).

    index-corpus (subflow) ──> predict-archive (subflow): plan-labels ──> label-groups (subflow on Dask: one
                                                           label-shards task per group of feature shards: a
                                                           prediction file per feature shard)
                                                      ──> export-csv ──> (with --window: timelines)
                                                      ──> _labels.json + label-summary artifact

Predictions are incremental (``moclip.label.plan``): a rerun predicts only the videos that are new or changed since
the last, drops deleted ones, and predicts everything again when the model or the label options changed. No
process holds a row per video: workers read a shard at a time, the flow adds up per-shard counts.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed, State

from flows.cluster import check_resources, dask_runner, local_plan
from flows.fanout import FanOut, error_text
from flows.index_flow import index_corpus, outcome, warn
from flows.processes import start_worker_forkserver
from flows.server import without_heartbeats
from moclip.dataset import Store, read_manifest, read_settings
from moclip.dataset.lock import LABEL_LOCK, dataset_lock
from moclip.inference import Labeller, Predictor, ZeroShotModel
from moclip.label import PREDICTIONS_DIR, GroupResult, LabelPlan, LabelTarget, ShardWork, group_work, label_key
from moclip.label.export import (
    ACTIVITYNET_JSON,
    LABELS_MANIFEST,
    LEGACY_PREDICTIONS,
    PREDICTIONS_CSV,
    csv_stamp,
    write_label_manifest,
)
from moclip.label.plan import parse_name
from moclip.label.timeline import SEGMENTS_DIR, WINDOWS_DIR
from moclip.label.worker import quarantine_unreadable_siblings, remove_orphan_siblings, remove_predictions
from moclip.params import LabelParams
from moclip.report.label_summary import distribution_markdown, mv_source_warning
from moclip.report.timeline import PAGE_FILE
from moclip.runplan import RunPlan
from tasks.label_tasks import export_csv_task, label_shards_task, plan_labels_task, timelines_task


@flow(name="label-groups")
def label_groups(groups_file: str, target: LabelTarget,
                 resources: dict[str, float] | None = None) -> tuple[GroupResult, float]:
    """One task per group of shards (a JSON file of groups: flow parameters must stay small); a group whose task
    fails (its worker died) has its shards reported failed: they are predicted on the next run. Returns the tasks'
    results added up, and the seconds from the first submission to the last result. ``resources``: what a task
    needs of its worker (GPU=1 when it predicts on CUDA on a cluster: only GPU workers have the device)."""
    groups = [[ShardWork(**w) for w in g] for g in json.loads(Path(groups_file).read_text())]
    t0 = time.perf_counter()  # the cluster is up: from here on, prediction
    n = sum(len(g) for g in groups)
    total = GroupResult()
    with FanOut(n, "label", "shard", f"Labelling {n} feature shards in {len(groups)} tasks", resources) as fan:
        for i, group in enumerate(groups):
            fan.submit(i, label_shards_task, group, target)
        for i, value in fan.outcomes():
            if isinstance(value, BaseException):  # reported; the shards have no current file: the next run retries
                total.failed += [(w.feature_shard, error_text(value)) for w in groups[i]]
            else:
                total.add(value)
            fan.advance(len(groups[i]))
    return total, time.perf_counter() - t0


def set_aside(bad: list[tuple[str, str, str]], result: GroupResult, owned: list[str]) -> None:
    """Files found unreadable after the prediction step and moved aside: each one's feature shard is not labelled
    in this run (it is predicted again by the next), said, and left out of the CSV's stamp."""
    for path, reason, moved in bad:
        name = path.rsplit("/", 1)[-1]
        shard = (parse_name(name) or (name,))[0]
        warn(f"{path}: unreadable ({reason}); moved aside to {moved}, its shard is predicted again by the next run")
        result.failed.append((shard, f"{path}: unreadable ({reason}); moved aside"))
        if name in owned:
            owned.remove(name)


def labeller(params: LabelParams, features: str, manifest: dict) -> tuple[Labeller, str, list | None, bool]:
    """What labels the dataset ``features``: the bundle (refused for features of other settings) or the zero-shot
    vocabulary; with the run's label key, the extra classes' text embeddings, and whether it labels time windows."""
    extra = list(params.extra_classes)
    if params.model is None:
        if not manifest.get("settings"):
            raise ValueError(f"{features}: no indexed features (no manifest): nothing to label")
        windowed = read_settings(manifest, features).window.enabled  # as indexed (given, or recorded)
        zs = ZeroShotModel.for_dataset(params.vocabulary, params.prompts, features, manifest, params.run.device)
        key = label_key({"zero_shot": zs.model_id}, params.top_k, [],
                        params.timeline.model_dump() if windowed else None)
        return zs, key, None, windowed
    predictor = Predictor.load(params.model, params.run.device)
    predictor.check_dataset(features, manifest)
    windowed = bool(params.windows.enabled)
    key = label_key(predictor.meta.files, params.top_k, extra, params.timeline.model_dump() if windowed else None)
    text = predictor.zero_shot_text(extra, features, manifest).tolist() if extra else None
    return predictor, key, text, windowed


@dataclass
class LabelJob:
    """One label run's fixed inputs: what labels (a bundle or a zero-shot vocabulary), under which label key, and
    where everything goes."""

    params: LabelParams
    features: str
    labeller: Labeller
    key: str
    extra_text: list | None
    windowed: bool
    plan: RunPlan  # workers and resources on this machine (moclip.runplan), decided once

    @property
    def zero_shot(self) -> bool:
        return isinstance(self.labeller, ZeroShotModel)

    @property
    def model(self) -> str | None:
        return None if self.zero_shot else str(self.labeller.path)

    def url(self, name: str) -> str:
        return f"{self.params.out.rstrip('/')}/{name}"

    def store(self, url: str | None = None) -> Store:
        return Store(url or self.params.out, self.params.storage_options)

    @property
    def predictions_url(self) -> str:
        return self.url(PREDICTIONS_DIR)

    def predictions(self) -> Store:
        return self.store(self.predictions_url)

    def siblings(self) -> list[Store]:
        """The windows' and segments' folders: each prediction file's companions."""
        return [self.store(self.url(WINDOWS_DIR)), self.store(self.url(SEGMENTS_DIR))]

    def target(self) -> LabelTarget:
        zs, lab, p = self.zero_shot, self.labeller, self.params
        return LabelTarget(model=self.model, device=p.run.device, key=self.key, features=self.features,
                           predictions=self.predictions_url, top_k=p.top_k, extra_classes=tuple(p.extra_classes),
                           extra_text=self.extra_text, storage_options=p.storage_options,
                           windows=self.url(WINDOWS_DIR), segments=self.url(SEGMENTS_DIR),
                           timeline=p.timeline if self.windowed else None,
                           classes=tuple(lab.classes) if zs else (), text=lab.text.tolist() if zs else None,
                           model_id=lab.model_id if zs else None)


def prepare(features: str, params: LabelParams) -> LabelJob:
    """The labeller for the dataset (checked against it) and the run's key; local workers start booting."""
    plan = local_plan(params.run)
    if plan.workers:
        start_worker_forkserver()  # local workers' fork server imports torch while we plan (unless already up)
    manifest = read_manifest(features, params.storage_options) or {}
    return LabelJob(params, features, *labeller(params, features, manifest), plan=plan)


@contextlib.contextmanager
def locks(job: LabelJob) -> Iterator[None]:
    """No other labelling into the output folder, and no re-index of the features while they are read."""
    timeout = job.params.run.lock_timeout_s
    with dataset_lock(job.store(), timeout, warn, name=LABEL_LOCK, what="label output folder"), \
            dataset_lock(job.store(job.features), timeout, warn):
        yield


def log_plan(the_plan: LabelPlan, job: LabelJob) -> None:
    n_todo, logger = len(the_plan.to_predict), get_run_logger()
    logger.info("%d feature shards: %d to predict, %d current; %d prediction files of removed shards",
                len(the_plan.shards), n_todo, len(the_plan.shards) - n_todo, len(the_plan.orphans))
    if the_plan.unknown:  # e.g. a user's own file: never removed
        logger.info("%s: %d files that are not prediction files, left alone (e.g. %s)", job.predictions_url,
                    len(the_plan.unknown), the_plan.unknown[0])


def predict_groups(job: LabelJob, the_plan: LabelPlan) -> tuple[GroupResult, float]:
    """The plan's shards in groups, one task each on the Dask workers (the ``label-groups`` subflow)."""
    run, plan = job.params.run, job.plan
    groups = group_work(the_plan.shards, plan.workers or 16)
    if not groups:
        return GroupResult(), 0.0
    with tempfile.TemporaryDirectory(prefix="moclip-label-") as tmp, without_heartbeats():
        path = Path(tmp) / "groups.json"
        path.write_text(json.dumps([[asdict(w) for w in g] for g in groups]))
        resources = plan.resources
        if run.dask_address:
            check_resources(run.dask_address, resources)
        return label_groups.with_options(task_runner=dask_runner(run))(str(path), job.target(), resources)


def tidy(job: LabelJob, the_plan: LabelPlan) -> list[str]:
    """Remove what no feature shard stands behind; returns the prediction files the CSV may read."""
    predictions, siblings = job.predictions(), job.siblings()
    # the orphans' feature shards are gone (every video re-indexed or deleted); with them go their windows and
    # segments files (of a run with --window, or of an earlier one)
    remove_predictions(predictions, the_plan.orphans, siblings)
    # windows and segments files without their prediction file (a write that failed between them, a prediction
    # file someone removed) go too: never duplicate windows or segments
    remove_orphan_siblings(predictions, siblings)
    present = predictions.shard_infos()
    return [w.target for w in the_plan.shards if w.target in present]


def report(job: LabelJob, result: GroupResult) -> None:
    """Say what was set aside or not labelled; drop the one-file predictions of a moclip before sharding."""
    for path, reason, moved in result.quarantined:
        warn(f"{path}: unreadable ({reason}); moved aside to {moved}")
    for shard, reason in result.failed[:20]:
        warn(f"{job.features}/{shard}: not labelled ({reason}); rerun the same command to label it")
    out = job.store()
    if out.exists(LEGACY_PREDICTIONS):
        out.remove(LEGACY_PREDICTIONS)
        get_run_logger().info("%s: removed (predictions are now sharded, in %s/)", out.path(LEGACY_PREDICTIONS),
                              PREDICTIONS_DIR)


def export(job: LabelJob, the_plan: LabelPlan, result: GroupResult, owned: list[str]) -> str:
    """predictions.csv, written again only when a prediction file changed (or the CSV is not the recorded one)."""
    out = job.store()
    csv = out.path(PREDICTIONS_CSV)
    if not job.params.csv:
        return csv
    changed = bool(result.written or result.removed or the_plan.orphans)
    recorded = (out.read_json(LABELS_MANIFEST) or {}).get("csv")
    if changed or recorded is None or csv_stamp(out, owned) != recorded:
        csv, bad = export_csv_task(job.predictions_url, job.params.out, owned, job.params.storage_options)
        set_aside(bad, result, owned)  # a prediction file unreadable past its summary columns
    return csv


def timelines(job: LabelJob, result: GroupResult, owned: list[str]) -> tuple[str | None, str]:
    """With time windows: timelines.html (and the summary's text timelines); without: an earlier run's page goes."""
    out = job.store()
    if not job.windowed:  # from an earlier run with --window: its segments are gone
        for name in (PAGE_FILE, ACTIVITYNET_JSON):
            if out.exists(name):
                out.remove(name)
                get_run_logger().info("%s: removed (this run has no time windows)", out.path(name))
        return None, ""
    if not result.counts.videos:
        return None, ""
    try:
        return timelines_task(job.params.out, list(job.labeller.classes), job.params.storage_options)
    except Exception:
        bad = quarantine_unreadable_siblings(job.predictions(), job.siblings())
        if not bad:  # not a bad file of ours: a real error
            raise
        set_aside(bad, result, owned)
        return None, ""


def summarise(the_plan: LabelPlan, result: GroupResult, predict_s: float, t0: float) -> dict:
    counts = result.counts
    return {
        "n_labelled": counts.videos, "predicted": counts.predicted, "kept": counts.kept,
        "removed_files": result.removed + len(the_plan.orphans), "shards": len(the_plan.shards),
        "failed_shards": len(result.failed), "quarantined": len(result.quarantined),
        "mv_sources": counts.mv_sources, "mv_source_unseen": counts.mv_source_unseen,
        "wall_s": round(time.perf_counter() - t0, 3),
        "worker_peak_rss_mb": round(result.peak_rss_mb, 1), "worker_s": round(result.seconds, 2),
        "predict_s": round(predict_s, 2),
    }


def record(job: LabelJob, summary: dict, result: GroupResult, owned: list[str]) -> None:
    """OUT/_labels.json: what this run did and with what (read by the next run, review and retrain)."""
    p, lab, out = job.params, job.labeller, job.store()
    write_label_manifest(out, {**summary, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "top1_counts": result.counts.top1_counts()},
                         model=job.model or "zero-shot", model_id=lab.model_id, label_key=job.key,
                         features=job.features, top_k=p.top_k, extra_classes=list(p.extra_classes),
                         clip_random_init=lab.random_init, classes=list(lab.classes), vocabulary=p.classes,
                         calibrated=not job.zero_shot, windowed=job.windowed,
                         params=p.model_dump(mode="json", exclude={"storage_options"}),
                         csv=csv_stamp(out, owned) if p.csv else None)


def publish(job: LabelJob, result: GroupResult, timeline_md: str) -> None:
    """The label-summary artifact (and a warning when the archive's MVs come from a source the model never saw)."""
    counts, lab = result.counts, job.labeller
    if counts.mv_source_unseen:
        warn(mv_source_warning(counts, lab.mv_sources))
    create_markdown_artifact(distribution_markdown(counts, bool(job.params.extra_classes), lab.random_init,
                                                   lab.mv_sources, job.zero_shot) + timeline_md,
                             key="label-summary",
                             description=f"{counts.videos} videos labelled -> {job.predictions_url}")


@flow(name="predict-archive")
def predict_archive(features: str, params: LabelParams) -> dict:
    """Predict every video of the indexed dataset ``features`` into ``params.out`` (see the module docstring)."""
    t0 = time.perf_counter()
    job = prepare(features, params)
    sibling_urls = (job.url(WINDOWS_DIR), job.url(SEGMENTS_DIR)) if job.windowed else ()
    with locks(job):
        the_plan = plan_labels_task(features, job.predictions_url, job.key, params.storage_options, sibling_urls)
        log_plan(the_plan, job)
        result, predict_s = predict_groups(job, the_plan)
        owned = tidy(job, the_plan)
    report(job, result)
    csv = export(job, the_plan, result, owned)
    page, timeline_md = timelines(job, result, owned)
    summary = summarise(the_plan, result, predict_s, t0)
    record(job, summary, result, owned)
    publish(job, result, timeline_md)
    return {**summary, "predictions": job.predictions_url, "csv": csv if params.csv else None,
            "windows": job.url(WINDOWS_DIR) if job.windowed else None,
            "segments": job.url(SEGMENTS_DIR) if job.windowed else None, "timelines": page,
            "failed": result.failed, "top1_counts": result.counts.top1_counts()}


@flow(name="label-archive")
def label_archive(params: LabelParams) -> dict | State:
    """Top-k labels for every video of an archive: by a trained model (plus zero-shot scores for extra class names),
    or with no model by CLIP zero-shot over a vocabulary. Ends Failed (its data: the summary) when part of the work
    was not done: index shards not written, feature shards not labelled; a rerun does what is missing."""
    if params.model is not None:  # a modified weights file is refused before any work
        index_params = params.index_params(Predictor.load(params.model, params.run.device).settings)
    else:
        index_params = params.index_params()
    with without_heartbeats():  # subflows: this flow's heartbeat covers the process
        indexed = outcome(index_corpus(index_params, return_state=True))  # incomplete: label what is there
        labelled = predict_archive(index_params.out, params)
    out = {**labelled, "n_failed": indexed.failed_total, "index_incomplete": None if indexed.complete
           else indexed.incomplete_message(), "index": indexed}
    problems = ([out["index_incomplete"]] if out["index_incomplete"] else []) + (
        [f"{len(out['failed'])} feature shards were not labelled (e.g. {out['failed'][0][0]}: "
         f"{out['failed'][0][1]}); rerun the same command (or flow run) to label them"] if out["failed"] else [])
    if problems:  # a state a Prefect automation (or `prefect deployment run --watch`) sees
        return Failed(message="; ".join(problems), data=out)
    return out
