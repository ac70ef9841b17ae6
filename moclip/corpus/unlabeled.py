"""Unlabeled corpora: every video under ``root`` (recursive, by extension), with no label, split or group."""

from __future__ import annotations

import os

import pandas as pd

from moclip.corpus.table import check_root, list_videos, make_table


def load_unlabeled(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Table of every video under ``root``; ``label``, ``split`` and ``group`` are None."""
    top = check_root(root)
    files: dict = {}  # every file not listed, by reason
    df = make_table({"video_id": rel, "path": path} for rel, path in list_videos(top, files).items())
    df.attrs["skipped_files"] = files
    return df
