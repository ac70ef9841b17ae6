"""``CorpusSpec``: which corpus to read and how, and ``load_corpus`` that turns it into one table."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from moclip.corpus.folder import load_folder
from moclip.corpus.hmdb51 import load_hmdb51
from moclip.corpus.manifest import load_manifest
from moclip.corpus.table import CorpusError, check_file, check_root
from moclip.corpus.ucf101 import load_ucf101
from moclip.corpus.unlabeled import load_unlabeled

LAYOUTS: tuple[str, ...] = ("folder", "ucf101", "hmdb51", "manifest", "unlabeled")


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus lives and how to read it.

    ``root``: the corpus folder. For ``layout="manifest"``, ``root=""`` means "the manifest's folder".
    ``layout``: ``"folder"`` (label = parent folder; videos directly in ``root`` are skipped),
    ``"ucf101"``, ``"hmdb51"``, ``"manifest"`` (CSV, needs ``manifest``) or ``"unlabeled"``.
    ``split_dir``: folder with the official split files (ucf101 / hmdb51; None = look in the usual place).
    ``split``: which official split, 1-3 (ucf101 / hmdb51).
    ``manifest``: CSV path (manifest layout).
    ``allow_outside_root``: let manifest paths point outside ``root``.
    """

    root: str
    layout: str = "folder"
    split_dir: str | None = None
    split: int = 1
    manifest: str | None = None
    allow_outside_root: bool = False

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise CorpusError(f"unknown corpus layout {self.layout!r}: use one of {', '.join(LAYOUTS)}")
        if isinstance(self.split, bool) or self.split not in (1, 2, 3):
            raise CorpusError(f"split must be 1, 2 or 3, got {self.split!r}")
        if self.layout == "manifest" and not self.manifest:
            raise CorpusError("layout 'manifest' needs manifest= (the CSV path)")
        if self.layout != "manifest" and not self.root:
            raise CorpusError(f"layout {self.layout!r} needs a corpus root")

    def check(self) -> None:
        """Raise :class:`CorpusError` now if the corpus root (or the manifest) is missing: jobs check before they
        start anything (a server, workers), so a typo in a path costs a second, not a minute."""
        if self.layout == "manifest":
            assert self.manifest is not None  # checked in __post_init__
            check_file(self.manifest, "manifest")
        if self.root:
            check_root(self.root)


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
        assert spec.manifest is not None  # checked in __post_init__
        return load_manifest(
            spec.manifest, root=spec.root or None, allow_outside_root=spec.allow_outside_root
        )
    raise CorpusError(f"unknown corpus layout {spec.layout!r}")  # unreachable: checked in __post_init__
