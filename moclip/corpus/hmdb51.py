"""HMDB51 in its official layout: ``<root>/<action>/<video>.avi`` + ``<action>_test_split<N>.txt`` files.

Each split file line is ``"<video_name>.avi <id>"`` with id 1 = train, 2 = test, 0 = unused (``split=None``).

* Labels are the action folder names; ``group`` is None (HMDB51 has no official groups).
* With a split folder, every action folder holding videos must have its split file for split ``N``,
  otherwise :class:`CorpusError`. Videos on disk missing from their action's list get ``split=None``.
  Listed videos absent on disk are skipped, logged as a warning and listed in ``df.attrs["missing"]``
  (as ``"<action>/<video_name>"``).
* If ``split_dir`` is None, ``<root>/testTrainMulti_7030_splits`` (the official archive's folder name) is
  used when it exists; otherwise there are no splits and every ``split`` is None.
* Only files at ``<action>/<file>`` depth are considered; others are listed in ``df.attrs["skipped"]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from moclip.corpus.table import CorpusError, check_file, check_root, list_videos, logger, make_table, skip

SPLIT_DIR_NAME = "testTrainMulti_7030_splits"
OFFICIAL_SPLITS: tuple[int, ...] = (1, 2, 3)
SPLIT_IDS: dict[str, str | None] = {"0": None, "1": "train", "2": "test"}


def split_file_name(action: str, split: int) -> str:
    """``("brush_hair", 1)`` -> ``"brush_hair_test_split1.txt"``."""
    return f"{action}_test_split{split}.txt"


def read_split_file(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """``{video_name: "train" | "test" | None}`` from one ``<action>_test_split<N>.txt`` file."""
    p = check_file(path, "HMDB51 split file")
    out: dict[str, str | None] = {}
    first_line: dict[str, int] = {}
    text = p.read_text(encoding="utf-8-sig")
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or parts[1] not in SPLIT_IDS:
            raise CorpusError(f"{p}:{lineno}: expected '<video_name> <0|1|2>', got {line!r}")
        name, sid = parts
        if name in first_line:
            raise CorpusError(f"{p}:{lineno}: {name!r} already listed on line {first_line[name]}")
        first_line[name] = lineno
        out[name] = SPLIT_IDS[sid]
    return out


def load_hmdb51(
    root: str | os.PathLike[str], split_dir: str | os.PathLike[str] | None = None, split: int = 1
) -> pd.DataFrame:
    """Table of the HMDB51 videos under ``root``, labelled by action folder, split by official ``split``."""
    if split not in OFFICIAL_SPLITS:
        raise CorpusError(f"HMDB51 split must be 1, 2 or 3, got {split!r}")
    top = check_root(root, "HMDB51 root")
    sdir: Path | None
    if split_dir is not None:
        sdir = check_root(split_dir, "HMDB51 split_dir")
    elif (top / SPLIT_DIR_NAME).is_dir():
        sdir = (top / SPLIT_DIR_NAME).resolve()
    else:
        sdir = None
        logger.info("HMDB51: no split folder given or found under %s; every split is None", top)

    by_action: dict[str, list[str]] = {}
    skipped: list[str] = []
    files: dict = {}  # every file not listed, by reason
    videos = list_videos(top, files)
    for rel in videos:
        parts = rel.split("/")
        if len(parts) != 2 or (sdir is not None and (top / parts[0]).resolve() == sdir):
            skipped.append(rel)
            skip(files, "not at <action>/<file> depth", rel)
            continue
        by_action.setdefault(parts[0], []).append(parts[1])

    # (action, lower-cased name) -> (split, name as listed); covers listed actions with no folder on disk.
    listed: dict[tuple[str, str], tuple[str | None, str]] = {}
    if sdir is not None:
        suffix = f"_test_split{split}.txt"
        actions = set(by_action) | {
            f.name[: -len(suffix)] for f in sdir.iterdir() if f.name.endswith(suffix) and f.is_file()
        }
        for action in sorted(actions):
            path = sdir / split_file_name(action, split)
            if not path.is_file():
                raise CorpusError(
                    f"HMDB51: split file {str(path)!r} for action folder {action!r} does not exist"
                )
            for name, sp in read_split_file(path).items():
                listed[(action, name.lower())] = (sp, name)

    rows = []
    found: set[tuple[str, str]] = set()
    for action, names in by_action.items():
        for name in names:
            key = (action, name.lower())
            member = listed.get(key)
            if member is not None:
                found.add(key)
            rows.append({
                "video_id": f"{action}/{name}",
                "path": videos[f"{action}/{name}"],
                "label": action,
                "split": member[0] if member else None,
            })

    missing = sorted(f"{key[0]}/{name}" for key, (_, name) in listed.items() if key not in found)
    if missing:
        logger.warning(
            "HMDB51 split %d: %d listed video(s) missing under %s, e.g. %s",
            split, len(missing), top, missing[:3],
        )
    if skipped:
        logger.warning(
            "HMDB51: skipped %d video(s) not at <action>/<file> depth, e.g. %s", len(skipped), skipped[:3]
        )
    df = make_table(rows)
    df.attrs.update({"missing": missing, "skipped": skipped, "skipped_files": files})
    return df
