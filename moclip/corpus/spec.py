"""``CorpusSpec``: which corpus to read and how, and ``load_corpus`` that turns it into one table."""

from __future__ import annotations

import pandas as pd

from moclip.config import LAYOUTS, CorpusSpec
from moclip.corpus.folder import load_folder
from moclip.corpus.hmdb51 import load_hmdb51
from moclip.corpus.manifest import load_manifest
from moclip.corpus.table import CorpusError
from moclip.corpus.ucf101 import load_ucf101
from moclip.corpus.unlabeled import load_unlabeled

__all__ = ["LAYOUTS", "CorpusSpec", "load_corpus"]


def load_corpus(spec: CorpusSpec) -> pd.DataFrame:
    """The corpus table (see :mod:`moclip.corpus.table`) for ``spec``."""
    if spec.layout == "folder":
        return load_folder(spec.root)
    if spec.layout == "unlabeled":
        return load_unlabeled(spec.root)
    if spec.layout == "ucf101":
        return load_ucf101(spec.root, split_dir=spec.split_dir, split=spec.split)
    if spec.layout == "hmdb51":
        return load_hmdb51(spec.root, split_dir=spec.split_dir, split=spec.split)
    if spec.layout == "manifest":
        assert spec.manifest is not None  # checked by CorpusSpec
        return load_manifest(
            spec.manifest, root=spec.root or None, allow_outside_root=spec.allow_outside_root
        )
    raise CorpusError(f"unknown corpus layout {spec.layout!r}")  # unreachable: checked in __post_init__
