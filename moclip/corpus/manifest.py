"""CSV manifests: one row per video, columns ``path`` (required), ``label``, ``split``, ``group`` (optional).

* A header line is required; other columns are ignored; empty ``label`` / ``split`` / ``group`` are None.
  ``split`` must be ``train`` or ``test`` (any case) or empty.
* Relative paths are relative to the corpus root: ``root`` when given, else the manifest's folder.
* Every path is resolved (``..`` and symlinks included) and must stay inside the root, unless
  ``allow_outside_root=True``; otherwise :class:`CorpusError` names the manifest file, the line number and
  the reason. ``video_id`` is the path relative to the root in POSIX form; with ``allow_outside_root``, a
  video outside the root gets its absolute resolved path as ``video_id``.
* Two lines naming the same video (after normalisation, e.g. ``a/x.avi`` and ``./a/x.avi``) are an error
  naming both lines.
* Files that do not exist are **kept**: the manifest is the list of what should be indexed, and the indexer
  turns such a row into a failed row with the reason. Their ids are also in ``df.attrs["missing"]``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from moclip.corpus.table import SPLITS, CorpusError, check_file, check_root, logger, make_table


def _inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` in POSIX form, or None when it is not inside ``root``."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return None
    return rel.as_posix()


def _video_id(raw: str, root_abs: Path, root_real: Path, allow_outside: bool) -> tuple[str, Path]:
    """(video_id, resolved path) for one manifest path; raises ValueError with the reason when unsafe."""
    given = Path(raw).expanduser()
    joined = given if given.is_absolute() else root_abs / given
    real = joined.resolve()  # the file the OS would open (symlinks before '..')
    lexical = Path(os.path.normpath(joined))
    rel = _inside(lexical, root_abs)
    if rel is None and given.is_absolute():
        rel = _inside(real, root_real)
    if rel == ".":
        raise ValueError(f"path {raw!r} names the corpus root itself, not a video")
    inside_real = _inside(real, root_real) is not None
    if rel is not None and inside_real:
        return rel, real
    if allow_outside:
        return (rel if rel is not None else real.as_posix()), real
    if rel is None and given.is_absolute():
        raise ValueError(f"absolute path {raw!r} is outside the corpus root {str(root_real)!r}")
    if rel is None:
        raise ValueError(f"path {raw!r} escapes the corpus root {str(root_real)!r} through '..'")
    raise ValueError(f"path {raw!r} resolves (through a symlink) to {str(real)!r}, outside the corpus root")


def _cell(record: dict[str, str | None], name: str) -> str | None:
    """Stripped cell value, None when absent or empty."""
    value = record.get(name)
    value = value.strip() if isinstance(value, str) else None
    return value or None


def load_manifest(
    manifest: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    allow_outside_root: bool = False,
) -> pd.DataFrame:
    """Table of the videos listed in the CSV ``manifest`` (see the module docstring for the rules)."""
    mpath = check_file(manifest, "manifest")
    base = Path(root).expanduser() if root is not None else mpath.parent
    root_real = check_root(base, "corpus root")
    root_abs = Path(os.path.abspath(base))

    rows = []
    first_line: dict[str, int] = {}
    missing: list[str] = []
    with mpath.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields:
            raise CorpusError(
                f"{mpath}:1: manifest needs a header with a 'path' column, got {reader.fieldnames}"
            )
        reader.fieldnames = fields
        for record in reader:
            lineno = reader.line_num
            raw = _cell(record, "path")
            if raw is None:
                if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
                    continue  # blank line
                raise CorpusError(f"{mpath}:{lineno}: empty path")
            try:
                vid, real = _video_id(raw, root_abs, root_real, allow_outside_root)
            except ValueError as exc:
                raise CorpusError(f"{mpath}:{lineno}: {exc}") from None
            if vid in first_line:
                raise CorpusError(
                    f"{mpath}:{lineno}: duplicate path {raw!r}: "
                    f"same video as line {first_line[vid]} ({vid!r})"
                )
            first_line[vid] = lineno
            split = _cell(record, "split")
            if split is not None:
                split = split.lower()
                if split not in SPLITS:
                    raise CorpusError(
                        f"{mpath}:{lineno}: split must be 'train', 'test' or empty, got {split!r}"
                    )
            if not real.is_file():
                missing.append(vid)
            rows.append({"video_id": vid, "path": str(real), "label": _cell(record, "label"), "split": split,
                         "group": _cell(record, "group")})

    if missing:
        logger.warning("%s: %d listed file(s) do not exist (kept), e.g. %s", mpath, len(missing), missing[:3])
    df = make_table(rows)
    df.attrs["missing"] = sorted(missing)
    return df
