"""A review batch on disk, and the way back:

    BATCH/items.parquet   what was picked (``moclip.review.select.ITEM_COLUMNS``), in the ledger of the label run
    BATCH/batch.json      the label run, the classes, the strategy, the model's id, when
    BATCH/tasks.json      Label Studio tasks with moclip's predictions (``export_files``; import them by hand or
    BATCH/config.xml      let ``moclip review export --url`` do it) and the project's labelling config

``import_reviews`` reads Label Studio's JSON export into ``LABELS/_review/reviewed.parquet``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from moclip.dataset import Store
from moclip.dataset.lock import dataset_lock
from moclip.files import atomic_write_bytes, atomic_write_text
from moclip.review import ledger
from moclip.review.labelstudio import ImportReport, label_config, parse_export, tasks
from moclip.review.select import Strategy, directions, run_items, select

ITEMS, ABOUT, TASKS, CONFIG = "items.parquet", "batch.json", "tasks.json", "config.xml"


def make_batch(labels: str, n: int, out: str | Path, strategy: Strategy = "margin", pool_factor: float = 5.0,
               per_class: int | None = None, seed: int = 0, diverse: bool = True,
               storage_options: dict | None = None) -> pd.DataFrame:
    """Pick ``n`` items of the label run at ``labels`` (``moclip.review.select``), write the batch to ``out`` and
    put its items in the run's ledger. Returns the items."""
    folder = Path(out)
    if (folder / ITEMS).exists():
        raise ValueError(f"{folder}: a review batch is there already (its items are in the ledger): pick the next "
                         "batch into another folder")
    items, about = run_items(labels, storage_options)
    vectors = directions(about, items, storage_options) if diverse and strategy != "random" else None
    with dataset_lock(Store(labels, storage_options), 600, name=ledger.LOCK, what="label run's review ledger"):
        exclude = ledger.taken(labels, storage_options)  # read, pick and record under one lock: never picked twice
        picked = select(items, n, strategy, exclude, vectors, pool_factor, per_class, seed)
        if picked.empty:
            raise ValueError(f"{labels}: nothing left to review ({len(items)} items, {len(exclude)} already picked "
                             "or reviewed)")
        folder.mkdir(parents=True, exist_ok=True)
        _write_batch(folder, picked, about, labels, strategy)
        ledger.record(labels, str(folder.resolve()), picked, storage_options)
    return picked


def _write_batch(folder: Path, picked: pd.DataFrame, about: dict, labels: str, strategy: str) -> None:
    buf = io.BytesIO()
    picked.to_parquet(buf, index=False)
    atomic_write_bytes(folder / ITEMS, buf.getvalue())
    atomic_write_text(folder / ABOUT, json.dumps({
        "labels": labels, "classes": about.get("classes") or [], "windowed": bool(picked["start_s"].notna().any()),
        "strategy": strategy, "n": len(picked), "model_id": about.get("model_id"), "features": about.get("features"),
        "created_at": datetime.now(timezone.utc).isoformat()}, indent=1))


def media_link(path: str, media_url: str | None = None, document_root: str | None = None,
               video_id: str | None = None) -> str:
    """A video's URL for Label Studio's browser: ``media_url`` + its id (a web server or bucket holding the
    archive), else Label Studio's local-files URL for its path under ``document_root`` (Label Studio's
    LOCAL_FILES_DOCUMENT_ROOT; "/" when not given)."""
    if media_url:
        return media_url.rstrip("/") + "/" + quote(video_id or os.path.basename(path))
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(document_root or "/"))
    if rel.startswith(".."):
        raise ValueError(f"{path}: not under the local-files document root {document_root}")
    return "/data/local-files/?d=" + quote(rel)


def frame_rates(features: str | None, storage_options: dict | None = None) -> dict[str, float]:
    """Each video's frame rate from the features dataset (what Label Studio's frames are counted in)."""
    if not features:
        return {}
    from moclip.dataset import Store

    store = Store(features, storage_options)
    df = pd.concat([t.to_pandas() for _, t in store.read_shards(["video_id", "fps"], missing_ok=True)] or
                   [pd.DataFrame(columns=["video_id", "fps"])])
    return {str(v): float(f) for v, f in zip(df["video_id"], df["fps"]) if f == f and f}


def batch_tasks(batch: str | Path, media_url: str | None = None, document_root: str | None = None,
                storage_options: dict | None = None) -> tuple[list[dict], str, dict]:
    """A batch's Label Studio tasks, its labelling config and its ``batch.json``."""
    folder = Path(batch)
    if not (folder / ITEMS).is_file():
        raise ValueError(f"{folder}: not a review batch (no {ITEMS}): make one with `moclip review select`")
    items = pd.read_parquet(folder / ITEMS)
    about = json.loads((folder / ABOUT).read_text())
    windowed = bool(about.get("windowed"))
    fps = frame_rates(about.get("features"), storage_options) if windowed else {}
    version = f"moclip:{about.get('model_id')}"
    made = tasks(items, version, lambda p: p, fps)
    run = run_id(about["labels"])
    for t, row in zip(made, items.to_dict("records")):
        t["data"]["video"] = media_link(str(row["path"]), media_url, document_root, str(row["video_id"]))
        t["data"]["moclip"]["run"] = run  # the way back takes this run's tasks only
    return made, label_config(list(about.get("classes") or sorted(set(items["top1"]))), windowed), about


