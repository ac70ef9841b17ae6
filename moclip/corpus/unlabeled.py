"""Unlabeled corpora: every video under ``root`` (recursive, by extension), with no label, split or group."""

from __future__ import annotations

import os

import pandas as pd

from moclip.corpus.table import check_root, make_table, scan_videos


def load_unlabeled(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Table of every video under ``root``; ``label``, ``split`` and ``group`` are None."""
    top = check_root(root)
    return make_table({"video_id": rel, "path": str((top / rel).resolve())} for rel in scan_videos(top))
