"""A label run's timelines page: OUT/segments.json (ActivityNet's results format), OUT/timelines.html with a picture
per video (``moclip.report.timeline``), and the text timelines for the label summary."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pandas as pd

from moclip.dataset import Store
from moclip.label.export import ACTIVITYNET_JSON, activitynet_results
from moclip.label.timeline import SEGMENTS_DIR, WINDOWS_DIR
from moclip.report.markdown import code, inline, join, paragraph
from moclip.report.timeline import PAGE_FILE, TIMELINE_DIR, file_name, pick_videos, timeline_markdown, write_timelines


def write_timeline_page(out: Store, classes: list[str], n: int = 20) -> tuple[str, str]:
    """OUT/segments.json (``activitynet_results``), and OUT/timelines.html and its pictures
    (``moclip.report.timeline``) for the most interesting of the labelled videos, from OUT/segments.parquet (and
    the picked videos' windows); returns (the page's path, a Markdown section of text timelines for the label
    summary)."""
    opts = {"filesystem": out.fs}
    segments = pd.read_parquet(out.path(SEGMENTS_DIR), **opts)
    out.write_json(ACTIVITYNET_JSON, activitynet_results(
        segments, {"used": True, "details": "moclip: motion vectors + CLIP features; labels from a moclip model"}))
    picked = pick_videos(segments, n)
    windows = pd.read_parquet(out.path(WINDOWS_DIR), columns=["video_id", "start_s", "end_s", "top1_prob"],
                              filters=[("video_id", "in", picked)] if picked else None, **opts)
    with tempfile.TemporaryDirectory(prefix="moclip-timelines-") as tmp:
        folder = Path(out.path("") if out.local else tmp)
        page = write_timelines(segments, windows, classes, folder, n)
        pictures = [(vid, (folder / TIMELINE_DIR / f"{file_name(vid)}.png").read_bytes()) for vid in picked[:3]]
        if not out.local:  # drawn locally, then each file put as one object
            for f in sorted(folder.rglob("*")):
                if f.is_file():
                    out.write_bytes(f.relative_to(folder).as_posix(), f.read_bytes())
            page = out.path(PAGE_FILE)
    # the first pictures inline (data URIs), so the label summary artifact shows them without the files
    md = timeline_markdown(segments) + "".join(
        f"\n![{inline(f'timeline of {vid}')}](data:image/png;base64,{base64.b64encode(png).decode()})\n"
        for vid, png in pictures)  # base64 needs no escaping in a link target (image() would percent-encode it)
    return str(page), md + "\n" + paragraph(join(["All timelines: ", code(page)])) + "\n"
