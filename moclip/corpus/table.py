"""The corpus table every adapter returns, its validation, and the shared directory scanner.

A corpus table is a :class:`pandas.DataFrame` with exactly the columns :data:`TABLE_COLUMNS`:

``video_id``
    unique, stable across runs: the path relative to the corpus root in POSIX form
    (e.g. ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"``).
``path``
    absolute, resolved path of the file.
``label``
    class name or ``None``.
``split``
    ``"train"``, ``"test"`` or ``None``.
``group``
    source group or ``None`` (UCF101: ``"g08"``), for group-aware validation splits.

All columns have ``object`` dtype so that missing values are ``None`` (pandas 3 would otherwise infer a
string dtype that turns ``None`` into ``NaN``). Rows are sorted by ``video_id`` and the index is
``0..n-1``, so the same corpus on disk always gives an identical table.

Adapters may put extra facts in ``DataFrame.attrs`` (e.g. ``attrs["missing"]``: video ids listed by
official split files but absent on disk).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from moclip.config import VIDEO_EXTENSIONS

logger = logging.getLogger("moclip.corpus")

TABLE_COLUMNS: tuple[str, ...] = ("video_id", "path", "label", "split", "group")
SPLITS: tuple[str, ...] = ("train", "test")

_VIDEO_EXTENSIONS = frozenset(ext.lower() for ext in VIDEO_EXTENSIONS)


class CorpusError(ValueError):
    """A corpus cannot be read: bad root, missing or malformed split/manifest file, unsafe path."""


def is_video_file(name: str | os.PathLike[str]) -> bool:
    """True when the file name ends with one of :data:`moclip.config.VIDEO_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(name))[1].lower() in _VIDEO_EXTENSIONS


def is_hidden(name: str) -> bool:
    """Dot-files and dot-folders (including macOS ``._foo.avi`` resource forks) are hidden."""
    return name.startswith(".")


def check_root(root: str | os.PathLike[str], what: str = "corpus root") -> Path:
    """Resolve ``root`` and make sure it is an existing directory, else raise :class:`CorpusError`."""
    path = Path(root).expanduser()
    if not path.exists():
        raise CorpusError(f"{what} {str(path)!r} does not exist")
    if not path.is_dir():
        raise CorpusError(f"{what} {str(path)!r} is not a directory")
    return path.resolve()


def check_file(path: str | os.PathLike[str], what: str) -> Path:
    """Make sure ``path`` is an existing regular file, else raise :class:`CorpusError`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CorpusError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise CorpusError(f"{what} {str(p)!r} is not a file")
    return p


Skipped = dict  # reason -> {"count": n, "examples": [up to 3 relative paths]} (``DataFrame.attrs["skipped_files"]``)


def skip(skipped: Skipped | None, reason: str, rel: str) -> None:
    """Count the file ``rel`` under ``reason`` in ``skipped`` (when given)."""
    if skipped is None:
        return
    entry = skipped.setdefault(reason, {"count": 0, "examples": []})
    entry["count"] += 1
    if len(entry["examples"]) < 3:
        entry["examples"].append(storable_text(rel))


def skipped_line(skipped: Skipped) -> str:
    """``"7 files skipped: 3 not a video extension (.txt), 2 hidden, ..."``; "" when none were."""
    if not skipped:
        return ""
    n = sum(v["count"] for v in skipped.values())
    parts = ", ".join(f"{v['count']} {reason} (e.g. {v['examples'][0]})" for reason, v in
                      sorted(skipped.items(), key=lambda kv: -kv[1]["count"]))
    return f"{n} file{'s' if n != 1 else ''} skipped: {parts}"


def list_videos(root: str | os.PathLike[str], skipped: Skipped | None = None) -> dict[str, str]:
    """Video files under ``root``, recursively: sorted POSIX paths relative to ``root`` -> resolved absolute paths.

    Hidden files and folders are skipped. Symlinked folders are followed, but each real folder is
    visited at most once (the first time in sorted walk order), so symlink loops cannot hang the scan
    and a folder linked twice does not list its videos twice. Symlinked files are listed under the
    link's own name; broken links are skipped. A folder that cannot be listed (no permission) is logged as a
    warning and skipped. One ``lstat`` per file: a file's resolved path is its folder's, resolved once, plus its
    name (only links are resolved one by one). With ``skipped`` (a dict), every file not listed is counted there by
    reason (see ``skip``): not a video extension, hidden, a broken link, not a regular file, an unlistable folder.
    """
    top = check_root(root)
    found: dict[str, str] = {}
    visited: set[str] = set()

    def unlistable(err: OSError) -> None:  # e.g. a folder without read permission: say so, list the rest
        logger.warning("cannot list %s: %s; its videos are not indexed", err.filename, err.strerror or err)
        skip(skipped, "in a folder that cannot be listed", os.path.relpath(str(err.filename), top))

    for dirpath, dirnames, filenames in os.walk(top, onerror=unlistable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # reached again through a link: prune
            dirnames[:] = []
            continue
        visited.add(real)
        keep = []
        prefix = Path(os.path.relpath(dirpath, top)).as_posix() + "/"
        prefix = "" if prefix == "./" else prefix
        for d in sorted(dirnames):
            if is_hidden(d):
                skip(skipped, "hidden folder", prefix + d)
                continue
            if os.path.realpath(os.path.join(dirpath, d)) in visited:
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in filenames:
            if is_hidden(name):
                skip(skipped, "hidden", prefix + name)
                continue
            if not is_video_file(name):
                ext = os.path.splitext(name)[1].lower()
                skip(skipped, f"not a video extension ({ext})" if ext else "no extension", prefix + name)
                continue
            full = os.path.join(dirpath, name)
            try:
                mode = os.lstat(full).st_mode
                if stat.S_ISLNK(mode):
                    resolved = os.path.realpath(full)
                    mode = os.stat(resolved).st_mode
                else:
                    resolved = os.path.join(real, name)
            except OSError:  # vanished, or a broken link
                skip(skipped, "broken link or vanished", prefix + name)
                continue
            if stat.S_ISREG(mode):
                found[prefix + name] = resolved
            else:
                skip(skipped, "not a regular file", prefix + name)
    return dict(sorted(found.items()))


def require_videos(table: pd.DataFrame, root: str) -> pd.DataFrame:
    """``table`` when it lists a video; else a :class:`CorpusError`: an empty or unmounted archive must never read
    as "every video was deleted"."""
    if len(table):
        return table
    seen = skipped_line(table.attrs.get("skipped_files") or {})
    raise CorpusError(f"corpus root {root!r} lists no video file{f' ({seen})' if seen else ''}: is the archive "
                      "mounted, and are the path and --layout right? Nothing was written")


def storable_text(text: str | None) -> str | None:
    """A str that UTF-8 can store: file names that are not valid UTF-8 reach Python with lone surrogates
    (``os.fsdecode``); their bytes are written as ``\\xNN`` escapes instead (readable, stable, unique)."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def make_table(rows: Iterable[Mapping[str, str | None]]) -> pd.DataFrame:
    """Rows (dicts keyed by column name; missing keys are ``None``) -> a validated, sorted corpus table.

    ``video_id`` and ``label`` are made storable (see :func:`storable_text`); ``path`` stays the real OS path.
    """
    records = sorted(
        ({col: (storable_text(row.get(col)) if col in ("video_id", "label") else row.get(col))
          for col in TABLE_COLUMNS} for row in rows),
        key=lambda r: str(r["video_id"]),
    )
    data = {col: [r[col] for r in records] for col in TABLE_COLUMNS}
    df = pd.DataFrame(data, columns=list(TABLE_COLUMNS), dtype=object)
    return validate_table(df)


def validate_table(df: pd.DataFrame) -> pd.DataFrame:
    """Check the table contract; raise :class:`CorpusError` on the first violation, else return ``df``."""
    cols = list(df.columns)
    if cols != list(TABLE_COLUMNS):
        raise CorpusError(f"corpus table must have columns {list(TABLE_COLUMNS)}, got {cols}")
    ids = df["video_id"].tolist()
    for i, vid in enumerate(ids):
        if not isinstance(vid, str) or not vid:
            raise CorpusError(f"row {i}: video_id must be a non-empty str, got {vid!r}")
    if ids != sorted(ids):
        raise CorpusError("corpus table must be sorted by video_id")
    dup = df["video_id"].duplicated(keep=False)
    if dup.any():
        raise CorpusError(f"duplicate video_id(s): {sorted(set(df.loc[dup, 'video_id']))[:5]}")
    for i, p in enumerate(df["path"].tolist()):
        if not isinstance(p, str) or not os.path.isabs(p):
            raise CorpusError(f"row {i} ({ids[i]}): path must be an absolute str, got {p!r}")
    for col in ("label", "group"):
        for i, v in enumerate(df[col].tolist()):
            if v is not None and not (isinstance(v, str) and v):
                raise CorpusError(f"row {i} ({ids[i]}): {col} must be a non-empty str or None, got {v!r}")
    for i, s in enumerate(df["split"].tolist()):
        if s is not None and s not in SPLITS:
            raise CorpusError(f"row {i} ({ids[i]}): split must be 'train', 'test' or None, got {s!r}")
    return df
