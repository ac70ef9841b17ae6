"""Pictures of moments of videos: a search's contact sheet (``results.html``) and the filmstrips under timelines.

Each picture is one frame decoded at the middle of its time range (seeking, never decoding from the start:
``moclip.video.thumbnail``), saved as a small JPEG beside the page and linked to the video at that range with a
media fragment (``file:///…/clip.mp4#t=12.0,16.0``: browsers' players start there). A file that cannot be read any
more gets a grey tile saying why, never a broken page.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from moclip.files import atomic_write_bytes, atomic_write_text
from moclip.report.page import CSS
from moclip.video.frames import DecodeError

THUMB_DIR = "thumbs"
THUMB_HEIGHT = 144
SHEET_FILE = "results.html"
_SHEET_CSS = """
.sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:14px}
.hit{border:1px solid #ddd;border-radius:6px;padding:6px;background:#fafafa;font-size:.85rem}
.hit img,.hit .none{width:100%;height:144px;object-fit:cover;border-radius:4px;display:block;background:#e6e6e6}
.hit .none{display:flex;align-items:center;justify-content:center;color:#666;text-align:center;font-size:.75rem}
.hit .meta{margin-top:4px;word-break:break-all}.rank{font-weight:600}.dup{color:#8a5a00}
"""


def media_link(path: str, start_s: float, end_s: float) -> str:
    """A link to ``path`` that a browser's player opens at [start_s, end_s] (W3C media fragment ``#t=``)."""
    p = Path(path)
    uri = p.as_uri() if p.is_absolute() else path
    return f"{uri}#t={start_s:.2f},{end_s:.2f}"


def thumbnail_name(path: str, t: float) -> str:
    """A picture's file name: the same version of a video (path, size, modification time) and moment always give
    the same name; a file replaced at the same path gets new pictures."""
    try:
        st = os.stat(path)
        version = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        version = "missing"
    return hashlib.sha256(f"{path}@{t:.3f}@{version}".encode()).hexdigest()[:16] + ".jpg"


def write_thumbnails(moments: Sequence[tuple[str, float]], folder: Path, height: int = THUMB_HEIGHT,
                     ) -> tuple[dict[tuple[str, float], str | None], dict[tuple[str, float], str]]:
    """One JPEG per (video path, seconds) in ``folder`` (already there: kept). Returns each moment's file name (None
    when its video cannot be read), and for those the reason."""
    from PIL import Image

    from moclip.video.thumbnail import frames_at

    names: dict[tuple[str, float], str | None] = {}
    errors: dict[tuple[str, float], str] = {}
    by_path: dict[str, list[float]] = {}
    for path, t in moments:
        by_path.setdefault(path, []).append(t)
    for path, times in by_path.items():
        todo = [t for t in times if not (folder / thumbnail_name(path, t)).is_file()]
        try:
            pictures = dict(zip(todo, frames_at(path, todo, height))) if todo else {}
        except (DecodeError, OSError):  # one bad moment (or file): each moment on its own, to say which
            pictures = {}
            for t in todo:
                try:
                    pictures[t] = frames_at(path, [t], height)[0]
                except (DecodeError, OSError) as e:
                    errors[(path, t)] = str(e)
        for t, rgb in pictures.items():
            folder.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", quality=85)
            atomic_write_bytes(folder / thumbnail_name(path, t), buf.getvalue())
        for t in times:
            names[(path, t)] = None if (path, t) in errors else thumbnail_name(path, t)
    return names, errors


def _tile(picture: str | None, link: str, caption: str, why: str = "") -> str:
    img = (f'<img src="{html.escape(picture)}" alt="{html.escape(caption)}" loading="lazy">' if picture
           else f'<div class="none">no picture{": " + html.escape(why) if why else ""}</div>')
    return f'<a href="{html.escape(link)}">{img}</a>'


def write_contact_sheet(results: pd.DataFrame, out: Path, title: str) -> Path:
    """``out/results.html``: a tile per hit (``moclip.search.query.RESULT_COLUMNS``) with its picture (in
    ``out/thumbs/``), rank, score, file, time range and near-duplicates; each tile links to the video at its
    range. Returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    moments = [(str(r.path), round((float(r.start_s) + float(r.end_s)) / 2, 3)) for r in results.itertuples()]
    names, errors = write_thumbnails(moments, out / THUMB_DIR)
    tiles = []
    for r, m in zip(results.itertuples(), moments):
        link = media_link(str(r.path), float(r.start_s), float(r.end_s))
        name = names.get(m)
        dups = list(r.duplicate_paths) if r.duplicates else []
        dup = (f'<div class="dup" title="{html.escape(chr(10).join(dups))}">+{int(r.duplicates)} near-duplicate'
               f'{"s" if r.duplicates > 1 else ""}</div>') if dups else ""
        picture = _tile(f"{THUMB_DIR}/{name}" if name else None, link, str(r.video_id), errors.get(m, ""))
        tiles.append(
            f'<div class="hit">{picture}'
            f'<div class="meta"><span class="rank">#{int(r.rank)}</span> score {float(r.score):.3f} &middot; '
            f'{float(r.start_s):.1f}&ndash;{float(r.end_s):.1f} s &middot; motion {float(r.motion):.2f}<br>'
            f'<a href="{html.escape(link)}">{html.escape(str(r.video_id))}</a>{dup}</div></div>')
    body = (f"<h1>{html.escape(title)}</h1>\n<p>{len(results)} hits, best first. A picture is the frame at the "
            "middle of its time range; click it to open the video there.</p>\n"
            f'<div class="sheet">\n' + "\n".join(tiles) + "\n</div>\n")
    page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" '
            f'content="width=device-width, initial-scale=1">\n<title>{html.escape(title)}</title>\n'
            f"<style>{CSS}{_SHEET_CSS}</style>\n</head>\n<body>\n<main>\n{body}<footer>Generated by moclip search. "
            f"The pictures are the files in {THUMB_DIR}/ next to this page.</footer>\n</main>\n</body>\n</html>\n")
    atomic_write_text(out / SHEET_FILE, page)
    return out / SHEET_FILE
