"""Label Studio's formats (checked against label-studio 1.23): the project's labelling config, the tasks moclip
imports with its predictions as pre-annotations, and the reviewers' answers read back from Label Studio's JSON
export.

- Whole videos: ``<Video>`` + ``<Choices>`` over the model's classes; a prediction is one ``choices`` result.
- Windows of long videos: ``<Video frameRate="$fps">`` + ``<TimelineLabels>``; a prediction is a ``timelinelabels``
  result over the item's frames. Label Studio numbers frames from 1 and both ends are inclusive; frame f is shown
  from (f - 1) / fps to f / fps seconds. The seconds are kept in the task data too (``moclip``).
- Predictions carry one ``model_version`` (Label Studio shows only the project's version's) and the top-1
  probability as ``score``.
- The export lists every task with an annotation: a skipped one has ``was_cancelled: true``; a task two people
  answered has two annotations (the most recent wins, and the disagreement is reported).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

FROM_CHOICES, FROM_TIMELINE, TO = "label", "segments", "video"
REVIEW_COLUMNS = ["item_id", "video_id", "path", "start_s", "end_s", "label", "model_label", "annotation_id",
                  "task_id", "reviewer", "reviewed_at"]


def label_config(classes: list[str], windowed: bool) -> str:
    """The project's labelling config: a choice per whole video, or labelled time ranges on a windowed run's videos."""
    if not classes:
        raise ValueError("no classes to label with")
    labels = "\n".join(f'    <{"Label" if windowed else "Choice"} value="{html.escape(c, quote=True)}"/>'
                       for c in classes)
    if windowed:
        return (f'<View>\n  <Video name="{TO}" value="$video" frameRate="$fps" timelineHeight="120"/>\n'
                f'  <TimelineLabels name="{FROM_TIMELINE}" toName="{TO}">\n{labels}\n  </TimelineLabels>\n</View>\n')
    return (f'<View>\n  <Video name="{TO}" value="$video"/>\n  <Choices name="{FROM_CHOICES}" toName="{TO}" '
            f'choice="single" showInline="true">\n{labels}\n  </Choices>\n</View>\n')


def frames(start_s: float, end_s: float, fps: float) -> tuple[int, int]:
    """A time range as Label Studio's frames: 1-based, both ends inclusive."""
    first = int(math.floor(start_s * fps + 1e-6)) + 1
    return first, max(first, int(math.ceil(end_s * fps - 1e-6)))


def seconds(start: int, end: int, fps: float) -> tuple[float, float]:
    """Label Studio's frames (1-based, inclusive) as a time range in seconds."""
    return (start - 1) / fps, end / fps


def task(item: dict, model_version: str, media_url: str, fps: float | None) -> dict:
    """One task: the video, the item (``moclip``: id and seconds, for the way back) and the model's answer."""
    windowed = item.get("start_s") is not None and not _nan(item["start_s"])
    data = {"video": media_url, "moclip": {"item_id": item["item_id"], "video_id": item["video_id"],
                                           "path": item["path"], "model_label": item["top1"]}}
    if windowed:
        if not fps or fps <= 0:
            raise ValueError(f"{item['path']}: no frame rate recorded: its time ranges cannot be given as frames")
        first, last = frames(float(item["start_s"]), float(item["end_s"]), fps)
        data["fps"] = fps
        data["moclip"].update(start_s=float(item["start_s"]), end_s=float(item["end_s"]))
        result = {"id": "moclip-0", "from_name": FROM_TIMELINE, "to_name": TO, "type": "timelinelabels",
                  "value": {"ranges": [{"start": first, "end": last}], "timelinelabels": [item["top1"]]}}
    else:
        result = {"id": "moclip-0", "from_name": FROM_CHOICES, "to_name": TO, "type": "choices",
                  "value": {"choices": [item["top1"]]}}
    return {"data": data, "predictions": [{"model_version": model_version, "score": float(item["top1_prob"]),
                                           "result": [result]}]}


