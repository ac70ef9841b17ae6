"""UCF101 in its official layout with the official ``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``.

Videos live at ``<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi``; ``root`` may point at the ``UCF-101``
folder itself or at its parent. ``video_id`` is the path relative to the ``UCF-101`` folder, which is also
the form the split lists use (``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"``).

* Labels are the canonical names from ``classInd.txt``. Folder and file names are matched
  case-insensitively, because the official data spell class 37 ``HandstandPushups`` in ``classInd.txt``
  and folder names but ``HandStandPushups`` in file names (and some copies rename the folder too).
* ``split`` is ``"train"`` / ``"test"`` by the chosen official split (1-3); a video on disk in neither list
  gets ``None``. Videos listed but absent on disk are skipped, logged as a warning, and listed in
  ``df.attrs["missing"]`` (as spelled in the list files).
* ``group`` is ``"gXX"`` from the file name (the 25 source groups; clips of one group must not be split
  across train and validation).
* Only files at ``<Class>/<file>`` depth are considered; others are logged and listed in
  ``df.attrs["skipped"]``. A class folder unknown to ``classInd.txt`` keeps its rows with ``label=None``
  (logged; ids in ``df.attrs["unknown_class"]``).
* If ``split_dir`` is None, ``classInd.txt`` is looked for in ``ucfTrainTestlist/`` next to / inside the
  video folder, then in ``root`` itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from moclip.corpus.table import CorpusError, check_file, check_root, list_videos, logger, make_table, skip

VIDEO_DIR_NAMES: tuple[str, ...] = ("UCF-101", "UCF101")
SPLIT_DIR_NAME = "ucfTrainTestlist"
OFFICIAL_SPLITS: tuple[int, ...] = (1, 2, 3)

_NAME_RE = re.compile(r"^v_(?P<cls>.+)_g(?P<group>\d+)_c(?P<clip>\d+)$", re.IGNORECASE)


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line; tolerant of CRLF and a UTF-8 BOM."""
    text = path.read_text(encoding="utf-8-sig")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_index(path: str | os.PathLike[str]) -> list[str]:
    """Class names from ``classInd.txt`` (lines ``"<index> <Name>"``), ordered by index."""
    p = check_file(path, "UCF101 class index")
    by_index: dict[int, str] = {}
    seen: dict[str, int] = {}
    for lineno, line in _lines(p):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise CorpusError(f"{p}:{lineno}: expected '<index> <ClassName>', got {line!r}")
        idx, name = int(parts[0]), parts[1]
        if idx in by_index:
            raise CorpusError(f"{p}:{lineno}: class index {idx} appears twice")
        if name.lower() in seen:
            raise CorpusError(f"{p}:{lineno}: class {name!r} already defined on line {seen[name.lower()]}")
        by_index[idx] = name
        seen[name.lower()] = lineno
    if not by_index:
        raise CorpusError(f"{p}: no classes")
    return [by_index[i] for i in sorted(by_index)]


def read_split_list(path: str | os.PathLike[str]) -> list[str]:
    """Video paths from ``trainlist0N.txt`` (``"Class/v_x.avi <index>"``) or ``testlist0N.txt``."""
    p = check_file(path, "UCF101 split file")
    out = []
    for lineno, line in _lines(p):
        rel = line.split()[0].replace("\\", "/")
        if rel.count("/") != 1 or rel.startswith("/"):
            raise CorpusError(f"{p}:{lineno}: expected '<Class>/<video>', got {line!r}")
        out.append(rel)
    return out


def ucf101_group(file_name: str) -> str | None:
    """``"v_ApplyEyeMakeup_g08_c01.avi"`` -> ``"g08"``; None when the name is not in the official form."""
    m = _NAME_RE.match(Path(file_name).stem)
    return f"g{int(m['group']):02d}" if m else None


def find_video_root(root: str | os.PathLike[str]) -> Path:
    """The folder holding the class folders: ``root/UCF-101`` if it exists, else ``root``."""
    top = check_root(root, "UCF101 root")
    for name in VIDEO_DIR_NAMES:
        if (top / name).is_dir():
            return top / name
    return top


def _find_split_dir(root: Path, video_root: Path) -> Path:
    candidates = [
        root / SPLIT_DIR_NAME, video_root / SPLIT_DIR_NAME, video_root.parent / SPLIT_DIR_NAME, root,
    ]
    for cand in candidates:
        if (cand / "classInd.txt").is_file():
            return cand
    raise CorpusError(
        f"UCF101: no classInd.txt found (searched {[str(c) for c in candidates]}); pass split_dir"
    )


def load_ucf101(
    root: str | os.PathLike[str], split_dir: str | os.PathLike[str] | None = None, split: int = 1
) -> pd.DataFrame:
    """Table of the UCF101 videos on disk, labelled by ``classInd.txt``, split by official ``split``."""
    if split not in OFFICIAL_SPLITS:
        raise CorpusError(f"UCF101 split must be 1, 2 or 3, got {split!r}")
    top = check_root(root, "UCF101 root")
    video_root = find_video_root(top)
    if split_dir is not None:
        sdir = check_root(split_dir, "UCF101 split_dir")
    else:
        sdir = _find_split_dir(top, video_root)

    classes = {name.lower(): name for name in read_class_index(sdir / "classInd.txt")}
    membership: dict[str, tuple[str, str]] = {}  # lower-cased id -> (split, id as listed)
    for split_name, fname in (("train", f"trainlist{split:02d}.txt"), ("test", f"testlist{split:02d}.txt")):
        list_path = sdir / fname
        for rel in read_split_list(list_path):
            key = rel.lower()
            if key in membership:
                other, _ = membership[key]
                raise CorpusError(f"{list_path}: {rel!r} is also listed in the {other} list of split {split}")
            membership[key] = (split_name, rel)

    rows = []
    skipped: list[str] = []
    unknown: list[str] = []
    found: set[str] = set()
    files: dict = {}  # every file not listed, by reason
    for rel, path in list_videos(video_root, files).items():
        parts = rel.split("/")
        if len(parts) != 2:
            skipped.append(rel)
            skip(files, "not at <Class>/<file> depth", rel)
            continue
        folder, file_name = parts
        label = classes.get(folder.lower())
        if label is None:
            m = _NAME_RE.match(Path(file_name).stem)
            label = classes.get(m["cls"].lower()) if m else None
        if label is None:
            unknown.append(rel)
        key = rel.lower()
        member = membership.get(key)
        if member is not None:
            found.add(key)
        rows.append({
            "video_id": rel,
            "path": path,
            "label": label,
            "split": member[0] if member else None,
            "group": ucf101_group(file_name),
        })

    missing = sorted(listed for key, (_, listed) in membership.items() if key not in found)
    if missing:
        logger.warning(
            "UCF101 split %d: %d listed video(s) missing under %s, e.g. %s",
            split, len(missing), video_root, missing[:3],
        )
    if skipped:
        logger.warning(
            "UCF101: skipped %d video(s) not at <Class>/<file> depth, e.g. %s", len(skipped), skipped[:3]
        )
    if unknown:
        logger.warning(
            "UCF101: %d video(s) in class folders unknown to classInd.txt, e.g. %s", len(unknown), unknown[:3]
        )

    df = make_table(rows)
    df.attrs.update({
        "missing": missing, "skipped": skipped, "unknown_class": unknown, "classes": list(classes.values()),
        "skipped_files": files,
    })
    return df
