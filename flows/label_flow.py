"""Label an archive: index it (incrementally, with the model's feature settings) -> predict shard by shard on Dask.
With no model, CLIP zero-shot over a vocabulary labels it (indexed with the job's feature options).

    index-corpus (subflow) ──> predict-archive (subflow): plan-labels ──> label-shards on Dask (one task per group
                                                           of feature shards: a prediction file per feature shard)
                                                      ──> export-csv ──> (with --window: timelines)
                                                      ──> _labels.json + label-summary artifact

Predictions are incremental (``moclip.label.plan``): a rerun predicts only the videos that are new or changed since
the last, drops deleted ones, and predicts everything again when the model or the label options changed. No
process holds a row per video: workers read a shard at a time, the flow adds up per-shard counts.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.states import Failed, State

from flows.index_flow import index_corpus, outcome, warn
from flows.runtime import (
    check_resources,
    dask_runner,
    local_workers,
    needs,
    start_worker_forkserver,
    without_heartbeats,
)
from moclip.dataset import Store, read_manifest, read_settings
from moclip.dataset.lock import LABEL_LOCK, dataset_lock
from moclip.inference import Labeller, Predictor, ZeroShotModel
from moclip.label import PREDICTIONS_DIR, GroupResult, LabelTarget, ShardWork, group_work, label_key
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
from moclip.precision import device_type
from moclip.progress import Progress
from moclip.report.label_summary import distribution_markdown, mv_source_warning
from moclip.report.timeline import PAGE_FILE
from tasks.label_tasks import export_csv_task, label_shards_task, plan, timelines_task


@flow(name="label-shards")
def label_groups(groups_file: str, target: LabelTarget,
                 resources: dict[str, float] | None = None) -> tuple[GroupResult, float]:
    """One task per group of shards (a JSON file of groups: flow parameters must stay small); a group whose task
    fails (its worker died) has its shards reported failed: they are predicted on the next run. Returns the tasks'
    results added up, and the seconds from the first submission to the last result. ``resources``: what a task
    needs of its worker (GPU=1 when it predicts on CUDA on a cluster: only GPU workers have the device)."""
    groups = [[ShardWork(**w) for w in g] for g in json.loads(Path(groups_file).read_text())]
    t0 = time.perf_counter()  # the cluster is up: from here on, prediction
    with needs(resources or {}):
        futures = {label_shards_task.submit(g, target): g for g in groups}
    n = sum(len(g) for g in groups)
    progress_id = create_progress_artifact(0.0, description=f"Labelling {n} feature shards in {len(groups)} tasks")
    total = GroupResult()
    with Progress(n, "label", unit="shard") as bar:
        for fut in as_completed(list(futures)):
            group = futures.pop(fut)
            try:
                total.add(fut.result())
            except Exception as e:  # noqa: BLE001 - reported; the shards have no current file, so the next run retries
                total.failed += [(w.feature_shard, f"{type(e).__name__}: {e}"[:500]) for w in group]
            bar.update(len(group))
            update_progress_artifact(progress_id, 100.0 * bar.done / max(n, 1))
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


@flow(name="predict-archive")
def predict_archive(features: str, params: LabelParams) -> dict:
    """Predict every video of the indexed dataset ``features`` into ``params.out`` (see the module docstring)."""
    t0 = time.perf_counter()
    logger = get_run_logger()
    if local_workers(params.run):
        start_worker_forkserver()  # local workers' fork server imports torch while we plan (unless already up)
    manifest = read_manifest(features, params.storage_options) or {}
    predictor, key, text, windowed = labeller(params, features, manifest)
    zero_shot = isinstance(predictor, ZeroShotModel)
    model = None if zero_shot else str(predictor.path)
    extra = list(params.extra_classes)
    out = Store(params.out, params.storage_options)
    base = params.out.rstrip("/")
    predictions = f"{base}/{PREDICTIONS_DIR}"
    windows, segments = f"{base}/{WINDOWS_DIR}", f"{base}/{SEGMENTS_DIR}"
    run, timeout = params.run, params.run.lock_timeout_s
    with dataset_lock(out, timeout, warn, name=LABEL_LOCK, what="label output folder"), \
            dataset_lock(Store(features, params.storage_options), timeout, warn):  # no re-index while we read
        the_plan = plan(features, predictions, key, params.storage_options, (windows, segments) if windowed else ())
        n_todo = len(the_plan.to_predict)
        logger.info("%d feature shards: %d to predict, %d current; %d prediction files of removed shards",
                    len(the_plan.shards), n_todo, len(the_plan.shards) - n_todo, len(the_plan.orphans))
        if the_plan.unknown:  # e.g. a user's own file: never removed
            logger.info("%s: %d files that are not prediction files, left alone (e.g. %s)", predictions,
                        len(the_plan.unknown), the_plan.unknown[0])
        target = LabelTarget(model=model, device=run.device, key=key, features=features,
                             predictions=predictions, top_k=params.top_k, extra_classes=tuple(extra),
                             extra_text=text, storage_options=params.storage_options, windows=windows,
                             segments=segments, timeline=params.timeline if windowed else None,
                             classes=tuple(predictor.classes) if zero_shot else (),
                             text=predictor.text.tolist() if zero_shot else None,
                             model_id=predictor.model_id if zero_shot else None)
        result, predict_s = GroupResult(), 0.0
        groups = group_work(the_plan.shards, local_workers(run) or 16)
        if groups:
            with tempfile.TemporaryDirectory(prefix="moclip-label-") as tmp, without_heartbeats():
                path = Path(tmp) / "groups.json"
                path.write_text(json.dumps([[asdict(w) for w in g] for g in groups]))
                resources = run.for_device(device_type(run.device)).resources
                if run.dask_address:
                    check_resources(run.dask_address, resources)
                result, predict_s = label_groups.with_options(task_runner=dask_runner(run))(str(path), target,
                                                                                          resources)
        # the orphans' feature shards are gone (every video re-indexed or deleted); with them go their windows and
        # segments files (of a run with --window, or of an earlier one)
        pred_store, siblings = Store(predictions, params.storage_options), [Store(u, params.storage_options)
                                                                            for u in (windows, segments)]
        remove_predictions(pred_store, the_plan.orphans, siblings)
        # windows and segments files without their prediction file (a write that failed between them, a prediction
        # file someone removed) go too: never duplicate windows or segments
        remove_orphan_siblings(pred_store, siblings)
        present = pred_store.shard_infos()
        owned = [w.target for w in the_plan.shards if w.target in present]  # what the CSV may read
    counts = result.counts
    for path, reason, moved in result.quarantined:
        warn(f"{path}: unreadable ({reason}); moved aside to {moved}")
    for shard, reason in result.failed[:20]:
        warn(f"{features}/{shard}: not labelled ({reason}); rerun the same command to label it")
    if out.exists(LEGACY_PREDICTIONS):  # one file of every prediction, from a moclip before sharded predictions
        out.remove(LEGACY_PREDICTIONS)
        logger.info("%s: removed (predictions are now sharded, in %s/)", out.path(LEGACY_PREDICTIONS), PREDICTIONS_DIR)
    changed = bool(result.written or result.removed or the_plan.orphans)
    csv = out.path(PREDICTIONS_CSV)
    recorded = (out.read_json(LABELS_MANIFEST) or {}).get("csv")
    if params.csv and (changed or recorded is None or csv_stamp(out, owned) != recorded):
        csv, bad = export_csv_task(predictions, params.out, owned, params.storage_options)
        set_aside(bad, result, owned)  # a prediction file unreadable past its summary columns
    random_clip = predictor.random_init
    page, timeline_md = None, ""
    if windowed and counts.videos:
        try:
            page, timeline_md = timelines_task(params.out, list(predictor.classes), params.storage_options)
        except Exception:
            bad = quarantine_unreadable_siblings(pred_store, siblings)  # name the bad windows/segments file
            if not bad:
                raise
            set_aside(bad, result, owned)
    elif not windowed:  # from an earlier run with --window: its segments are gone
        for name in (PAGE_FILE, ACTIVITYNET_JSON):
            if out.exists(name):
                out.remove(name)
                logger.info("%s: removed (this run has no time windows)", out.path(name))
    summary = {
        "n_labelled": counts.videos, "predicted": counts.predicted, "kept": counts.kept,
        "removed_files": result.removed + len(the_plan.orphans), "shards": len(the_plan.shards),
        "failed_shards": len(result.failed), "quarantined": len(result.quarantined),
        "mv_sources": counts.mv_sources, "mv_source_unseen": counts.mv_source_unseen,
        "wall_s": round(time.perf_counter() - t0, 3),
        "worker_peak_rss_mb": round(result.peak_rss_mb, 1), "worker_s": round(result.seconds, 2),
        "predict_s": round(predict_s, 2),
    }
    write_label_manifest(out, {**summary, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "top1_counts": counts.top1_counts()},
                         model=model or "zero-shot", model_id=predictor.model_id, label_key=key, features=features,
                         top_k=params.top_k, extra_classes=extra, clip_random_init=random_clip,
                         classes=list(predictor.classes), vocabulary=params.classes, calibrated=not zero_shot,
                         windowed=windowed, params=params.model_dump(mode="json", exclude={"storage_options"}),
                         csv=csv_stamp(out, owned) if params.csv else None)
    trained = predictor.mv_sources
    if counts.mv_source_unseen:
        warn(mv_source_warning(counts, trained))
    create_markdown_artifact(distribution_markdown(counts, bool(extra), random_clip, trained, zero_shot)
                             + timeline_md,
                             key="label-summary",
                             description=f"{counts.videos} videos labelled -> {predictions}")
    return {**summary, "predictions": predictions, "csv": csv if params.csv else None,
            "windows": windows if windowed else None, "segments": segments if windowed else None, "timelines": page,
            "failed": result.failed, "top1_counts": counts.top1_counts()}


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