def tasks(items: pd.DataFrame, model_version: str, media: Callable[[str], str],
          fps_of: dict[str, float] | None = None) -> list[dict]:
    """Tasks for a batch's items (``moclip.review.select.ITEM_COLUMNS``); ``media``: a video path -> its URL as
    Label Studio's browser fetches it; ``fps_of``: each video's frame rate (windowed items need it)."""
    fps_of = fps_of or {}
    return [task(row, model_version, media(str(row["path"])), fps_of.get(str(row["video_id"])))
            for row in items.to_dict("records")]


def _nan(x: object) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x))


@dataclass
class ImportReport:
    tasks: int = 0  # moclip's tasks in the export
    answered: int = 0  # with an annotation that was not skipped
    skipped: int = 0  # every annotation skipped (cancelled)
    unanswered: int = 0  # no annotation yet
    disagreements: list[str] = field(default_factory=list)  # tasks whose reviewers gave different labels
    model_right: int = 0  # reviewed ranges or videos whose label is the model's
    reviewed: int = 0  # rows written (a video, or a labelled range)
    foreign: int = 0  # tasks that are not moclip's (no data.moclip), or another label run's: left alone
    seen: set[str] = field(default_factory=set)  # items with an annotation (answered or skipped): these replace


def _labels(result: list[dict]) -> list[tuple[str, tuple[int, int] | None]]:
    """(label, frame range or None) of each choice / timeline label in an annotation's result."""
    out = []
    for r in result or []:
        v = r.get("value") or {}
        if r.get("type") == "choices":
            out += [(str(c), None) for c in v.get("choices") or []]
        elif r.get("type") == "timelinelabels":
            for label in v.get("timelinelabels") or []:
                out += [(str(label), (int(g["start"]), int(g["end"]))) for g in v.get("ranges") or []]
    return out


def parse_export(exported: list[dict], run: str | None = None) -> tuple[pd.DataFrame, ImportReport]:
    """The reviewers' answers in Label Studio's JSON export (``REVIEW_COLUMNS``), one row per whole video or per
    labelled time range (moved, split or added by the reviewer), and what the export held. With ``run``, only the
    tasks of that label run (``data.moclip.run``; a project may hold several runs' tasks)."""
    rep, rows = ImportReport(), []
    for t in exported:
        info = (t.get("data") or {}).get("moclip")
        if not isinstance(info, dict) or "item_id" not in info or (run is not None and info.get("run") != run):
            rep.foreign += 1
            continue
        rep.tasks += 1
        anns = [a for a in t.get("annotations") or [] if isinstance(a, dict)]
        done = [a for a in anns if not a.get("was_cancelled")]
        if not anns:
            rep.unanswered += 1
            continue
        rep.seen.add(str(info["item_id"]))
        if not done:
            rep.skipped += 1
            continue
        rep.answered += 1
        done.sort(key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a.get("id") or 0)))
        answers = {tuple(sorted(_labels(a.get("result")), key=str)) for a in done}
        if len(answers) > 1:
            rep.disagreements.append(f"task {t.get('id')} ({info['item_id']}): {len(done)} reviewers disagree; the "
                                     f"most recent answer (annotation {done[-1].get('id')}) is kept")
        last = done[-1]
        fps = float((t.get("data") or {}).get("fps") or 0)
        for label, span in _labels(last.get("result")):
            if span is not None and fps > 0:
                start_s, end_s = seconds(*span, fps)
            else:
                start_s, end_s = info.get("start_s", np.nan), info.get("end_s", np.nan)
            rows.append({"item_id": info["item_id"], "video_id": info.get("video_id"), "path": info.get("path"),
                         "start_s": start_s, "end_s": end_s, "label": label, "model_label": info.get("model_label"),
                         "annotation_id": last.get("id"), "task_id": t.get("id"),
                         "reviewer": str(last.get("completed_by")) if last.get("completed_by") is not None else None,
                         "reviewed_at": last.get("updated_at") or last.get("created_at")})
            rep.model_right += int(label == info.get("model_label"))
    df = pd.DataFrame(rows, columns=REVIEW_COLUMNS)
    df["reviewed_at"] = pd.to_datetime(df["reviewed_at"], utc=True, errors="coerce")
    rep.reviewed = len(df)
    return df, rep
