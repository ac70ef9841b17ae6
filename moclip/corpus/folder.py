"""Folder-per-class corpora: ``root/<label>/.../<video>``; the label is the video's immediate parent folder.

Videos are found recursively by extension (:data:`moclip.config.VIDEO_EXTENSIONS`, any case); hidden files
and folders are skipped; symlink loops are safe (see :func:`moclip.corpus.table.list_videos`).

Videos directly in ``root`` have no class folder, so they are **skipped** (not given ``label=None``): a
labelled corpus with a few stray files should not silently gain unlabeled rows. They are logged as a
warning and listed in ``df.attrs["skipped"]``. Use the ``unlabeled`` layout to index every video.
"""

from __future__ import annotations

import os

import pandas as pd

from moclip.corpus.table import check_root, list_videos, logger, make_table, skip


def load_folder(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Table of every video under ``root`` labelled by its parent folder name; split and group are None."""
    top = check_root(root)
    rows = []
    skipped = []
    files: dict = {}  # every file not listed, by reason (attrs["skipped_files"])
    for rel, path in list_videos(top, files).items():
        parts = rel.split("/")
        if len(parts) < 2:
            skipped.append(rel)
            skip(files, "directly in the corpus root (no class folder; --layout unlabeled lists it)", rel)
            continue
        rows.append({"video_id": rel, "path": path, "label": parts[-2]})
    if skipped:
        logger.warning(
            "%s: skipped %d video(s) directly in the corpus root (no class folder), e.g. %s",
            top, len(skipped), skipped[:3],
        )
    df = make_table(rows)
    df.attrs["skipped"] = skipped
    df.attrs["skipped_files"] = files
    return df
