"""``CorpusSpec`` (which corpus to read and how: ``moclip.config``) -> ``check_corpus`` (it is there) and
``load_corpus`` (one table). ``LOADERS`` is the one list of layouts' readers, checked against the ``Layout``
literal at import."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from moclip.config import LAYOUTS, CorpusSpec
from moclip.corpus.folder import load_folder
from moclip.corpus.hmdb51 import load_hmdb51
from moclip.corpus.manifest import load_manifest
from moclip.corpus.table import check_file, check_root
from moclip.corpus.ucf101 import load_ucf101
from moclip.corpus.unlabeled import load_unlabeled

__all__ = ["LAYOUTS", "LOADERS", "CorpusSpec", "check_corpus", "load_corpus"]

LOADERS: dict[str, Callable[[CorpusSpec], pd.DataFrame]] = {
    "folder": lambda spec: load_folder(spec.root),
    "ucf101": lambda spec: load_ucf101(spec.root, split_dir=spec.split_dir, split=spec.split),
    "hmdb51": lambda spec: load_hmdb51(spec.root, split_dir=spec.split_dir, split=spec.split),
    "manifest": lambda spec: load_manifest(spec.manifest, root=spec.root or None,
                                           allow_outside_root=spec.allow_outside_root),
    "unlabeled": lambda spec: load_unlabeled(spec.root),
}
assert set(LOADERS) == set(LAYOUTS), "a layout of moclip.config.Layout without a reader, or the reverse"


def check_corpus(spec: CorpusSpec) -> None:
    """Raise ``CorpusError`` now if the corpus root (or the manifest) is missing: jobs check before they start
    anything (a server, workers), so a typo in a path costs a second, not a minute."""
    if spec.layout == "manifest":
        check_file(spec.manifest, "manifest")
    if spec.root:
        check_root(spec.root)


def load_corpus(spec: CorpusSpec) -> pd.DataFrame:
    """The corpus table (see :mod:`moclip.corpus.table`) for ``spec`` (its layout validated by ``CorpusSpec``)."""
    return LOADERS[spec.layout](spec)