def export_files(batch: str | Path, media_url: str | None = None, document_root: str | None = None,
                 storage_options: dict | None = None) -> tuple[Path, Path]:
    """``BATCH/tasks.json`` and ``BATCH/config.xml`` for an import by hand (Label Studio's Import dialog)."""
    made, config, _ = batch_tasks(batch, media_url, document_root, storage_options)
    folder = Path(batch)
    atomic_write_text(folder / TASKS, json.dumps(made, indent=1))
    atomic_write_text(folder / CONFIG, config)
    return folder / TASKS, folder / CONFIG


def import_reviews(labels: str, exported: list[dict], storage_options: dict | None = None,
                   ) -> tuple[pd.DataFrame, ImportReport]:
    """Merge the reviewers' answers of a Label Studio export into ``LABELS/_review/reviewed.parquet``: the export's
    answer for an item replaces its earlier rows (an answer taken back, now a skip, leaves none). Returns every
    reviewed row and what this export held."""
    new, report = parse_export(exported, run_id(labels))
    with dataset_lock(Store(labels, storage_options), 600, name=ledger.LOCK, what="label run's review ledger"):
        old = ledger.read(labels, ledger.REVIEWED, storage_options)
        if old is not None and len(old):
            old = old[~old["item_id"].astype(str).isin(report.seen)]
            new = pd.concat([old, new], ignore_index=True) if len(new) else old
        ledger.write(labels, ledger.REVIEWED, new.reset_index(drop=True), storage_options)
    return new, report


def run_id(labels: str) -> str:
    """A label run's identity in Label Studio tasks: its folder's real path (or its URL)."""
    from moclip.dataset import Store

    store = Store(str(labels))
    return os.path.realpath(store.root) if store.local else str(labels).rstrip("/")


def project_title(labels: str) -> str:
    """The Label Studio project a label run's reviews go to, unless one is named: ``moclip: <its folder name>
    <6 hex digits of where it is>`` (two runs in folders of one name get projects of their own)."""
    digest = hashlib.sha256(run_id(labels).encode()).hexdigest()[:6]
    return f"moclip: {Path(str(labels).rstrip('/')).name} {digest}"


@dataclass
class Exported:
    project: int
    title: str
    created: bool
    imported: int
    already: int  # tasks of this batch the project had already (never imported twice)


def export_to_label_studio(batch: str | Path, url: str, token: str, project: str | None = None,
                           media_url: str | None = None, document_root: str | None = None,
                           storage_options: dict | None = None) -> Exported:
    """Create or update the project (its labelling config from the batch) and import the batch's tasks that it does
    not have yet. With local files (no ``media_url``) and a ``document_root``, the videos' folder is added to the
    project as a local-files storage, which Label Studio needs to serve them."""
    from moclip.review.client import LabelStudio, LabelStudioError

    if not media_url and not document_root:
        raise LabelStudioError("say how Label Studio's browser reaches the videos: --document-root (its "
                               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, with the videos in a folder below it) or "
                               "--media-url PREFIX")
    made, config, about = batch_tasks(batch, media_url, document_root, storage_options)
    title = project or project_title(about["labels"])
    with LabelStudio(url, token) as ls:
        pid, created = ls.project(title, config)
        if document_root and not media_url:
            folder = os.path.commonpath([os.path.dirname(os.path.abspath(t["data"]["moclip"]["path"])) for t in made])
            if os.path.abspath(folder) == os.path.abspath(document_root):
                raise LabelStudioError(f"{folder}: the videos lie directly in Label Studio's document root; it "
                                       "serves only folders below it (put them in a subfolder, or use --media-url)")
            ls.local_storage(pid, folder)
        have = ls.item_ids(pid)
        new = [t for t in made if t["data"]["moclip"]["item_id"] not in have]
        n = ls.import_tasks(pid, new) if new else 0
    return Exported(pid, title, created, n, len(made) - len(new))


def reviews_from_label_studio(labels: str, url: str, token: str, project: str | None = None,
                              storage_options: dict | None = None) -> tuple[pd.DataFrame, ImportReport, str]:
    """``import_reviews`` of the project's JSON export, read from the server. Returns its title too."""
    from moclip.review.client import LabelStudio, LabelStudioError

    title = project or project_title(labels)
    with LabelStudio(url, token) as ls:
        p = ls.find_project(title)
        if p is None:
            raise LabelStudioError(f"{url}: no project titled {title!r} (give --project)")
        exported = ls.export(int(p["id"]))
    reviewed, report = import_reviews(labels, exported, storage_options)
    return reviewed, report, title
